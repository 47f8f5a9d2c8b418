//! The OpenAPI document, generated from the handlers' annotations.
//!
//! The annotations say what is particular to each operation (parameters,
//! bodies, the errors its handler raises). [`Conventions`] adds what every
//! operation shares, from the code's own tables rather than by repetition:
//! security from the permission matrix ([`access`]), the error envelope
//! ([`ErrorResponse`]) on every error response, and the errors the shared
//! middleware answers (authentication, the query rule, body limits, the
//! request time limit).

use crate::api::{clients, clusters, credentials, events, fleet, ops, rollouts, sync, tokens};
use crate::auth::permissions::{access, Access};
use axum::http::Method;
use fleetreg_model::{
    AuthType, CredentialInput, CredentialStatus, CredentialValidation, ValidationOutcome,
};
use fleetreg_model::{
    Capabilities, Cluster, ClusterCreateRequest, ClusterState, ClusterStatus, ClusterType,
    ClusterUpdateRequest, Connectivity, Endpoints, Environment, Event, EventType, HealthSample,
    ObservabilityCapabilities, Platform,
};
use fleetreg_model::{
    ClusterStatusDetail, CredentialExpiry, CredentialsSummary, ExpiringCredentials,
    ExpiringCredentialsList,
};
use fleetreg_model::{ErrorCode, Role};
use fleetreg_model::{
    FleetCapabilities, FleetClusterHealth, FleetHealth, FleetSummary, GpuTypeTotals,
    ObservabilityCoverage, ScoreBucket,
};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Type};
use utoipa::{IntoParams, Modify, ToSchema};

/// The fleetreg API.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "fleetreg",
        description = "Fleet registry: clusters, their health, capabilities and change events.\n\n\
            Every error answer is an `ErrorResponse`; its `code` fixes the HTTP status. \
            Any request may also be refused before it reaches an operation: 404 `NOT_FOUND` \
            (no such endpoint), 405 `METHOD_NOT_ALLOWED`, 400 `MALFORMED_REQUEST`, \
            431 `HEADERS_TOO_LARGE`."
    ),
    modifiers(&Conventions),
    paths(
        clients::create,
        clients::list,
        clients::summary,
        clients::export,
        clients::import,
        clients::get_one,
        clients::update,
        clients::delete,
        clients::history,
        clients::deploy,
        clients::rebuild,
        clients::destroy,
        clients::set_status,
        clients::maintenance,
        clients::versions,
        clients::notes,
        crate::api::client_health::health,
        rollouts::start,
        rollouts::list,
        rollouts::get_one,
        rollouts::promote,
        rollouts::pause,
        rollouts::resume,
        rollouts::abort,
        sync::register_host,
        sync::list_hosts,
        sync::sync_status,
        sync::claim_leader,
        sync::orphaned,
        sync::heartbeat,
        sync::create_deployment,
        sync::get_deployment,
        sync::delete_deployment,
        sync::enable,
        sync::pause,
        sync::move_to,
        sync::start_sync,
        sync::finish_sync,
        sync::record_conflict,
        sync::conflicts,
        clusters::create,
        clusters::list,
        clusters::get_one,
        clusters::get_by_name,
        clusters::update,
        clusters::delete,
        clusters::status,
        clusters::history,
        clusters::refresh,
        credentials::store,
        credentials::rotate,
        credentials::validate,
        credentials::rebind,
        credentials::delete,
        credentials::expiring,
        tokens::create,
        tokens::list,
        tokens::revoke,
        events::list,
        events::stream,
        crate::api::audit::list,
        fleet::summary,
        fleet::health,
        fleet::capabilities,
        crate::api::edge::create_domain,
        crate::api::edge::list_domains,
        crate::api::edge::get_domain,
        crate::api::edge::update_domain,
        crate::api::edge::delete_domain,
        crate::api::edge::create_node,
        crate::api::edge::list_nodes,
        crate::api::edge::get_node,
        crate::api::edge::update_node,
        crate::api::edge::delete_node,
        crate::api::edge::create_service,
        crate::api::edge::list_services,
        crate::api::edge::get_service,
        crate::api::edge::update_service,
        crate::api::edge::delete_service,
        crate::api::edge::list_routings,
        crate::api::edge::get_routing,
        crate::api::edge::configure_routing,
        crate::api::edge::delete_routing,
        crate::api::edge::routes,
        crate::api::node_config::config,
        crate::api::node_config::stream,
        crate::api::node_config::acknowledge,
        crate::api::node_config::create_token,
        crate::api::edge_sync::health,
        crate::api::edge_sync::push,
        crate::api::edge_sync::reconcile,
        crate::api::service_sync::sync,
        ops::health,
        ops::ready,
        ops::metrics,
        ops::openapi
    ),
    components(schemas(
        ErrorResponse,
        ErrorBody,
        ErrorCode,
        fleetreg_model::AuditEntry,
        fleetreg_model::AuditResult,
        crate::api::audit::AuditList,
        Cluster,
        ClusterCreateRequest,
        ClusterUpdateRequest,
        ClusterStatus,
        HealthSample,
        Capabilities,
        ObservabilityCapabilities,
        Endpoints,
        ClusterType,
        Platform,
        Environment,
        ClusterState,
        Connectivity,
        Event,
        EventType,
        clusters::ClusterPage,
        clients::ClientPage,
        events::EventList,
        FleetSummary,
        FleetHealth,
        ScoreBucket,
        FleetClusterHealth,
        FleetCapabilities,
        GpuTypeTotals,
        ObservabilityCoverage,
        AuthType,
        CredentialInput,
        CredentialStatus,
        CredentialValidation,
        ValidationOutcome,
        CredentialsSummary,
        CredentialExpiry,
        ExpiringCredentials,
        ExpiringCredentialsList,
        fleetreg_model::RotationStatus,
        fleetreg_model::RotationMode,
        ClusterStatusDetail,
        fleetreg_model::Role,
        fleetreg_model::ApiToken,
        fleetreg_model::CreatedToken,
        fleetreg_model::TokenCreateRequest
    ))
)]
pub struct ApiDoc;

/// The body of every error answer: what [`crate::error::ApiError`] writes.
#[derive(Debug, ToSchema)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: ErrorBody,
}

/// The `error` object of an [`ErrorResponse`].
#[derive(Debug, ToSchema)]
pub struct ErrorBody {
    /// The error code; each code has one HTTP status.
    pub code: ErrorCode,
    /// What went wrong, in words.
    pub message: String,
    /// Structured context, e.g. `{field, reason}` of a `VALIDATION_ERROR`; `{}` when there is none.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// One server-sent event of `/api/v1/events/stream` (comments such as
/// keep-alives are not events).
#[derive(Debug, ToSchema)]
pub struct StreamEvent {
    /// The event's revision; absent on `RESYNC`.
    pub id: Option<String>,
    /// The event's type, or `RESYNC` when the client is behind retention (the stream then ends).
    pub event: String,
    /// The `Event` as JSON; for `RESYNC`, `{"oldest_revision", "latest_revision"}`.
    pub data: String,
}

/// The `{id}` of the cluster routes.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ClusterPath {
    /// The cluster's id; a string that is not a UUID names no cluster (`CLUSTER_NOT_FOUND`).
    pub id: uuid::Uuid,
}

/// The `{name}` of `/api/v1/clusters/by-name/{name}`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ClusterNamePath {
    /// The cluster's name; a string that is not a valid name names no cluster (`CLUSTER_NOT_FOUND`).
    pub name: String,
}

/// The `{id}` of `/api/v1/tokens/{id}`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TokenPath {
    /// The token's id; a string that is not a UUID names no token (`TOKEN_NOT_FOUND`).
    pub id: uuid::Uuid,
}

/// The name of the bearer token security scheme.
pub const BEARER: &str = "bearer";

/// Adds what every operation shares (see the module documentation).
#[derive(Debug)]
pub struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token (`POST /api/v1/tokens`, or the bootstrap admin token).",
                    ))
                    .build(),
            ),
        );
        doc.security = Some(vec![bearer()]);
        for (path, item) in doc.paths.paths.iter_mut() {
            for (method, operation) in operations(item) {
                standardise(path, &method, operation);
            }
        }
    }
}

fn bearer() -> SecurityRequirement {
    SecurityRequirement::new(BEARER, Vec::<String>::new())
}

/// The operations of a path item with their methods.
fn operations(item: &mut PathItem) -> impl Iterator<Item = (Method, &mut Operation)> {
    [
        (Method::GET, &mut item.get),
        (Method::PUT, &mut item.put),
        (Method::POST, &mut item.post),
        (Method::DELETE, &mut item.delete),
        (Method::PATCH, &mut item.patch),
        (Method::HEAD, &mut item.head),
        (Method::OPTIONS, &mut item.options),
        (Method::TRACE, &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|op| (method, op)))
}

/// Security and the shared error responses of one operation.
fn standardise(path: &str, method: &Method, operation: &mut Operation) {
    // Handlers of different resources share names (`list`, `get_one`): the
    // tag makes each operationId unique, as links and generated clients need.
    if let (Some(tag), Some(id)) = (
        operation.tags.as_ref().and_then(|t| t.first()),
        operation.operation_id.as_mut(),
    ) {
        *id = format!("{tag}_{id}");
    }
    // The permission matrix under both settings of `auth.metrics_open`.
    let rules = [access(method, path, true), access(method, path, false)];
    let open = rules.iter().filter(|a| **a == Access::Open).count();
    let when = match open {
        0 => "",
        1 => " (when `auth.metrics_open` is false)",
        _ => {
            operation.security = Some(Vec::new());
            ""
        }
    };
    if open == 1 {
        operation.security = Some(vec![SecurityRequirement::default(), bearer()]);
    }
    if let Some(rule) = rules.iter().find(|a| **a != Access::Open) {
        add_error(
            operation,
            ErrorCode::Unauthenticated,
            &format!("no valid bearer token{when}"),
        );
        if let Access::Roles(roles) = rule {
            if roles.len() < Role::ALL.len() {
                let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                add_error(
                    operation,
                    ErrorCode::Forbidden,
                    &format!("the token's role is not {}{when}", names.join(" or ")),
                );
            }
        }
        // The token lookup reads the store.
        add_error(
            operation,
            ErrorCode::InternalError,
            "an unexpected failure, logged with the request id",
        );
    }
    add_error(
        operation,
        ErrorCode::ValidationError,
        "a query parameter the operation does not declare, or one given twice",
    );
    if operation.request_body.is_some() {
        add_error(operation, ErrorCode::MalformedJson, "the body is not JSON");
        add_error(
            operation,
            ErrorCode::PayloadTooLarge,
            "the body is larger than the server accepts",
        );
        add_error(
            operation,
            ErrorCode::UnsupportedMediaType,
            "the body is not `application/json`",
        );
    }
    add_error(
        operation,
        ErrorCode::UriTooLong,
        "the path and query are longer than the server accepts",
    );
    add_error(
        operation,
        ErrorCode::ServiceUnavailable,
        "the store cannot be reached, or the answer was not ready within `request_timeout`; \
         retry after `Retry-After` seconds",
    );
    envelope_every_error(operation);
}

/// Documents `code` (with `why`) under its status on `operation`, beside any
/// codes the handler's annotation names there.
fn add_error(operation: &mut Operation, code: ErrorCode, why: &str) {
    let status = crate::error::status_of(code).as_u16().to_string();
    let line = format!("{}: {why}", code.as_str());
    match operation.responses.responses.get_mut(&status) {
        Some(RefOr::T(response)) => {
            if !response.description.contains(code.as_str()) {
                if !response.description.is_empty() {
                    response.description.push_str("; ");
                }
                response.description.push_str(&line);
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            operation.responses.responses.insert(
                status,
                RefOr::T(ResponseBuilder::new().description(line).build()),
            );
        }
    }
}

/// Gives every 4xx and 5xx response the error envelope as its body, and every
/// 503 its `Retry-After` header.
fn envelope_every_error(operation: &mut Operation) {
    for (status, response) in operation.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if !(status.starts_with('4') || status.starts_with('5')) {
            continue;
        }
        response.content.insert(
            "application/json".into(),
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorResponse")))
                .build(),
        );
        if status == "503" {
            response.headers.insert(
                "Retry-After".into(),
                HeaderBuilder::new()
                    .schema(utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some("Seconds after which a retry may succeed."))
                    .build(),
            );
        }
    }
}
