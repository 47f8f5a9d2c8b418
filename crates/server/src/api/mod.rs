//! The HTTP API: one module per resource, each exporting `router()`.

pub mod audit;
pub mod clusters;
pub mod credentials;
pub mod events;
pub mod fleet;
pub mod ops;
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
        .merge(clusters::router())
        .merge(credentials::router())
        .merge(events::router())
        .merge(fleet::router())
        .merge(ops::router())
        .merge(tokens::router())
}

/// The `ETag` of a revision.
pub fn etag(revision: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{revision}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// The revision an `If-Match` header requires: `None` without the header or
/// with `*`; an unparsable value can match nothing and is a failed precondition.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    let bare = text.trim_start_matches("W/").trim_matches('"');
    bare.parse::<i64>().map(Some).map_err(|_| {
        ApiError::new(
            ErrorCode::PreconditionFailed,
            format!("If-Match {text:?} names no revision; send the ETag of a GET"),
        )
    })
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
