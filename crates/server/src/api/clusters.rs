//! `/api/v1/clusters`: register, read, list, update, delete, status, health
//! history, refresh.

use super::{audit_of, IfMatch, REVISION_HEADER};
use crate::error::ApiError;
use crate::extract::{ApiJson, ClusterId, ClusterNameParam, Peer, QueryPairs};
use crate::health::{check_and_record, discover_and_record, CredentialsLookup, DiscoverError};
use crate::state::AppState;
use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fleetreg_model::{
    Cluster, ClusterCreateRequest, ClusterFilter, ClusterStatusDetail, ClusterUpdateRequest,
    DeregistrationPreview, ErrorCode, HealthSample,
};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// The cluster routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/clusters", get(list).post(create))
        .route("/api/v1/clusters/by-name/{name}", get(get_by_name))
        .route(
            "/api/v1/clusters/{id}",
            get(get_one).put(update).delete(delete),
        )
        .route("/api/v1/clusters/{id}/status", get(status))
        .route("/api/v1/clusters/{id}/health/history", get(history))
        .route("/api/v1/clusters/{id}/refresh", post(refresh))
}

/// A page of clusters (seed 4.2).
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterPage {
    /// The clusters, sorted by name.
    pub items: Vec<Cluster>,
    /// Clusters matching the filter in all.
    pub total: u64,
    /// This page, 1-based.
    pub page: u32,
    /// Items per page.
    pub page_size: u32,
    /// Pages in all.
    pub total_pages: u64,
}

fn with_etag(status: StatusCode, cluster: Cluster) -> Response {
    super::with_etag(status, cluster.revision, cluster)
}

/// Register a new cluster.
#[utoipa::path(post, path = "/api/v1/clusters", tag = "clusters", request_body = ClusterCreateRequest,
    responses((status = 201, body = Cluster, headers(("ETag" = String, description = "The cluster's revision, for `If-Match`"),
                                                     ("Location" = String, description = "The new cluster's URL"))), (status = 400, description = "INVALID_CLUSTER_NAME, VALIDATION_ERROR, MALFORMED_JSON"),
              (status = 409, description = "CLUSTER_ALREADY_EXISTS")))]
pub async fn create(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ClusterCreateRequest>,
) -> Result<Response, ApiError> {
    let new = request.validate()?;
    let cluster = state
        .store
        .insert_cluster(new, &audit_of(&headers, peer))
        .await?;
    // With the health scheduler running, it discovers the cluster after its
    // first check that reaches the API server (health/scheduler.rs): an
    // unreachable cluster is not discovered in vain.
    if state.health.discovery.on_registration && !state.health.config.enabled {
        discover_in_background(&state, cluster.clone());
    }
    let location = HeaderValue::from_str(&format!("/api/v1/clusters/{}", cluster.id)).ok();
    let mut response = with_etag(StatusCode::CREATED, cluster);
    if let Some(location) = location {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// List clusters with filters (seed 4.3), sorted by name.
#[utoipa::path(get, path = "/api/v1/clusters", tag = "clusters",
    params(("name" = Option<String>, Query, description = "partial name"), ("cluster_type" = Option<String>, Query),
           ("environment" = Option<String>, Query), ("region" = Option<String>, Query), ("state" = Option<String>, Query),
           ("has_gpu" = Option<bool>, Query), ("has_cnf" = Option<bool>, Query),
           ("label" = Option<Vec<String>>, Query, style = Form, explode, description = "key=value; repeat to AND (at most 16)"),
           ("page" = Option<u32>, Query), ("page_size" = Option<u32>, Query, description = "default 20, max 100")),
    responses((status = 200, body = ClusterPage, headers(("X-Fleetreg-Revision" = i64, description = "The revision the list was read at; stream events after it"))),
              (status = 400, description = "VALIDATION_ERROR")))]
pub async fn list(
    State(state): State<AppState>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Response, ApiError> {
    let (filter, page) = ClusterFilter::from_query(pairs)?;
    let list = state.store.list_clusters(&filter, page).await?;
    let body = ClusterPage {
        total_pages: page.total_pages(list.total),
        items: list.items,
        total: list.total,
        page: page.page,
        page_size: page.page_size,
    };
    let mut response = Json(body).into_response();
    if let Ok(value) = HeaderValue::from_str(&list.revision.to_string()) {
        response.headers_mut().insert(REVISION_HEADER, value);
    }
    Ok(response)
}

/// Get a cluster by id.
#[utoipa::path(get, path = "/api/v1/clusters/{id}", tag = "clusters",
    params(crate::openapi::ClusterPath),
    responses((status = 200, body = Cluster, headers(("ETag" = String, description = "The cluster's revision, for `If-Match`"))), (status = 404, description = "CLUSTER_NOT_FOUND")))]
pub async fn get_one(
    State(state): State<AppState>,
    ClusterId(id): ClusterId,
) -> Result<Response, ApiError> {
    Ok(with_etag(
        StatusCode::OK,
        state.store.get_cluster(id).await?,
    ))
}

/// Get a cluster by name.
#[utoipa::path(get, path = "/api/v1/clusters/by-name/{name}", tag = "clusters",
    params(crate::openapi::ClusterNamePath),
    responses((status = 200, body = Cluster, headers(("ETag" = String, description = "The cluster's revision, for `If-Match`"))), (status = 404, description = "CLUSTER_NOT_FOUND")))]
pub async fn get_by_name(
    State(state): State<AppState>,
    ClusterNameParam(name): ClusterNameParam,
) -> Result<Response, ApiError> {
    // A string that is not a valid name cannot name a cluster: no query needed.
    if fleetreg_model::ClusterName::parse(&name).is_err() {
        return Err(ApiError::cluster_not_found(&name));
    }
    match state.store.find_cluster_by_name(&name).await? {
        Some(cluster) => Ok(with_etag(StatusCode::OK, cluster)),
        None => Err(ApiError::cluster_not_found(&name)),
    }
}

/// Update a cluster (seed `ClusterUpdateRequest`); honours `If-Match`.
#[utoipa::path(put, path = "/api/v1/clusters/{id}", tag = "clusters", request_body = ClusterUpdateRequest,
    params(crate::openapi::ClusterPath, ("If-Match" = Option<String>, Header, description = "ETags (`\"revision\"`) of which one must be current; `*` or absent: any")),
    responses((status = 200, body = Cluster, headers(("ETag" = String, description = "The cluster's new revision"))), (status = 400, description = "VALIDATION_ERROR"),
              (status = 404, description = "CLUSTER_NOT_FOUND"), (status = 412, description = "PRECONDITION_FAILED")))]
pub async fn update(
    State(state): State<AppState>,
    ClusterId(id): ClusterId,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ClusterUpdateRequest>,
) -> Result<Response, ApiError> {
    let patch = request.validate()?;
    let expected = IfMatch::from_headers(&headers)?
        .required_revision(current_revision(&state, id))
        .await?;
    let cluster = state
        .store
        .update_cluster(id, expected, patch, &audit_of(&headers, peer))
        .await?;
    Ok(with_etag(StatusCode::OK, cluster))
}

/// The cluster's revision now, for an `If-Match` that lists several.
async fn current_revision(state: &AppState, id: uuid::Uuid) -> Result<i64, ApiError> {
    Ok(state.store.get_cluster(id).await?.revision)
}

/// Deregister a cluster; honours `If-Match`. Refused with
/// `CLUSTER_HAS_SYNC_CLIENTS` while deployments on its hosts sync (details
/// list them and the remediations). `dry_run=true` answers the preview of
/// what the deletion removes with it (hosts, deployments, sync jobs,
/// conflicts, leader records); when that is anything, the deletion needs
/// `confirm=true` (else `CONFIRMATION_REQUIRED` with the preview). The check
/// and the deletion are one transaction.
#[utoipa::path(delete, path = "/api/v1/clusters/{id}", tag = "clusters",
    params(crate::openapi::ClusterPath, ("If-Match" = Option<String>, Header, description = "ETags (`\"revision\"`) of which one must be current; `*` or absent: any"),
           ("dry_run" = Option<bool>, Query, description = "only preview what would be removed"),
           ("confirm" = Option<bool>, Query, description = "remove the hosts and deployments the preview lists too")),
    responses((status = 204, description = "deleted"), (status = 200, body = DeregistrationPreview, description = "the preview (dry_run=true)"),
              (status = 400, description = "VALIDATION_ERROR"), (status = 404, description = "CLUSTER_NOT_FOUND"),
              (status = 409, description = "CLUSTER_HAS_SYNC_CLIENTS, CONFIRMATION_REQUIRED"),
              (status = 412, description = "PRECONDITION_FAILED")))]
pub async fn delete(
    State(state): State<AppState>,
    ClusterId(id): ClusterId,
    Peer(peer): Peer,
    headers: HeaderMap,
    QueryPairs(pairs): QueryPairs,
) -> Result<Response, ApiError> {
    let (mut dry_run, mut confirm) = (false, false);
    for (key, value) in pairs {
        match key.as_str() {
            "dry_run" => dry_run = crate::query::boolean("dry_run", &value)?,
            "confirm" => confirm = crate::query::boolean("confirm", &value)?,
            other => {
                return Err(ApiError::validation(
                    other,
                    "unknown query parameter; expected dry_run or confirm",
                ))
            }
        }
    }
    let expected = IfMatch::from_headers(&headers)?
        .required_revision(current_revision(&state, id))
        .await?;
    let outcome = state
        .store
        .deregister_cluster(id, expected, confirm, dry_run, &audit_of(&headers, peer))
        .await?;
    if dry_run {
        return Ok(Json(outcome).into_response());
    }
    // The credentials row went with the cluster; a Secret on the hub does not.
    state.health.credentials.forget(id).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The cluster's status as of the last check, with its `credentials` summary
/// (expiry judged now against `credentials.rotation_warning_days`).
#[utoipa::path(get, path = "/api/v1/clusters/{id}/status", tag = "clusters",
    params(crate::openapi::ClusterPath),
    responses((status = 200, body = ClusterStatusDetail), (status = 404, description = "CLUSTER_NOT_FOUND")))]
pub async fn status(
    State(state): State<AppState>,
    ClusterId(id): ClusterId,
) -> Result<Json<ClusterStatusDetail>, ApiError> {
    let status = state.store.get_cluster(id).await?.status;
    let credentials = state.health.credentials.summary(id).await?;
    Ok(Json(ClusterStatusDetail {
        status,
        credentials,
    }))
}

/// Default number of health history samples returned.
pub const DEFAULT_HISTORY_LIMIT: u32 = 100;
/// Most health history samples returned at once.
pub const MAX_HISTORY_LIMIT: u32 = 1000;

/// The cluster's health history, newest first: every state change plus one
/// sample per sampling period, kept for the history retention period.
#[utoipa::path(get, path = "/api/v1/clusters/{id}/health/history", tag = "clusters",
    params(crate::openapi::ClusterPath, ("since" = Option<chrono::DateTime<chrono::Utc>>, Query, description = "RFC 3339; only samples checked at or after it"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "default 100")),
    responses((status = 200, body = [HealthSample]), (status = 400, description = "VALIDATION_ERROR"),
              (status = 404, description = "CLUSTER_NOT_FOUND")))]
pub async fn history(
    State(state): State<AppState>,
    ClusterId(id): ClusterId,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<Vec<HealthSample>>, ApiError> {
    let mut since = None;
    let mut limit = DEFAULT_HISTORY_LIMIT;
    for (key, value) in pairs {
        match key.as_str() {
            "since" => since = Some(crate::query::timestamp("since", &value)?),
            "limit" => limit = crate::query::integer("limit", &value, 1, MAX_HISTORY_LIMIT)?,
            other => {
                return Err(ApiError::validation(other, "unknown query parameter"));
            }
        }
    }
    Ok(Json(
        state.store.list_health_history(id, since, limit).await?,
    ))
}

/// Discovery after a registration (`discovery.on_registration`) when health
/// checks are off: runs after the 201 is sent (cancelled when the server
/// stops); a failure is only logged (the cluster stays registered).
fn discover_in_background(state: &AppState, cluster: Cluster) {
    let (store, health) = (state.store.clone(), state.health.clone());
    state.health.background.spawn(async move {
        match discover_and_record(store.as_ref(), &health, &cluster).await {
            Ok(_) => {}
            Err(DiscoverError::Store(fleetreg_store::StoreError::NotFound(_))) => {}
            Err(error) => {
                tracing::warn!(cluster = %cluster.id, %error, "discovery on registration failed");
            }
        }
    });
}

/// Check the cluster and discover its capabilities now; returns the updated cluster.
///
/// The status is recorded first (a state change is a `CLUSTER_STATUS_CHANGED`
/// event); when the API server is unreachable the answer is 503
/// `CLUSTER_UNREACHABLE` with the cause in `details`; when discovery fails, 500
/// `DISCOVERY_FAILED` with the cause. Discovered capabilities are stored (a
/// `CLUSTER_CAPABILITIES_CHANGED` event only when they changed).
#[utoipa::path(post, path = "/api/v1/clusters/{id}/refresh", tag = "clusters",
    params(crate::openapi::ClusterPath),
    responses((status = 200, body = Cluster, headers(("ETag" = String, description = "The cluster's revision, for `If-Match`"))), (status = 404, description = "CLUSTER_NOT_FOUND"),
              (status = 500, description = "DISCOVERY_FAILED"), (status = 503, description = "CLUSTER_UNREACHABLE")))]
pub async fn refresh(
    State(state): State<AppState>,
    ClusterId(id): ClusterId,
) -> Result<Response, ApiError> {
    let cluster = state.store.get_cluster(id).await?;
    let outcome = check_and_record(
        state.store.as_ref(),
        &state.health,
        &cluster,
        CredentialsLookup::Read,
    )
    .await?;
    if !outcome.report.results.api_server {
        let cause = outcome.api_server_cause().unwrap_or("unreachable");
        return Err(ApiError::new(
            ErrorCode::ClusterUnreachable,
            format!("the API server of cluster {} is unreachable", cluster.name),
        )
        .with_details(json!({
            "cluster": id.to_string(),
            "api_server_url": cluster.api_server_url,
            "cause": cause,
            "status": outcome.status,
        })));
    }
    match discover_and_record(state.store.as_ref(), &state.health, &cluster).await {
        Ok(_) => {}
        Err(DiscoverError::Store(error)) => return Err(error.into()),
        Err(DiscoverError::Probe(error)) => {
            return Err(ApiError::new(
                ErrorCode::DiscoveryFailed,
                format!("discovery of cluster {} failed", cluster.name),
            )
            .with_details(json!({ "cluster": id.to_string(), "cause": error.to_string() })));
        }
    }
    Ok(with_etag(
        StatusCode::OK,
        state.store.get_cluster(id).await?,
    ))
}
