//! `/admin/…`: the simulator's control API (JSON).
//!
//! | method | path | body → answer |
//! |---|---|---|
//! | GET | `/admin/clusters` | → `{items: [ClusterView], total}` |
//! | POST | `/admin/clusters` | `{name, spec?, faults?}` → 201 `ClusterView` (409 if taken) |
//! | POST | `/admin/clusters/bulk` | `{prefix, count, spec?}` → `{added}` (names `prefix-00000`…) |
//! | GET | `/admin/clusters/{name}` | → `ClusterView` |
//! | PUT | `/admin/clusters/{name}/spec` | `ClusterSpec` → `ClusterView` |
//! | PATCH | `/admin/clusters/{name}/faults` | `FaultsPatch` → `ClusterView` |
//! | DELETE | `/admin/clusters/{name}` | → 204 |
//! | GET | `/admin/requests?after=&cluster=&limit=` | → `RequestPage` (limit ≤ 10000, default 1000) |
//! | DELETE | `/admin/requests` | → 204 |

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

/// The admin routes, to be nested at `/admin`.
pub fn router() -> Router<Sim> {
    Router::new()
        .route("/clusters", get(list).post(create))
        .route("/clusters/bulk", post(create_many))
        .route("/clusters/{name}", get(get_one).delete(delete))
        .route("/clusters/{name}/spec", put(set_spec))
        .route("/clusters/{name}/faults", patch(patch_faults))
        .route("/requests", get(requests).delete(clear_requests))
}

fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, Error> {
    body.map(|Json(value)| value)
        .map_err(|e| Error::InvalidRequest {
            reason: e.body_text(),
        })
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
    let view = sim.create(&request.name, request.spec, request.faults)?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn create_many(
    State(sim): State<Sim>,
    request: Result<Json<CreateMany>, JsonRejection>,
) -> Result<Json<serde_json::Value>, Error> {
    let request = body(request)?;
    let added = match request.spec {
        Some(spec) => sim.create_many(&request.prefix, request.count, |_| spec.clone())?,
        None => sim.create_many(&request.prefix, request.count, ClusterSpec::sample)?,
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

async fn patch_faults(
    State(sim): State<Sim>,
    Path(name): Path<String>,
    request: Result<Json<FaultsPatch>, JsonRejection>,
) -> Result<Json<ClusterView>, Error> {
    sim.patch_faults(&name, &body(request)?).map(Json)
}

async fn requests(State(sim): State<Sim>, Query(query): Query<RequestsQuery>) -> Json<RequestPage> {
    let limit = query.limit.unwrap_or(1000).min(10_000);
    Json(sim.requests(query.after, query.cluster.as_deref(), limit))
}

async fn clear_requests(State(sim): State<Sim>) -> StatusCode {
    sim.clear_requests();
    StatusCode::NO_CONTENT
}
