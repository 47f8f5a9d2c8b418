//! `/api/v1/rollouts`: canary-first rollouts of an app version (seed
//! client-registry.md, "Canary Deployment Workflow"): start (plan), read,
//! list, and the operator's promote, pause, resume, abort. The server's
//! rollout driver (`rollouts.rs`) moves running rollouts.

use super::audit_of;
use crate::error::ApiError;
use crate::extract::{ApiJson, PathText, Peer, QueryPairs};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use fleetreg_model::{ErrorCode, Rollout, RolloutCommand, RolloutRequest, RolloutStatus};
use uuid::Uuid;

/// The rollout routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/rollouts", get(list).post(start))
        .route("/api/v1/rollouts/{rollout_id}", get(get_one))
        .route("/api/v1/rollouts/{rollout_id}/promote", post(promote))
        .route("/api/v1/rollouts/{rollout_id}/pause", post(pause))
        .route("/api/v1/rollouts/{rollout_id}/resume", post(resume))
        .route("/api/v1/rollouts/{rollout_id}/abort", post(abort))
}

fn rollout_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::not_found(ErrorCode::RolloutNotFound, "rollout", raw))
}

/// Start a rollout: the plan's first wave is every deployed canary client
/// running the app, then production clients in waves of `wave_size`.
#[utoipa::path(post, path = "/api/v1/rollouts", tag = "rollouts", request_body = RolloutRequest,
    responses((status = 201, body = Rollout), (status = 400, description = "VALIDATION_ERROR (e.g. no canary client runs the app)")))]
pub async fn start(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<RolloutRequest>,
) -> Result<(StatusCode, Json<Rollout>), ApiError> {
    let clients = state.store.all_clients().await?;
    let rollout = Rollout::plan(&request, &clients, Uuid::now_v7(), state.clock.now())?;
    let rollout = state
        .store
        .create_rollout(rollout, &audit_of(&headers, peer))
        .await?;
    Ok((StatusCode::CREATED, Json(rollout)))
}

/// Rollouts, newest first.
#[utoipa::path(get, path = "/api/v1/rollouts", tag = "rollouts",
    params(("status" = Option<String>, Query, description = "running, awaiting_promotion, paused, completed, halted or aborted"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "default 50")),
    responses((status = 200, body = [Rollout]), (status = 400, description = "VALIDATION_ERROR")))]
pub async fn list(
    State(state): State<AppState>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<Vec<Rollout>>, ApiError> {
    let (mut status, mut limit) = (None, 50);
    for (key, value) in pairs {
        match key.as_str() {
            "status" => {
                status = Some(RolloutStatus::parse(&value).ok_or_else(|| {
                    ApiError::validation(
                        "status",
                        "must be running, awaiting_promotion, paused, completed, halted or aborted",
                    )
                })?)
            }
            "limit" => limit = crate::query::integer("limit", &value, 1, 500)?,
            other => {
                return Err(ApiError::validation(
                    other,
                    "unknown query parameter; expected status or limit",
                ))
            }
        }
    }
    Ok(Json(state.store.list_rollouts(status, limit).await?))
}

/// A rollout: its waves and each client's state.
#[utoipa::path(get, path = "/api/v1/rollouts/{rollout_id}", tag = "rollouts",
    params(("rollout_id" = Uuid, Path)),
    responses((status = 200, body = Rollout), (status = 404, description = "ROLLOUT_NOT_FOUND")))]
pub async fn get_one(
    State(state): State<AppState>,
    PathText(raw): PathText,
) -> Result<Json<Rollout>, ApiError> {
    Ok(Json(state.store.get_rollout(rollout_id(&raw)?).await?))
}

async fn command(
    state: AppState,
    raw: &str,
    command: RolloutCommand,
    caller: crate::extract::Caller,
    headers: HeaderMap,
) -> Result<Json<Rollout>, ApiError> {
    let id = rollout_id(raw)?;
    Ok(Json(
        state
            .store
            .command_rollout(id, command, &audit_of(&headers, caller))
            .await?,
    ))
}

/// Start production after the canary wave is done.
#[utoipa::path(post, path = "/api/v1/rollouts/{rollout_id}/promote", tag = "rollouts",
    params(("rollout_id" = Uuid, Path)),
    responses((status = 200, body = Rollout), (status = 404, description = "ROLLOUT_NOT_FOUND"),
              (status = 409, description = "ROLLOUT_CONFLICT (not awaiting promotion)")))]
pub async fn promote(
    State(state): State<AppState>,
    PathText(raw): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<Json<Rollout>, ApiError> {
    command(state, &raw, RolloutCommand::Promote, peer, headers).await
}

/// Stop advancing.
#[utoipa::path(post, path = "/api/v1/rollouts/{rollout_id}/pause", tag = "rollouts",
    params(("rollout_id" = Uuid, Path)),
    responses((status = 200, body = Rollout), (status = 404, description = "ROLLOUT_NOT_FOUND"),
              (status = 409, description = "ROLLOUT_CONFLICT")))]
pub async fn pause(
    State(state): State<AppState>,
    PathText(raw): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<Json<Rollout>, ApiError> {
    command(state, &raw, RolloutCommand::Pause, peer, headers).await
}

/// Continue a paused rollout.
#[utoipa::path(post, path = "/api/v1/rollouts/{rollout_id}/resume", tag = "rollouts",
    params(("rollout_id" = Uuid, Path)),
    responses((status = 200, body = Rollout), (status = 404, description = "ROLLOUT_NOT_FOUND"),
              (status = 409, description = "ROLLOUT_CONFLICT")))]
pub async fn resume(
    State(state): State<AppState>,
    PathText(raw): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<Json<Rollout>, ApiError> {
    command(state, &raw, RolloutCommand::Resume, peer, headers).await
}

/// Stop for good.
#[utoipa::path(post, path = "/api/v1/rollouts/{rollout_id}/abort", tag = "rollouts",
    params(("rollout_id" = Uuid, Path)),
    responses((status = 200, body = Rollout), (status = 404, description = "ROLLOUT_NOT_FOUND"),
              (status = 409, description = "ROLLOUT_CONFLICT (already finished)")))]
pub async fn abort(
    State(state): State<AppState>,
    PathText(raw): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<Json<Rollout>, ApiError> {
    command(state, &raw, RolloutCommand::Abort, peer, headers).await
}
