//! `POST /api/v1/services/sync`: read the Services one cluster (or every
//! registered cluster) exposes with `fleetreg.io/expose: "true"` and bring
//! them into the service registry now, as the periodic job does
//! (`edge.service_sync_seconds`; [`crate::service_discovery`]).

use super::audit_of;
use crate::error::ApiError;
use crate::extract::{OptionalJson, Peer};
use crate::service_discovery::{ClusterOutcome, ClusterServiceSync, ServiceSync, ServiceSyncError};
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use fleetreg_model::{ClusterName, ErrorCode, ServiceSyncReport};
use fleetreg_store::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The service sync route.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/services/sync", post(sync))
}

/// `POST /api/v1/services/sync` (the body may be left out).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSyncRequest {
    /// Sync only this cluster (by name); every registered cluster when absent.
    #[serde(default)]
    pub cluster: Option<String>,
}

/// What a service sync did, per cluster.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceSyncAnswer {
    /// One entry per cluster synced, by cluster name.
    pub clusters: Vec<ClusterSyncResult>,
}

/// One cluster's service sync: a `report` (with the `problems` of the
/// annotated Services not taken), or an `error` when the cluster could not
/// be read (its services were then left as they were).
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterSyncResult {
    /// The cluster's name.
    pub cluster: String,
    /// What changed in the registry, when the cluster was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<ServiceSyncReport>,
    /// Annotated Services that were not taken (bad annotations, an upstream
    /// at a forbidden address, a registry name claimed twice), when the
    /// cluster was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<ServiceProblemView>>,
    /// Why the cluster could not be synced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ClusterSyncError>,
}

/// An annotated Service that was not taken.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceProblemView {
    /// `namespace/name` of the Kubernetes Service (escaped cluster text).
    pub service: String,
    /// Why, naming the annotation or field at fault (escaped cluster text).
    pub reason: String,
}

/// Why one cluster could not be synced.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterSyncError {
    /// `DISCOVERY_FAILED` when its Services could not be listed (unreachable,
    /// refused, an answer over the size limit, …); `CLUSTER_NOT_FOUND` when it
    /// was deleted meanwhile.
    pub code: ErrorCode,
    /// What went wrong (never a credential).
    pub message: String,
}

/// Sync the Services annotated `fleetreg.io/expose: "true"` of one cluster
/// (`{"cluster": NAME}`) or of every registered cluster (no body, or `{}`)
/// into the service registry: new ones registered (origin `cluster`),
/// changed ones updated, ones gone from the cluster marked `gone`, manual
/// services of the same name left alone. Each cluster is read with its
/// stored credentials, within its type's check timeout; one that cannot be
/// read is reported with an `error` and its services are left as they were.
#[utoipa::path(post, path = "/api/v1/services/sync", tag = "edge",
    request_body(content = ServiceSyncRequest, description = "Optional; every cluster when absent."),
    responses((status = 200, body = ServiceSyncAnswer),
              (status = 404, description = "CLUSTER_NOT_FOUND")))]
pub async fn sync(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    OptionalJson(request): OptionalJson<ServiceSyncRequest>,
) -> Result<Json<ServiceSyncAnswer>, ApiError> {
    let audit = audit_of(&headers, peer);
    let syncer = ServiceSync::new(state.store.clone(), state.health.clone());
    let outcomes = match &request.cluster {
        Some(name) => {
            let cluster = match ClusterName::parse(name) {
                Ok(valid) => state.store.find_cluster_by_name(valid.as_str()).await?,
                Err(_) => None,
            };
            let Some(cluster) = cluster else {
                let shown: String = name.chars().take(128).collect();
                return Err(ApiError::cluster_not_found(&shown));
            };
            let result = syncer.sync_cluster(&cluster, &audit).await;
            vec![ClusterOutcome { cluster, result }]
        }
        None => syncer.sync_all(&audit).await?,
    };
    let clusters = outcomes
        .into_iter()
        .map(result_of)
        .collect::<Result<_, _>>()?;
    Ok(Json(ServiceSyncAnswer { clusters }))
}

/// One cluster's entry; a store failure other than the cluster having gone
/// fails the whole request.
fn result_of(outcome: ClusterOutcome) -> Result<ClusterSyncResult, ApiError> {
    let cluster = outcome.cluster.name.to_string();
    let failed = |code: ErrorCode, message: String| ClusterSyncResult {
        cluster: cluster.clone(),
        report: None,
        problems: None,
        error: Some(ClusterSyncError { code, message }),
    };
    Ok(match outcome.result {
        Ok(ClusterServiceSync { report, problems }) => ClusterSyncResult {
            cluster: cluster.clone(),
            report: Some(report),
            problems: Some(
                problems
                    .into_iter()
                    .map(|p| ServiceProblemView {
                        service: p.service,
                        reason: p.reason,
                    })
                    .collect(),
            ),
            error: None,
        },
        Err(error @ ServiceSyncError::Probe(_)) => {
            failed(ErrorCode::DiscoveryFailed, error.to_string())
        }
        Err(ServiceSyncError::Store(StoreError::NotFound(_))) => failed(
            ErrorCode::ClusterNotFound,
            format!("cluster {cluster} was deleted during the sync"),
        ),
        Err(ServiceSyncError::Store(error)) => return Err(error.into()),
    })
}
