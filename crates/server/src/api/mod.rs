//! The HTTP API: one module per resource, each exporting `router()`.

pub mod audit;
pub mod client_health;
pub mod clients;
pub mod clusters;
pub mod credentials;
pub mod edge;
pub mod edge_sync;
pub mod events;
pub mod fleet;
pub mod node_config;
pub mod ops;
pub mod rollouts;
pub mod service_sync;
pub mod sync;
pub mod tokens;

use crate::error::ApiError;
use crate::state::AppState;
use axum::http::{HeaderMap, HeaderValue};
use axum::Router;
use fleetreg_model::{Audit, ErrorCode};

/// Header carrying the revision a list or read was taken at.
pub const REVISION_HEADER: &str = "x-fleetreg-revision";

/// All routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(audit::router())
        .merge(client_health::router())
        .merge(clients::router())
        .merge(clusters::router())
        .merge(credentials::router())
        .merge(edge::router())
        .merge(edge_sync::router())
        .merge(events::router())
        .merge(fleet::router())
        .merge(node_config::router())
        .merge(ops::router())
        .merge(rollouts::router())
        .merge(service_sync::router())
        .merge(sync::router())
        .merge(tokens::router())
}

/// The `ETag` of a revision.
pub fn etag(revision: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{revision}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// `body` as JSON with the `ETag` of `revision`.
pub fn with_etag<T: serde::Serialize>(
    status: axum::http::StatusCode,
    revision: i64,
    body: T,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(axum::http::header::ETAG, etag(revision));
    response
}

/// What an `If-Match` header (RFC 9110 §13.1.1) asks of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// No header, or `*`: any current revision will do.
    Any,
    /// One of these revisions must be current; empty when the header lists
    /// only weak tags (`W/"…"`, which never match under `If-Match`) or tags
    /// that name no revision, so nothing can match.
    OneOf(Vec<i64>),
}

impl IfMatch {
    /// Reads every `If-Match` header line. Entity tags compare strongly; a
    /// value that is not a list of quoted tags is a failed precondition.
    pub fn from_headers(headers: &HeaderMap) -> Result<IfMatch, ApiError> {
        let mut revisions = Vec::new();
        let mut any_header = false;
        for value in headers.get_all(axum::http::header::IF_MATCH) {
            any_header = true;
            let text = value.to_str().unwrap_or_default();
            for tag in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if tag == "*" {
                    return Ok(IfMatch::Any);
                }
                let (weak, quoted) = match tag.strip_prefix("W/") {
                    Some(rest) => (true, rest),
                    None => (false, tag),
                };
                let Some(opaque) = quoted
                    .strip_prefix('"')
                    .and_then(|rest| rest.strip_suffix('"'))
                else {
                    return Err(ApiError::new(
                        ErrorCode::PreconditionFailed,
                        "If-Match must list quoted entity tags; send the ETag of a GET",
                    ));
                };
                match opaque.parse::<i64>() {
                    Ok(revision) if !weak && !revisions.contains(&revision) => {
                        revisions.push(revision)
                    }
                    _ => {}
                }
            }
        }
        Ok(if any_header {
            IfMatch::OneOf(revisions)
        } else {
            IfMatch::Any
        })
    }

    /// The revision the store must find current, or `None` when any will do.
    /// A list of several is decided against `current()` (read only then);
    /// the store still checks the chosen one atomically with the write.
    pub async fn required_revision<F>(self, current: F) -> Result<Option<i64>, ApiError>
    where
        F: std::future::Future<Output = Result<i64, ApiError>>,
    {
        let revisions = match self {
            IfMatch::Any => return Ok(None),
            IfMatch::OneOf(revisions) => revisions,
        };
        let chosen = match revisions.as_slice() {
            [] => None,
            [only] => Some(*only),
            several => Some(current.await?).filter(|now| several.contains(now)),
        };
        chosen.map(Some).ok_or_else(|| {
            ApiError::new(
                ErrorCode::PreconditionFailed,
                "If-Match names no current revision (weak tags never match); send the ETag of a GET",
            )
        })
    }
}

/// The audit context of a request (actor `anonymous` until authentication exists).
pub fn audit_of(headers: &HeaderMap, caller: crate::extract::Caller) -> Audit {
    let (actor, role) = match caller.principal {
        Some(p) => (p.name, Some(p.role.as_str().to_owned())),
        None => ("anonymous".into(), None),
    };
    Audit {
        actor,
        role,
        source: caller.addr.map(|p| p.ip().to_string()),
        request_id: headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}
