//! Service routes of the admin API: the Kubernetes `Service`s a cluster
//! declares ([`ClusterSpec::services`](crate::ClusterSpec::services)), added,
//! replaced and removed at run time.

use super::body;
use super::credentials::Items;
use crate::error::Error;
use crate::spec::ServiceSpec;
use crate::state::Sim;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};

/// The service routes, to be nested at `/admin`.
pub(super) fn router() -> Router<Sim> {
    Router::new()
        .route("/clusters/{name}/services", get(list))
        .route(
            "/clusters/{name}/services/{namespace}/{service}",
            put(put_service).delete(delete_service),
        )
}

async fn list(
    State(sim): State<Sim>,
    Path(name): Path<String>,
) -> Result<Json<Items<ServiceSpec>>, Error> {
    let items = sim.services(&name)?;
    Ok(Json(Items { items }))
}

/// A [`ServiceSpec`] whose `namespace` and `name` may be left out (the path
/// names them; when given they must match).
async fn put_service(
    State(sim): State<Sim>,
    Path((name, namespace, service)): Path<(String, String, String)>,
    request: Result<Json<ServiceSpec>, JsonRejection>,
) -> Result<(StatusCode, Json<ServiceSpec>), Error> {
    let mut spec = body(request)?;
    for (what, given, path) in [
        ("namespace", &mut spec.namespace, &namespace),
        ("name", &mut spec.name, &service),
    ] {
        if given.is_empty() {
            given.clone_from(path);
        } else if given != path {
            return Err(Error::InvalidRequest {
                reason: format!("the body's {what} {given:?} is not the path's {path:?}"),
            });
        }
    }
    let created = sim.put_service(&name, spec.clone())?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(spec)))
}

async fn delete_service(
    State(sim): State<Sim>,
    Path((name, namespace, service)): Path<(String, String, String)>,
) -> Result<StatusCode, Error> {
    sim.delete_service(&name, &namespace, &service)
        .map(|()| StatusCode::NO_CONTENT)
}
