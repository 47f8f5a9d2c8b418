//! The OpenAPI schemas of [`Client`] and [`ClientCreateRequest`]: the
//! properties of [`ClientSpec`] beside their own, in one closed object. (A
//! derived schema would put the spec in an `allOf` beside the other fields,
//! and the spec's `additionalProperties: false` would then refuse them.)

use crate::client::{Client, ClientCreateRequest, ClientSpec};
use utoipa::openapi::schema::{
    AdditionalProperties, KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// A string of a known format (`uuid`, `date-time`).
fn formatted(format: KnownFormat) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(format)))
        .into()
}

/// The spec's object with `extra` properties (name, schema, required) added.
fn spec_with(extra: Vec<(&str, RefOr<Schema>, bool)>) -> RefOr<Schema> {
    let mut object = match ClientSpec::schema() {
        RefOr::T(Schema::Object(object)) => object,
        _ => Object::new(),
    };
    object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
    for (name, schema, required) in extra {
        object.properties.insert(name.to_owned(), schema);
        if required {
            object.required.push(name.to_owned());
        }
    }
    RefOr::T(Schema::Object(object))
}

impl PartialSchema for Client {
    fn schema() -> RefOr<Schema> {
        spec_with(vec![
            ("id", formatted(KnownFormat::Uuid), true),
            ("name", String::schema(), true),
            ("revision", i64::schema(), true),
            ("created_at", formatted(KnownFormat::DateTime), true),
            ("updated_at", formatted(KnownFormat::DateTime), true),
        ])
    }
}

impl ToSchema for Client {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <ClientSpec as ToSchema>::schemas(schemas);
    }
}

impl PartialSchema for ClientCreateRequest {
    fn schema() -> RefOr<Schema> {
        spec_with(vec![("name", String::schema(), true)])
    }
}

impl ToSchema for ClientCreateRequest {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <ClientSpec as ToSchema>::schemas(schemas);
    }
}
