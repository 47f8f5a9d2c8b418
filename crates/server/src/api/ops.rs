//! Operational endpoints: `/health`, `/ready`, `/metrics`, `/api/v1/openapi.json`.

use crate::error::ApiError;
use crate::openapi::ApiDoc;
use crate::state::AppState;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use fleetreg_model::ErrorCode;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

/// The operational routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
}

/// The answer of `/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The process is alive.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = Liveness)))]
pub async fn health() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

/// The answer of `/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Always `ready`.
    #[schema(example = "ready")]
    pub status: &'static str,
    /// The store's engine (`sqlite` or `postgres`).
    pub store: &'static str,
    /// How writes are made durable.
    pub durability: String,
}

/// How long `/ready` waits for the store: a load balancer or a Kubernetes
/// probe learns within a second that this replica cannot serve.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(800);

/// The store answers.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, description = "SERVICE_UNAVAILABLE: the store does not answer")))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    let ping = tokio::time::timeout(READY_TIMEOUT, state.store.ping())
        .await
        .unwrap_or_else(|_| {
            Err(fleetreg_store::StoreError::Unavailable(
                "no answer from the database within the readiness timeout".into(),
            ))
        });
    match ping {
        Ok(()) => Ok(Json(Readiness {
            status: "ready",
            store: state.store.backend().as_str(),
            durability: state.store.durability().to_string(),
        })),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            Err(ApiError::new(
                ErrorCode::ServiceUnavailable,
                "the store is not reachable",
            ))
        }
    }
}

/// How long a scrape waits for the credential expiry counts.
const EXPIRY_COUNT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Prometheus text exposition. The credential expiry gauges are counted from
/// the store at each scrape; when the store does not answer in time they are
/// left out (stale) and the rest is served.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String, description = "Prometheus text format 0.0.4")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let credentials = &state.health.credentials;
    let counts = tokio::time::timeout(
        EXPIRY_COUNT_TIMEOUT,
        credentials.expiry_counts(credentials.rotation_warning_days()),
    )
    .await;
    let mut text = state.metrics.render();
    match counts {
        Ok(Ok(c)) => text.push_str(&crate::metrics::credential_expiry_text(
            c.expiring, c.expired,
        )),
        Ok(Err(error)) => {
            tracing::warn!(%error, "credential expiry gauges left out of this scrape")
        }
        Err(_) => tracing::warn!(
            "credential expiry gauges left out of this scrape: the store did not answer in time"
        ),
    }
    gauge(
        &mut text,
        "orphaned-hosts",
        state.store.count_orphaned_hosts(),
        |count| crate::metrics::orphaned_hosts_text(*count),
    )
    .await;
    gauge(
        &mut text,
        "sync-failing",
        state.store.count_failing_deployments(),
        |count| sync_failing_text(*count),
    )
    .await;
    gauge(
        &mut text,
        "edge-node",
        state.store.count_node_sync(),
        edge_nodes_text,
    )
    .await;
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// Appends the gauge `render` makes of what `read` answers; a store that
/// fails or does not answer in time leaves it out of this scrape (logged).
async fn gauge<T, F>(text: &mut String, what: &str, read: F, render: impl Fn(&T) -> String)
where
    F: std::future::Future<Output = Result<T, fleetreg_store::StoreError>>,
{
    match tokio::time::timeout(EXPIRY_COUNT_TIMEOUT, read).await {
        Ok(Ok(value)) => text.push_str(&render(&value)),
        Ok(Err(error)) => tracing::warn!(%error, "{what} gauge left out of this scrape"),
        Err(_) => {
            tracing::warn!("{what} gauge left out of this scrape: the store did not answer in time")
        }
    }
}

/// Gauges: edge nodes by sync status, and those not running their desired
/// configuration (docs/alerts/fleetreg-rules.yml alerts on failed nodes).
const EDGE_NODES: &str = "fleetreg_edge_nodes";
/// See [`EDGE_NODES`].
const EDGE_NODES_OUT_OF_SYNC: &str = "fleetreg_edge_nodes_out_of_sync";

/// The edge node gauges in Prometheus text format (counted by the database).
fn edge_nodes_text(counts: &fleetreg_store::NodeSyncCounts) -> String {
    let mut text =
        format!("# HELP {EDGE_NODES} Edge nodes by push-sync status.\n# TYPE {EDGE_NODES} gauge\n");
    for (status, count) in &counts.by_status {
        text.push_str(&format!("{EDGE_NODES}{{status=\"{status}\"}} {count}\n"));
    }
    let behind = counts.out_of_sync;
    text.push_str(&format!(
        "# HELP {EDGE_NODES_OUT_OF_SYNC} Edge nodes whose applied revision is not the desired one.\n\
         # TYPE {EDGE_NODES_OUT_OF_SYNC} gauge\n\
         {EDGE_NODES_OUT_OF_SYNC} {behind}\n"
    ));
    text
}

/// Gauge: sync-enabled deployments whose last `SYNC_FAILING_AFTER` (3) or more
/// syncs failed in a row (computed at scrape, like the orphaned-hosts gauge;
/// docs/alerts/fleetreg-rules.yml alerts on it).
const SYNC_FAILING_DEPLOYMENTS: &str = "fleetreg_sync_failing_deployments";

/// The sync-failing gauge in Prometheus text format.
fn sync_failing_text(count: u64) -> String {
    format!(
        "# HELP {SYNC_FAILING_DEPLOYMENTS} Sync-enabled deployments with {} or more failed syncs in a row.\n\
         # TYPE {SYNC_FAILING_DEPLOYMENTS} gauge\n\
         {SYNC_FAILING_DEPLOYMENTS} {count}\n",
        fleetreg_store::SYNC_FAILING_AFTER
    )
}

/// This API's OpenAPI document, generated from the code.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, body = Object, description = "This document (OpenAPI 3.1)")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
