//! Hosts, client deployments and their sync (seed
//! cluster-lifecycle-deregistration.md): hosts under a cluster and their
//! heartbeats, deployments (enable, pause, move, delete), sync jobs and
//! conflicts, the leader lease, and the cluster's sync status.

use super::audit_of;
use crate::error::ApiError;
use crate::extract::{ApiJson, ClusterId, PathText, Peer, QueryPairs};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use fleetreg_model::{
    ConflictReport, Deployment, DeploymentCreateRequest, ErrorCode, Host, HostCreateRequest,
    Leader, LeaderClaim, MoveRequest, SyncConflict, SyncJob, SyncJobReport, SyncStartRequest,
    SyncStatusView, MAX_LEASE_SECONDS,
};
use uuid::Uuid;

/// The sync routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/clusters/{id}/hosts",
            get(list_hosts).post(register_host),
        )
        .route("/api/v1/clusters/{id}/sync-status", get(sync_status))
        .route("/api/v1/clusters/{id}/leader", post(claim_leader))
        .route("/api/v1/hosts/orphaned", get(orphaned))
        .route("/api/v1/hosts/{host_id}/heartbeat", post(heartbeat))
        .route(
            "/api/v1/hosts/{host_id}/deployments",
            post(create_deployment),
        )
        .route(
            "/api/v1/deployments/{deployment_id}",
            get(get_deployment).delete(delete_deployment),
        )
        .route("/api/v1/deployments/{deployment_id}/enable", post(enable))
        .route("/api/v1/deployments/{deployment_id}/pause", post(pause))
        .route("/api/v1/deployments/{deployment_id}/move", post(move_to))
        .route("/api/v1/deployments/{deployment_id}/sync", post(start_sync))
        .route(
            "/api/v1/deployments/{deployment_id}/conflicts",
            get(conflicts).post(record_conflict),
        )
        .route("/api/v1/sync-jobs/{job_id}/finish", post(finish_sync))
}

/// A UUID path segment; anything else names no `kind` (404 with `code`).
fn uuid_of(raw: &str, code: ErrorCode, kind: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(code, kind, raw))
}

fn host_id(raw: &str) -> Result<Uuid, ApiError> {
    uuid_of(raw, ErrorCode::HostNotFound, "host")
}

fn deployment_id(raw: &str) -> Result<Uuid, ApiError> {
    uuid_of(raw, ErrorCode::DeploymentNotFound, "deployment")
}

/// Register a host under a cluster.
#[utoipa::path(post, path = "/api/v1/clusters/{id}/hosts", tag = "sync", request_body = HostCreateRequest,
    params(crate::openapi::ClusterPath),
    responses((status = 201, body = Host), (status = 400, description = "VALIDATION_ERROR"),
              (status = 404, description = "CLUSTER_NOT_FOUND"), (status = 409, description = "HOST_ALREADY_EXISTS")))]
pub async fn register_host(
    State(state): State<AppState>,
    ClusterId(id): ClusterId,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<HostCreateRequest>,
) -> Result<(StatusCode, Json<Host>), ApiError> {
    request.validate()?;
    let host = state
        .store
        .register_host(id, request, &audit_of(&headers, peer))
        .await?;
    Ok((StatusCode::CREATED, Json(host)))
}

/// A cluster's hosts, by name.
#[utoipa::path(get, path = "/api/v1/clusters/{id}/hosts", tag = "sync",
    params(crate::openapi::ClusterPath),
    responses((status = 200, body = [Host]), (status = 404, description = "CLUSTER_NOT_FOUND")))]
pub async fn list_hosts(
    State(state): State<AppState>,
    ClusterId(id): ClusterId,
) -> Result<Json<Vec<Host>>, ApiError> {
    Ok(Json(state.store.list_hosts(id).await?))
}

/// Most recent sync jobs in a sync status.
const STATUS_JOBS: u32 = 20;

/// Hosts, leader lease, deployments and recent sync jobs of a cluster.
#[utoipa::path(get, path = "/api/v1/clusters/{id}/sync-status", tag = "sync",
    params(crate::openapi::ClusterPath),
    responses((status = 200, body = SyncStatusView), (status = 404, description = "CLUSTER_NOT_FOUND")))]
pub async fn sync_status(
    State(state): State<AppState>,
    ClusterId(id): ClusterId,
) -> Result<Json<SyncStatusView>, ApiError> {
    Ok(Json(state.store.sync_status(id, STATUS_JOBS).await?))
}

/// Take or renew the cluster's leader lease for one of its hosts: granted
/// when free, expired or already held by that host (compare-and-swap).
#[utoipa::path(post, path = "/api/v1/clusters/{id}/leader", tag = "sync", request_body = LeaderClaim,
    params(crate::openapi::ClusterPath),
    responses((status = 200, body = Leader), (status = 400, description = "VALIDATION_ERROR"),
              (status = 404, description = "CLUSTER_NOT_FOUND, HOST_NOT_FOUND (not a host of this cluster)"),
              (status = 409, description = "LEADER_HELD (details: holder and expiry)")))]
pub async fn claim_leader(
    State(state): State<AppState>,
    ClusterId(id): ClusterId,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(claim): ApiJson<LeaderClaim>,
) -> Result<Json<Leader>, ApiError> {
    if !(1..=MAX_LEASE_SECONDS).contains(&claim.lease_seconds) {
        return Err(ApiError::validation(
            "lease_seconds",
            format!("must be 1 to {MAX_LEASE_SECONDS}"),
        ));
    }
    Ok(Json(
        state
            .store
            .claim_leader(id, claim, &audit_of(&headers, peer))
            .await?,
    ))
}

/// Most orphaned hosts listed.
const ORPHANED_LIMIT: u32 = 1000;

/// Hosts without a heartbeat for longer than `sync.orphan_after_seconds`,
/// longest silent first.
#[utoipa::path(get, path = "/api/v1/hosts/orphaned", tag = "sync",
    responses((status = 200, body = [Host])))]
pub async fn orphaned(State(state): State<AppState>) -> Result<Json<Vec<Host>>, ApiError> {
    Ok(Json(state.store.orphaned_hosts(ORPHANED_LIMIT).await?))
}

/// A host's heartbeat (an orphaned host recovers).
#[utoipa::path(post, path = "/api/v1/hosts/{host_id}/heartbeat", tag = "sync",
    params(("host_id" = Uuid, Path)),
    responses((status = 200, body = Host), (status = 404, description = "HOST_NOT_FOUND")))]
pub async fn heartbeat(
    State(state): State<AppState>,
    PathText(raw): PathText,
) -> Result<Json<Host>, ApiError> {
    Ok(Json(state.store.heartbeat(host_id(&raw)?).await?))
}

/// Place a registered client on a host.
#[utoipa::path(post, path = "/api/v1/hosts/{host_id}/deployments", tag = "sync", request_body = DeploymentCreateRequest,
    params(("host_id" = Uuid, Path)),
    responses((status = 201, body = Deployment), (status = 400, description = "VALIDATION_ERROR"),
              (status = 404, description = "HOST_NOT_FOUND, CLIENT_NOT_FOUND"), (status = 409, description = "DEPLOYMENT_ALREADY_EXISTS")))]
pub async fn create_deployment(
    State(state): State<AppState>,
    PathText(raw): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<DeploymentCreateRequest>,
) -> Result<(StatusCode, Json<Deployment>), ApiError> {
    let host = host_id(&raw)?;
    let client = request.validate()?;
    let deployment = state
        .store
        .create_deployment(
            host,
            client,
            request.container_name,
            request.sync_enabled,
            &audit_of(&headers, peer),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(deployment)))
}

/// A deployment.
#[utoipa::path(get, path = "/api/v1/deployments/{deployment_id}", tag = "sync",
    params(("deployment_id" = Uuid, Path)),
    responses((status = 200, body = Deployment), (status = 404, description = "DEPLOYMENT_NOT_FOUND")))]
pub async fn get_deployment(
    State(state): State<AppState>,
    PathText(raw): PathText,
) -> Result<Json<Deployment>, ApiError> {
    Ok(Json(
        state.store.get_deployment(deployment_id(&raw)?).await?,
    ))
}

/// Remove a deployment with its jobs and conflicts (decommission).
#[utoipa::path(delete, path = "/api/v1/deployments/{deployment_id}", tag = "sync",
    params(("deployment_id" = Uuid, Path)),
    responses((status = 204, description = "removed"), (status = 404, description = "DEPLOYMENT_NOT_FOUND")))]
pub async fn delete_deployment(
    State(state): State<AppState>,
    PathText(raw): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .delete_deployment(deployment_id(&raw)?, &audit_of(&headers, peer))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_sync(
    state: AppState,
    raw: &str,
    enabled: bool,
    peer: crate::extract::Caller,
    headers: HeaderMap,
) -> Result<Json<Deployment>, ApiError> {
    let id = deployment_id(raw)?;
    Ok(Json(
        state
            .store
            .set_sync(id, enabled, &audit_of(&headers, peer))
            .await?,
    ))
}

/// Enable a deployment's sync.
#[utoipa::path(post, path = "/api/v1/deployments/{deployment_id}/enable", tag = "sync",
    params(("deployment_id" = Uuid, Path)),
    responses((status = 200, body = Deployment), (status = 404, description = "DEPLOYMENT_NOT_FOUND")))]
pub async fn enable(
    State(state): State<AppState>,
    PathText(raw): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<Json<Deployment>, ApiError> {
    set_sync(state, &raw, true, peer, headers).await
}

/// Pause a deployment's sync (`last_sync_status` becomes `stopped`).
#[utoipa::path(post, path = "/api/v1/deployments/{deployment_id}/pause", tag = "sync",
    params(("deployment_id" = Uuid, Path)),
    responses((status = 200, body = Deployment), (status = 404, description = "DEPLOYMENT_NOT_FOUND")))]
pub async fn pause(
    State(state): State<AppState>,
    PathText(raw): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<Json<Deployment>, ApiError> {
    set_sync(state, &raw, false, peer, headers).await
}

/// Move a deployment to another host (migrate), keeping its sync setting.
#[utoipa::path(post, path = "/api/v1/deployments/{deployment_id}/move", tag = "sync", request_body = MoveRequest,
    params(("deployment_id" = Uuid, Path)),
    responses((status = 200, body = Deployment), (status = 404, description = "DEPLOYMENT_NOT_FOUND, HOST_NOT_FOUND"),
              (status = 409, description = "DEPLOYMENT_ALREADY_EXISTS (the target host runs a container of that name)")))]
pub async fn move_to(
    State(state): State<AppState>,
    PathText(raw): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<MoveRequest>,
) -> Result<Json<Deployment>, ApiError> {
    let id = deployment_id(&raw)?;
    Ok(Json(
        state
            .store
            .move_deployment(id, request.host_id, &audit_of(&headers, peer))
            .await?,
    ))
}

/// Start a sync job (its host reports the end to `/api/v1/sync-jobs/{job_id}/finish`).
#[utoipa::path(post, path = "/api/v1/deployments/{deployment_id}/sync", tag = "sync", request_body = SyncStartRequest,
    params(("deployment_id" = Uuid, Path)),
    responses((status = 201, body = SyncJob), (status = 400, description = "VALIDATION_ERROR (sync paused)"),
              (status = 404, description = "DEPLOYMENT_NOT_FOUND")))]
pub async fn start_sync(
    State(state): State<AppState>,
    PathText(raw): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<SyncStartRequest>,
) -> Result<(StatusCode, Json<SyncJob>), ApiError> {
    let id = deployment_id(&raw)?;
    let job = state
        .store
        .start_sync(id, request.kind, &audit_of(&headers, peer))
        .await?;
    Ok((StatusCode::CREATED, Json(job)))
}

/// Report how a running sync job ended.
#[utoipa::path(post, path = "/api/v1/sync-jobs/{job_id}/finish", tag = "sync", request_body = SyncJobReport,
    params(("job_id" = Uuid, Path)),
    responses((status = 200, body = SyncJob), (status = 400, description = "VALIDATION_ERROR (already finished)"),
              (status = 404, description = "SYNC_JOB_NOT_FOUND")))]
pub async fn finish_sync(
    State(state): State<AppState>,
    PathText(raw): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(report): ApiJson<SyncJobReport>,
) -> Result<Json<SyncJob>, ApiError> {
    let id = uuid_of(&raw, ErrorCode::SyncJobNotFound, "sync_job")?;
    report.validate()?;
    Ok(Json(
        state
            .store
            .finish_sync(id, report, &audit_of(&headers, peer))
            .await?,
    ))
}

/// Record a conflict a deployment's sync resolved.
#[utoipa::path(post, path = "/api/v1/deployments/{deployment_id}/conflicts", tag = "sync", request_body = ConflictReport,
    params(("deployment_id" = Uuid, Path)),
    responses((status = 201, body = SyncConflict), (status = 400, description = "VALIDATION_ERROR"),
              (status = 404, description = "DEPLOYMENT_NOT_FOUND")))]
pub async fn record_conflict(
    State(state): State<AppState>,
    PathText(raw): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(report): ApiJson<ConflictReport>,
) -> Result<(StatusCode, Json<SyncConflict>), ApiError> {
    let id = deployment_id(&raw)?;
    report.validate()?;
    let conflict = state
        .store
        .record_conflict(id, report, &audit_of(&headers, peer))
        .await?;
    Ok((StatusCode::CREATED, Json(conflict)))
}

/// A deployment's conflict log, newest first.
#[utoipa::path(get, path = "/api/v1/deployments/{deployment_id}/conflicts", tag = "sync",
    params(("deployment_id" = Uuid, Path), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "default 100")),
    responses((status = 200, body = [SyncConflict]), (status = 400, description = "VALIDATION_ERROR"),
              (status = 404, description = "DEPLOYMENT_NOT_FOUND")))]
pub async fn conflicts(
    State(state): State<AppState>,
    PathText(raw): PathText,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<Vec<SyncConflict>>, ApiError> {
    let id = deployment_id(&raw)?;
    let mut limit = 100;
    for (key, value) in pairs {
        match key.as_str() {
            "limit" => limit = crate::query::integer("limit", &value, 1, 1000)?,
            other => {
                return Err(ApiError::validation(
                    other,
                    "unknown query parameter; expected limit",
                ))
            }
        }
    }
    Ok(Json(state.store.list_conflicts(id, limit).await?))
}
