//! Cluster routes of the admin API: create, list, read, change spec and faults,
//! delete; the request log.

use super::body;
use crate::auth::AuthSpec;
use crate::error::Error;
use crate::log::RequestPage;
use crate::spec::{ClusterSpec, Faults, FaultsPatch};
use crate::state::{ClusterView, Sim};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, patch, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Body of `POST /admin/clusters`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCluster {
    /// Name (a DNS label).
    pub name: String,
    /// Contents; the default spec when absent.
    #[serde(default)]
    pub spec: ClusterSpec,
    /// Initial faults; none when absent.
    #[serde(default)]
    pub faults: Faults,
    /// Authentication settings; none required when absent.
    #[serde(default)]
    pub auth: AuthSpec,
}

/// Body of `POST /admin/clusters/bulk`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateMany {
    /// Name prefix; clusters are `{prefix}-00000` … .
    pub prefix: String,
    /// How many.
    pub count: usize,
    /// One spec for all; absent means the mixed fleet of [`ClusterSpec::sample`].
    #[serde(default)]
    pub spec: Option<ClusterSpec>,
    /// Authentication settings of each; none required when absent.
    #[serde(default)]
    pub auth: AuthSpec,
}

/// Answer of `GET /admin/clusters`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterList {
    /// Every cluster, by name.
    pub items: Vec<ClusterView>,
    /// How many.
    pub total: usize,
}

#[derive(Debug, Deserialize)]
struct RequestsQuery {
    #[serde(default)]
    after: u64,
    cluster: Option<String>,
    limit: Option<usize>,
}

/// The cluster routes, to be nested at `/admin`.
pub(super) fn router() -> Router<Sim> {
    Router::new()
        .route("/clusters", get(list).post(create))
        .route("/clusters/bulk", post(create_many))
        .route("/clusters/{name}", get(get_one).delete(delete))
        .route("/clusters/{name}/spec", put(set_spec))
        .route("/clusters/{name}/faults", patch(patch_faults))
        .route("/requests", get(requests).delete(clear_requests))
}

async fn list(State(sim): State<Sim>) -> Json<ClusterList> {
    let items = sim.list();
    Json(ClusterList {
        total: items.len(),
        items,
    })
}

async fn create(
    State(sim): State<Sim>,
    request: Result<Json<CreateCluster>, JsonRejection>,
) -> Result<(StatusCode, Json<ClusterView>), Error> {
    let request = body(request)?;
    let view = sim.create_with_auth(&request.name, request.spec, request.faults, request.auth)?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn create_many(
    State(sim): State<Sim>,
    request: Result<Json<CreateMany>, JsonRejection>,
) -> Result<Json<serde_json::Value>, Error> {
    let request = body(request)?;
    let (prefix, count, auth) = (&request.prefix, request.count, &request.auth);
    let added = match request.spec {
        Some(spec) => sim.create_many_with_auth(prefix, count, |_| spec.clone(), auth)?,
        None => sim.create_many_with_auth(prefix, count, ClusterSpec::sample, auth)?,
    };
    Ok(Json(serde_json::json!({ "added": added })))
}

async fn get_one(
    State(sim): State<Sim>,
    Path(name): Path<String>,
) -> Result<Json<ClusterView>, Error> {
    sim.get(&name).map(Json)
}

async fn delete(State(sim): State<Sim>, Path(name): Path<String>) -> Result<StatusCode, Error> {
    sim.delete(&name).map(|()| StatusCode::NO_CONTENT)
}

async fn set_spec(
    State(sim): State<Sim>,
    Path(name): Path<String>,
    request: Result<Json<ClusterSpec>, JsonRejection>,
) -> Result<Json<ClusterView>, Error> {
    sim.set_spec(&name, body(request)?).map(Json)
}

/// A [`FaultsPatch`] plus `token_request_fail`, `token_request_max_seconds`,
/// `huge_body_bytes` and `raw_body`, which are not among its fields.
async fn patch_faults(
    State(sim): State<Sim>,
    Path(name): Path<String>,
    request: Result<Json<Value>, JsonRejection>,
) -> Result<Json<ClusterView>, Error> {
    let mut request = body(request)?;
    let invalid = |e: serde_json::Error| Error::InvalidRequest {
        reason: e.to_string(),
    };
    let (token_request_fail, token_request_max) = match request.as_object_mut() {
        Some(map) => (
            map.remove("token_request_fail"),
            map.remove("token_request_max_seconds"),
        ),
        None => (None, None),
    };
    let (huge_body, raw_body) = match request.as_object_mut() {
        Some(map) => (map.remove("huge_body_bytes"), map.remove("raw_body")),
        None => (None, None),
    };
    let huge_body: Option<u64> = huge_body
        .map(serde_json::from_value)
        .transpose()
        .map_err(invalid)?;
    let raw_body: Option<Option<String>> = raw_body
        .map(serde_json::from_value)
        .transpose()
        .map_err(invalid)?;
    let token_request_max: Option<Option<i64>> = token_request_max
        .map(serde_json::from_value)
        .transpose()
        .map_err(invalid)?;
    let token_request_fail: Option<bool> = token_request_fail
        .map(serde_json::from_value)
        .transpose()
        .map_err(invalid)?;
    let patch: FaultsPatch = serde_json::from_value(request).map_err(invalid)?;
    sim.get(&name)?;
    if let Some(fail) = token_request_fail {
        sim.set_token_request_fault(&name, fail)?;
    }
    if let Some(max) = token_request_max {
        sim.set_token_request_max_seconds(&name, max)?;
    }
    if let Some(bytes) = huge_body {
        sim.edit_faults(&name, |faults| faults.huge_body_bytes = bytes)?;
    }
    if let Some(text) = raw_body {
        sim.edit_faults(&name, |faults| faults.raw_body = text)?;
    }
    sim.patch_faults(&name, &patch).map(Json)
}

async fn requests(State(sim): State<Sim>, Query(query): Query<RequestsQuery>) -> Json<RequestPage> {
    let limit = query.limit.unwrap_or(1000).min(10_000);
    Json(sim.requests(query.after, query.cluster.as_deref(), limit))
}

async fn clear_requests(State(sim): State<Sim>) -> StatusCode {
    sim.clear_requests();
    StatusCode::NO_CONTENT
}
