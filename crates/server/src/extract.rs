//! Extractors whose rejections are API errors in our envelope.

use crate::error::ApiError;
use axum::body::{Bytes, HttpBody};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_TYPE, EXPECT};
use axum::http::request::Parts;
use axum::http::Version;
use bytes::BytesMut;
use fleetreg_model::ErrorCode;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

/// Largest body accepted (see [`BodyLimit`] for a route that takes more).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How far past the limit an oversized body is read (and dropped) before
/// the 413 is sent.
const DRAIN_BYTES: usize = 8 * 1024 * 1024;

/// Longest time spent reading and dropping an oversized body.
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// The largest body a route accepts when that is not [`MAX_BODY_BYTES`]:
/// set on the route as a request extension,
/// `.layer(Extension(BodyLimit(n)))`, and read by [`ApiBytes`].
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A request body of at most the route's [`BodyLimit`] ([`MAX_BODY_BYTES`]
/// unless the route sets one); a larger one is `PAYLOAD_TOO_LARGE`.
///
/// Before an HTTP/1.1 413, the oversized body is read and dropped up to
/// [`DRAIN_BYTES`] past the limit (for at most [`DRAIN_TIME`]), as a web server's lingering
/// close does: closing the connection with the body still arriving resets it,
/// and a client still writing would see a broken pipe instead of the answer.
/// Not when the client waits for `100 Continue` before sending a body
/// declared too large (it sends nothing), nor over HTTP/2 (a stream is reset
/// on its own).
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(MAX_BODY_BYTES, |l| l.0);
        let expects_continue = req
            .headers()
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let lingers = req.version() <= Version::HTTP_11;
        let body = req.into_body();
        let declared_too_large = body.size_hint().lower() > limit as u64;
        let mut frames = body.into_data_stream();
        let mut received = 0;
        if !declared_too_large {
            let mut read = BytesMut::new();
            loop {
                match frames.next().await {
                    None => return Ok(ApiBytes(read.freeze())),
                    Some(Err(e)) => {
                        return Err(ApiError::new(
                            ErrorCode::MalformedJson,
                            format!("could not read request body: {e}"),
                        ))
                    }
                    Some(Ok(chunk)) if read.len() + chunk.len() > limit => {
                        received = read.len() + chunk.len();
                        break;
                    }
                    Some(Ok(chunk)) => read.extend_from_slice(&chunk),
                }
            }
        }
        if lingers && !(declared_too_large && expects_continue) {
            let drain = async {
                while let Some(Ok(chunk)) = frames.next().await {
                    received += chunk.len();
                    if received > limit + DRAIN_BYTES {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
        }
        Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body exceeds {limit} bytes"),
        ))
    }
}

/// A JSON body: malformed JSON is `MALFORMED_JSON`, a body of the wrong shape
/// (unknown field, wrong type) is `VALIDATION_ERROR` naming the field.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if let Some(content_type) = req.headers().get(CONTENT_TYPE) {
            let content_type = content_type
                .to_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let essence = content_type.split(';').next().unwrap_or_default().trim();
            // curl -d sends form-urlencoded by default; its body is still tried as JSON.
            if !(essence == "application/json"
                || essence.ends_with("+json")
                || essence == "application/x-www-form-urlencoded")
            {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    format!("expected Content-Type application/json, got {essence:?}"),
                ));
            }
        }
        let ApiBytes(bytes) = ApiBytes::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A JSON body that may be left out: an empty (or all-whitespace) body is
/// `T::default()`; anything else is read as [`ApiJson`] reads it.
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ApiBytes(body) = ApiBytes::from_request(req, state).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            Ok(OptionalJson(T::default()))
        } else {
            parse_json(&body).map(OptionalJson)
        }
    }
}

/// Parses a JSON body with the error mapping of [`ApiJson`]: text that is not
/// JSON is `MALFORMED_JSON`; JSON of the wrong shape is `VALIDATION_ERROR` with
/// the path of the offending field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let UniqueKeys(value) = serde_json::from_slice(bytes).map_err(|e| {
        if let Some(key) = DuplicateKey::of(&e) {
            return ApiError::validation(&key, "given more than once in the body");
        }
        ApiError::new(
            ErrorCode::MalformedJson,
            format!("request body is not valid JSON: {e}"),
        )
        .with_details(json!({ "line": e.line(), "column": e.column() }))
    })?;
    if !value.is_object() {
        return Err(ApiError::validation("body", "must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        let reason = strip_position(&error.into_inner().to_string());
        ApiError::new(
            ErrorCode::ValidationError,
            format!("invalid {field}: {reason}"),
        )
        .with_details(json!({ "field": field, "reason": reason }))
    })
}

/// A JSON value read with one rule serde_json leaves out: an object may not
/// name the same key twice (which of the two would count is a guess, and two
/// parsers may guess differently).
struct UniqueKeys(serde_json::Value);

/// The error a repeated key raises, recognised by its prefix.
struct DuplicateKey;

impl DuplicateKey {
    const PREFIX: &'static str = "duplicate key ";

    /// The repeated key (at most 64 characters of it), if `error` is that.
    fn of(error: &serde_json::Error) -> Option<String> {
        if error.classify() != serde_json::error::Category::Data {
            return None;
        }
        let message = error.to_string();
        let key = message.strip_prefix(Self::PREFIX)?;
        Some(crate::query::bounded(&strip_position(key)))
    }
}

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(v.into()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(v.into()))
    }
    fn visit_str<E>(self, v: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(v.into()))
    }
    fn visit_string<E>(self, v: String) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(v.into()))
    }
    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(serde_json::Value::Null))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(UniqueKeys(items.into()))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "{}{key}",
                    DuplicateKey::PREFIX
                )));
            }
            let UniqueKeys(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(UniqueKeys(object.into()))
    }
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// A cluster id from the path; anything that is not a UUID is `CLUSTER_NOT_FOUND`.
pub struct ClusterId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for ClusterId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw): axum::extract::Path<String> =
            axum::extract::Path::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::cluster_not_found("(invalid path)"))?;
        Uuid::parse_str(&raw)
            .map(ClusterId)
            .map_err(|_| ApiError::cluster_not_found(&raw))
    }
}

/// A cluster name from the path; a path that cannot be decoded is `CLUSTER_NOT_FOUND`.
pub struct ClusterNameParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClusterNameParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw): axum::extract::Path<String> =
            axum::extract::Path::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::cluster_not_found("(undecodable name)"))?;
        Ok(ClusterNameParam(raw))
    }
}

/// The one path parameter of a route, as text. A segment that does not
/// decode (`%ff`) names nothing: 404 `NOT_FOUND` in the API's envelope, not
/// axum's plain-text rejection.
pub struct PathText(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathText {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw): axum::extract::Path<String> =
            axum::extract::Path::from_request_parts(parts, state)
                .await
                .map_err(|_| {
                    ApiError::new(
                        fleetreg_model::ErrorCode::NotFound,
                        "no such resource: the path does not decode as UTF-8",
                    )
                })?;
        Ok(PathText(raw))
    }
}

/// The raw query pairs, in order (for repeatable parameters such as `label`).
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        Ok(QueryPairs(
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        ))
    }
}

/// Who is calling and from where: the source address and the authenticated
/// principal (set by `auth::authorize`), for the audit log.
pub struct Peer(pub Caller);

/// The caller of a request.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The source address.
    pub addr: Option<std::net::SocketAddr>,
    /// The token's name and role, when authenticated.
    pub principal: Option<crate::auth::Principal>,
}

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(Caller {
            addr: parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0),
            principal: parts.extensions.get::<crate::auth::Principal>().cloned(),
        }))
    }
}
