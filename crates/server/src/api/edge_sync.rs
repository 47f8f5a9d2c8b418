//! The seed's sync-controller commands over HTTP: every node's sync health
//! (`sync-controller.sh health`, with the reconciliation schedule), a manual
//! push (`push`) and the reconciliation (`reconcile [hours]`; the interval is
//! stored, so every replica and restart uses it).

use super::audit_of;
use super::edge::label_in_path;
use crate::error::ApiError;
use crate::extract::{OptionalJson, Peer};
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use fleetreg_model::{DnsLabel, ErrorCode, NodeSync, PushReason};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest reconciliation interval accepted (a week).
const MAX_RECONCILE_SECONDS: u64 = 7 * 24 * 3600;
/// Shortest one (a minute).
const MIN_RECONCILE_SECONDS: u64 = 60;

/// The sync routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sync/health", get(health))
        .route("/api/v1/sync/push", post(push))
        .route("/api/v1/sync/reconcile", post(reconcile))
}

/// Every node's sync state, and the periodic reconciliation.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncHealth {
    /// Laptops first, then VPS nodes, by name.
    pub items: Vec<NodeSync>,
    /// How often and when next every node is sent its full configuration.
    pub reconcile: ReconcileStatus,
}

/// Where the reconciliation interval comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IntervalSource {
    /// Set by `POST /api/v1/sync/reconcile` (`fleetreg sync reconcile
    /// --every`), stored for every replica.
    Stored,
    /// The configuration file's `edge.reconcile_seconds` (nothing stored).
    Config,
}

/// The periodic reconciliation, as stored (the same on every replica).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconcileStatus {
    /// How often, in seconds; 0: never (only on request).
    pub every_seconds: u64,
    /// Where `every_seconds` comes from.
    pub source: IntervalSource,
    /// The last full reconciliation (before the first: when the controller
    /// started the schedule); null before that.
    pub last_at: Option<DateTime<Utc>>,
    /// When the next one is due; null when off or not scheduled yet.
    pub next_at: Option<DateTime<Utc>>,
    /// Seconds from now (the server's clock) to `next_at`; 0 when due.
    pub next_in_seconds: Option<u64>,
}

/// The stored reconciliation schedule as this replica applies it.
async fn reconcile_status(state: &AppState) -> Result<ReconcileStatus, ApiError> {
    let schedule = state.store.reconcile_schedule().await?;
    let next_at = state.edge.next_at(&schedule);
    let now = state.clock.now();
    Ok(ReconcileStatus {
        every_seconds: state.edge.every(&schedule).as_secs(),
        source: match schedule.every_seconds {
            Some(_) => IntervalSource::Stored,
            None => IntervalSource::Config,
        },
        last_at: schedule.reconciled_at,
        next_at,
        next_in_seconds: next_at.map(|next| (next - now).num_seconds().max(0).unsigned_abs()),
    })
}

/// `POST /api/v1/sync/push`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// Push only to this node; every node when absent.
    #[serde(default)]
    pub node: Option<String>,
}

/// `POST /api/v1/sync/reconcile`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    /// From now on reconcile this often (60 s to a week); unchanged when absent.
    #[serde(default)]
    pub every_seconds: Option<u64>,
}

/// The nodes a push or reconciliation was sent to.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pushed {
    /// Their names.
    pub pushed: Vec<DnsLabel>,
    /// The reconciliation interval now, in seconds.
    pub every_seconds: u64,
}

/// Every node's sync state (seed "Node Health Status"): status
/// `active`/`failed`/`offline`, desired and applied revision, last sync,
/// last heartbeat, unacknowledged pushes, last error, up for routing.
#[utoipa::path(get, path = "/api/v1/sync/health", tag = "edge",
    responses((status = 200, body = SyncHealth)))]
pub async fn health(State(state): State<AppState>) -> Result<Json<SyncHealth>, ApiError> {
    Ok(Json(SyncHealth {
        items: state.store.list_node_sync().await?,
        reconcile: reconcile_status(&state).await?,
    }))
}

/// Send every node (or one) its configuration now, whatever its state;
/// a `failed` node gets its retries back (the seed's manual recovery).
#[utoipa::path(post, path = "/api/v1/sync/push", tag = "edge", request_body = PushRequest,
    responses((status = 200, body = Pushed), (status = 404, description = "NODE_NOT_FOUND")))]
pub async fn push(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    OptionalJson(request): OptionalJson<PushRequest>,
) -> Result<Json<Pushed>, ApiError> {
    let node = request
        .node
        .as_deref()
        .map(|n| label_in_path(n, ErrorCode::NodeNotFound, "node"))
        .transpose()?;
    let sent = state
        .store
        .reset_pushes(node.as_ref(), PushReason::Push, &audit_of(&headers, peer))
        .await?;
    Ok(Json(Pushed {
        pushed: sent.into_iter().map(|s| s.node).collect(),
        every_seconds: reconcile_status(&state).await?.every_seconds,
    }))
}

/// Reconcile now: every node is sent its full configuration, and the next
/// periodic reconciliation is an interval from now; with `every_seconds`,
/// it runs that often from now on (stored: every replica and restart uses
/// it instead of `edge.reconcile_seconds`; audited `sync.reconcile_interval`).
#[utoipa::path(post, path = "/api/v1/sync/reconcile", tag = "edge", request_body = ReconcileRequest,
    responses((status = 200, body = Pushed), (status = 400, description = "VALIDATION_ERROR")))]
pub async fn reconcile(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    OptionalJson(request): OptionalJson<ReconcileRequest>,
) -> Result<Json<Pushed>, ApiError> {
    let audit = audit_of(&headers, peer);
    if let Some(every) = request.every_seconds {
        if !(MIN_RECONCILE_SECONDS..=MAX_RECONCILE_SECONDS).contains(&every) {
            return Err(ApiError::validation(
                "every_seconds",
                format!("must be {MIN_RECONCILE_SECONDS} to {MAX_RECONCILE_SECONDS}"),
            ));
        }
        state.store.set_reconcile_every(every, &audit).await?;
    }
    let sent = state
        .store
        .reset_pushes(None, PushReason::Reconcile, &audit)
        .await?;
    // The interval or the schedule changed: this replica's controller
    // reads them at its next tick.
    state.edge.settings_changed();
    Ok(Json(Pushed {
        pushed: sent.into_iter().map(|s| s.node).collect(),
        every_seconds: reconcile_status(&state).await?.every_seconds,
    }))
}
