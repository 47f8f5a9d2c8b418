//! `/api/v1/audit`: read the audit log (who did what, when, from where, with
//! which result), filtered and paged by id. Auditors and admins only.

use crate::error::ApiError;
use crate::extract::QueryPairs;
use crate::query::{integer, timestamp};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use fleetreg_model::AuditEntry;
use fleetreg_store::AuditQuery;
use serde::Serialize;
use utoipa::ToSchema;

/// Entries returned when `limit` is not given.
pub const DEFAULT_AUDIT_LIMIT: u32 = 100;
/// Most entries returned at once.
pub const MAX_AUDIT_LIMIT: u32 = 1000;

/// The audit routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/audit", get(list))
}

/// A page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    /// Entries in id (= time of writing) order.
    pub items: Vec<AuditEntry>,
    /// Pass as `after` to read on (the last id of the page, or the `after`
    /// given when the page is empty).
    pub next_after: i64,
}

/// The store query of the request's parameters; unknown ones are refused.
fn audit_query(pairs: Vec<(String, String)>) -> Result<AuditQuery, ApiError> {
    let mut query = AuditQuery {
        limit: DEFAULT_AUDIT_LIMIT,
        ..AuditQuery::default()
    };
    for (key, value) in pairs {
        match key.as_str() {
            "actor" => query.actor = Some(value),
            "action" => query.action = Some(value),
            "resource_id" => {
                query.resource_id = Some(
                    value
                        .parse()
                        .map_err(|_| ApiError::validation("resource_id", "must be a UUID"))?,
                );
            }
            "since" => query.since = Some(timestamp("since", &value)?),
            "until" => query.until = Some(timestamp("until", &value)?),
            "after" => query.after_id = Some(integer("after", &value, 0, i64::MAX)?),
            "limit" => query.limit = integer("limit", &value, 1, MAX_AUDIT_LIMIT)?,
            other => {
                return Err(ApiError::validation(
                    other,
                    "unknown query parameter; expected actor, action, resource_id, since, until, after or limit",
                ));
            }
        }
    }
    Ok(query)
}

/// Audit entries, oldest first: every mutation and credential access with its
/// actor, role, action, resource, result, error code, revision, source address
/// and request id. Filters combine with AND; page with `after` = `next_after`.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit",
    params(("actor" = Option<String>, Query, description = "exact actor (token name, `anonymous`, `system:…`)"),
           ("action" = Option<String>, Query, description = "exact action, e.g. `cluster.update`, `credentials.decrypt`"),
           ("resource_id" = Option<String>, Query, description = "the resource's UUID (a cluster id)"),
           ("since" = Option<String>, Query, description = "RFC 3339; entries at or after it"),
           ("until" = Option<String>, Query, description = "RFC 3339; entries before it"),
           ("after" = Option<i64>, Query, description = "entries with an id above it (paging)"),
           ("limit" = Option<u32>, Query, description = "default 100, max 1000")),
    responses((status = 200, body = AuditList), (status = 400, description = "VALIDATION_ERROR"),
              (status = 401, description = "UNAUTHENTICATED"), (status = 403, description = "FORBIDDEN: auditor or admin only")))]
pub async fn list(
    State(state): State<AppState>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<AuditList>, ApiError> {
    let query = audit_query(pairs)?;
    let items = state.store.list_audit(&query).await?;
    let next_after = items
        .last()
        .map_or(query.after_id.unwrap_or(0), |entry| entry.id);
    Ok(Json(AuditList { items, next_after }))
}
