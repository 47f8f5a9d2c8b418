//! `/admin/…`: the simulator's control API (JSON unless noted).
//!
//! | method | path | body → answer |
//! |---|---|---|
//! | GET | `/admin/clusters` | → `{items: [ClusterView], total}` |
//! | POST | `/admin/clusters` | `{name, spec?, faults?, auth?}` → 201 `ClusterView` (409 if taken) |
//! | POST | `/admin/clusters/bulk` | `{prefix, count, spec?, auth?}` → `{added}` (names `prefix-00000`…) |
//! | GET | `/admin/clusters/{name}` | → `ClusterView` |
//! | PUT | `/admin/clusters/{name}/spec` | `ClusterSpec` → `ClusterView` |
//! | PATCH | `/admin/clusters/{name}/faults` | `FaultsPatch` (+ `token_request_fail`, `token_request_max_seconds`) → `ClusterView` |
//! | PUT | `/admin/clusters/{name}/auth` | `AuthSpec` → `ClusterView` (run-time credentials stay) |
//! | DELETE | `/admin/clusters/{name}` | → 204 |
//! | GET | `/admin/clusters/{name}/services` | → `{items: [ServiceSpec]}` (the declared services) |
//! | PUT | `/admin/clusters/{name}/services/{ns}/{svc}` | `ServiceSpec` (`namespace`/`name` optional) → 201 new, 200 replaced |
//! | DELETE | `/admin/clusters/{name}/services/{ns}/{svc}` | → 204 (404 when not declared) |
//! | GET | `/admin/clusters/{name}/tokens` | → `{items: [TokenView]}` (spec tokens, then run-time ones) |
//! | POST | `/admin/clusters/{name}/tokens` | `AddToken {token?, subject?, expires_at?, expires_in_seconds?}` → 201 `TokenView` |
//! | DELETE | `/admin/clusters/{name}/tokens/{token}` | → 204 (404 unknown; 400 for a spec token) |
//! | GET | `/admin/clusters/{name}/client-certs` | → `{items: [ClientCertView]}` |
//! | POST | `/admin/clusters/{name}/client-certs` | `{user, not_after?}` → 201 `IssuedClientCert` (409 without TLS) |
//! | DELETE | `/admin/clusters/{name}/client-certs/{serial}` | → 204 |
//! | GET | `/admin/clusters/{name}/secrets` | → `{items: [SecretRecord]}` (stored objects, data decoded) |
//! | GET | `/admin/clusters/{name}/kubeconfig?user=&auth=token\|cert\|none` | → YAML with a new credential |
//! | GET | `/admin/ca.pem` | → PEM of the simulator's CA (409 without TLS) |
//! | GET | `/admin/clock` | → `ClockView {now, offset_seconds}` |
//! | POST | `/admin/clock/advance` | `{seconds}` → `ClockView` |
//! | GET | `/admin/requests?after=&cluster=&limit=` | → `RequestPage` (limit ≤ 10000, default 1000) |
//! | DELETE | `/admin/requests` | → 204 |
//!
//! Errors are `{error: {code, message}}` with 400, 404, 409 or 500.

mod clusters;
mod credentials;
mod services;

pub use clusters::{ClusterList, CreateCluster, CreateMany};
pub use credentials::{AdvanceClock, Items, KubeconfigQuery};

use crate::error::Error;
use crate::state::Sim;
use axum::extract::rejection::JsonRejection;
use axum::{Json, Router};

/// The admin routes, to be nested at `/admin`.
pub fn router() -> Router<Sim> {
    clusters::router()
        .merge(credentials::router())
        .merge(services::router())
}

fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, Error> {
    body.map(|Json(value)| value)
        .map_err(|e| Error::InvalidRequest {
            reason: e.body_text(),
        })
}
