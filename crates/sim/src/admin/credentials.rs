//! Credential routes of the admin API: authentication settings, accepted tokens,
//! client certificates, the CA, kubeconfigs, raw Secrets and the clock.

use super::body;
use crate::auth::{AddToken, AuthSpec, ClientCertView, TokenView};
use crate::clock::ClockView;
use crate::credentials::{IssueClientCert, IssuedClientCert};
use crate::error::Error;
use crate::kubeconfig::KubeconfigAuth;
use crate::secrets::SecretRecord;
use crate::state::{ClusterView, Sim};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// Answer of the listing routes: `{items: [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Items<T> {
    /// The entries.
    pub items: Vec<T>,
}

/// Query of `GET /admin/clusters/{name}/kubeconfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeconfigQuery {
    /// User name in the kubeconfig, the token's subject or the certificate's CN;
    /// `fleetreg` when absent.
    pub user: Option<String>,
    /// Which credential to put in; a new token when absent.
    pub auth: Option<KubeconfigAuth>,
}

/// Body of `POST /admin/clock/advance`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvanceClock {
    /// Seconds to move the simulator's clock (negative moves it back).
    pub seconds: i64,
}

/// The credential routes, to be nested at `/admin`.
pub(super) fn router() -> Router<Sim> {
    Router::new()
        .route("/clusters/{name}/auth", put(set_auth))
        .route("/clusters/{name}/tokens", get(tokens).post(add_token))
        .route("/clusters/{name}/tokens/{token}", delete(revoke_token))
        .route(
            "/clusters/{name}/client-certs",
            get(client_certs).post(issue_client_cert),
        )
        .route(
            "/clusters/{name}/client-certs/{serial}",
            delete(revoke_client_cert),
        )
        .route("/clusters/{name}/secrets", get(secrets))
        .route("/clusters/{name}/kubeconfig", get(kubeconfig))
        .route("/ca.pem", get(ca_pem))
        .route("/clock", get(clock))
        .route("/clock/advance", post(advance_clock))
}

async fn set_auth(
    State(sim): State<Sim>,
    Path(name): Path<String>,
    request: Result<Json<AuthSpec>, JsonRejection>,
) -> Result<Json<ClusterView>, Error> {
    sim.set_auth(&name, body(request)?).map(Json)
}

async fn tokens(
    State(sim): State<Sim>,
    Path(name): Path<String>,
) -> Result<Json<Items<TokenView>>, Error> {
    let items = sim.tokens(&name)?;
    Ok(Json(Items { items }))
}

async fn add_token(
    State(sim): State<Sim>,
    Path(name): Path<String>,
    request: Result<Json<AddToken>, JsonRejection>,
) -> Result<(StatusCode, Json<TokenView>), Error> {
    let view = sim.add_token(&name, body(request)?)?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn revoke_token(
    State(sim): State<Sim>,
    Path((name, token)): Path<(String, String)>,
) -> Result<StatusCode, Error> {
    sim.revoke_token(&name, &token)
        .map(|()| StatusCode::NO_CONTENT)
}

async fn client_certs(
    State(sim): State<Sim>,
    Path(name): Path<String>,
) -> Result<Json<Items<ClientCertView>>, Error> {
    let items = sim.client_certs(&name)?;
    Ok(Json(Items { items }))
}

async fn issue_client_cert(
    State(sim): State<Sim>,
    Path(name): Path<String>,
    request: Result<Json<IssueClientCert>, JsonRejection>,
) -> Result<(StatusCode, Json<IssuedClientCert>), Error> {
    let issued = sim.issue_client_cert(&name, &body(request)?)?;
    Ok((StatusCode::CREATED, Json(issued)))
}

async fn revoke_client_cert(
    State(sim): State<Sim>,
    Path((name, serial)): Path<(String, String)>,
) -> Result<StatusCode, Error> {
    sim.revoke_client_cert(&name, &serial)
        .map(|()| StatusCode::NO_CONTENT)
}

async fn secrets(
    State(sim): State<Sim>,
    Path(name): Path<String>,
) -> Result<Json<Items<SecretRecord>>, Error> {
    let items = sim.secrets(&name)?;
    Ok(Json(Items { items }))
}

async fn kubeconfig(
    State(sim): State<Sim>,
    Path(name): Path<String>,
    query: Result<Query<KubeconfigQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, Error> {
    let Query(query) = query.map_err(|e| Error::InvalidRequest {
        reason: e.body_text(),
    })?;
    let user = query.user.as_deref().unwrap_or("fleetreg");
    let yaml = sim.kubeconfig(&name, user, query.auth.unwrap_or_default())?;
    Ok(([(header::CONTENT_TYPE, "application/yaml")], yaml))
}

async fn ca_pem(State(sim): State<Sim>) -> Result<impl IntoResponse, Error> {
    let pem = sim.ca_pem().ok_or(Error::TlsDisabled)?.to_owned();
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], pem))
}

async fn clock(State(sim): State<Sim>) -> Json<ClockView> {
    Json(sim.clock())
}

async fn advance_clock(
    State(sim): State<Sim>,
    request: Result<Json<AdvanceClock>, JsonRejection>,
) -> Result<Json<ClockView>, Error> {
    Ok(Json(sim.advance_clock(body(request)?.seconds)))
}
