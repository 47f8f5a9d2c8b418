//! `GET /api/v1/clients/{name}/health`: a client's live health, checked now
//! (the seed's "Live health checks (if deployed)").

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use fleetreg_model::{ClientHealth, ClientName};
use fleetreg_store::StoreError;

/// The route.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/clients/{name}/health", get(health))
}

/// Check a client's URLs now, all at once, each within
/// `client_health.timeout_seconds`: status, latency and, for https, the
/// certificate's expiry. A URL is healthy when it answers 2xx or 3xx in time
/// over a verified certificate; `HEALTHY` when all are, `DOWN` when none is,
/// else `DEGRADED`. A client that is not `deployed`, or has no URLs, is
/// `NOT_CHECKED` (with the reason) and nothing is fetched. A URL whose host is,
/// or resolves only to, an address outside `health_check.allowed_networks`
/// is `REFUSED`, never contacted. Nothing is recorded: the periodic checks
/// record states (`CLIENT_HEALTH_CHANGED`).
#[utoipa::path(get, path = "/api/v1/clients/{name}/health", tag = "clients",
    params(("name" = String, Path, description = "the client's name")),
    responses((status = 200, body = ClientHealth), (status = 404, description = "CLIENT_NOT_FOUND")))]
pub async fn health(
    State(state): State<AppState>,
    crate::extract::PathText(name): crate::extract::PathText,
) -> Result<Json<ClientHealth>, ApiError> {
    let name = ClientName::parse(&name).map_err(|_| StoreError::ClientNotFound(name.clone()))?;
    let client = state.store.get_client(name.as_str()).await?;
    Ok(Json(state.client_health.check(&client).await))
}
