//! Fleet views (seed 4.1 "Fleet Operations"): `/api/v1/fleet/summary`,
//! `/api/v1/fleet/health`, `/api/v1/fleet/capabilities`. Each is aggregated in
//! the database by the store; nothing here loads clusters. Concurrent summary and
//! capabilities requests share one aggregate ([`Coalesced`]) that started after
//! they arrived, so they are never stale.

use crate::coalesce::{Coalesced, CoalescedError};
use crate::error::ApiError;
use crate::extract::QueryPairs;
use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use fleetreg_model::{ClusterType, FleetCapabilities, FleetHealth, FleetSummary};

/// How many clusters each list of the health view holds by default.
pub const DEFAULT_HEALTH_LIMIT: u32 = 10;
/// The largest `limit` the health view accepts.
pub const MAX_HEALTH_LIMIT: u32 = 1000;

/// The fleet-wide aggregates concurrent requests share (see [`Coalesced`]).
#[derive(Debug, Clone, Default)]
pub struct SharedAggregates {
    summary: Coalesced<FleetSummary>,
    capabilities: Coalesced<FleetCapabilities>,
}

/// The fleet routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/fleet/summary", get(summary))
        .route("/api/v1/fleet/health", get(health))
        .route("/api/v1/fleet/capabilities", get(capabilities))
}

/// Fleet summary, exactly the shape of seed 4.2. Every state, type and
/// environment appears in its map, with 0 when no cluster has it.
#[utoipa::path(get, path = "/api/v1/fleet/summary", tag = "fleet",
    responses((status = 200, body = FleetSummary)))]
pub async fn summary(State(state): State<AppState>) -> Result<Json<FleetSummary>, ApiError> {
    let summary = state
        .fleet
        .summary
        .get(|| state.store.fleet_summary())
        .await
        .map_err(shared_error)?;
    Ok(Json(FleetSummary::clone(&summary)))
}

/// Fleet health: counts by state, the score distribution, the least healthy
/// clusters and the clusters not seen within twice their type's check interval;
/// credentials expiring within `credentials.rotation_warning_days` or expired
/// (counts and the soonest first, read beside the aggregate).
#[utoipa::path(get, path = "/api/v1/fleet/health", tag = "fleet",
    params(("limit" = Option<u32>, Query, description = "Length of the `least_healthy`, `stale` and `credentials_expiring` lists (default 10, 1–1000)")),
    responses((status = 200, body = FleetHealth), (status = 400, description = "VALIDATION_ERROR")))]
pub async fn health(
    State(state): State<AppState>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<FleetHealth>, ApiError> {
    let limit = health_limit(&pairs)?;
    let now = state.clock.now();
    let stale_before: Vec<(ClusterType, chrono::DateTime<chrono::Utc>)> = ClusterType::ALL
        .iter()
        .filter_map(|&t| {
            let twice = state.health.timing(t).interval.saturating_mul(2);
            let twice = chrono::Duration::from_std(twice).ok()?;
            Some((t, now - twice))
        })
        .collect();
    let mut health = state.store.fleet_health(&stale_before, limit).await?;
    let credentials = &state.health.credentials;
    let expiring = credentials
        .expiring(credentials.rotation_warning_days(), limit)
        .await?;
    health.credentials_expiring_count = expiring.expiring_count;
    health.credentials_expired_count = expiring.expired_count;
    health.credentials_expiring = expiring.items;
    health.orphaned_hosts_count = state.store.count_orphaned_hosts().await?;
    Ok(Json(health))
}

/// Discovered capabilities across the fleet: GPU totals by type, CNF, SR-IOV,
/// PTP and observability coverage.
#[utoipa::path(get, path = "/api/v1/fleet/capabilities", tag = "fleet",
    responses((status = 200, body = FleetCapabilities)))]
pub async fn capabilities(
    State(state): State<AppState>,
) -> Result<Json<FleetCapabilities>, ApiError> {
    let capabilities = state
        .fleet
        .capabilities
        .get(|| state.store.fleet_capabilities())
        .await
        .map_err(shared_error)?;
    Ok(Json(FleetCapabilities::clone(&capabilities)))
}

/// The answer to a caller whose fleet aggregate failed.
fn shared_error(error: CoalescedError<fleetreg_store::StoreError>) -> ApiError {
    match error {
        CoalescedError::Failed(error) => error.into(),
        shared @ CoalescedError::SharedFailed => ApiError::internal(shared),
    }
}

fn health_limit(pairs: &[(String, String)]) -> Result<u32, ApiError> {
    let mut limit = DEFAULT_HEALTH_LIMIT;
    for (key, value) in pairs {
        match key.as_str() {
            "limit" => limit = crate::query::integer("limit", value, 1, MAX_HEALTH_LIMIT)?,
            other => {
                return Err(ApiError::validation(
                    other,
                    "unknown query parameter; accepted: limit",
                ))
            }
        }
    }
    Ok(limit)
}
