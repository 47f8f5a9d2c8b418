//! Credentials on simulated clusters over real HTTP(S): authentication, the
//! TokenRequest API, Secrets, client certificates over TLS, kubeconfigs, a
//! kube-rs client, and the declared Services (`services`).

mod auth;
mod kube_client;
mod secrets;
mod services;
mod tls;

use fleetreg_sim::{AuthSpec, ClusterSpec, ClusterView, LogEntry, SimAdmin, SpawnedSim};
use serde_json::Value;

/// Auth settings that require a credential and accept `bootstrap`.
fn required() -> AuthSpec {
    AuthSpec {
        required: true,
        tokens: vec!["bootstrap".into()],
        ..AuthSpec::default()
    }
}

/// A plain-HTTP simulator with one cluster.
async fn start(name: &str, auth: AuthSpec) -> (SpawnedSim, SimAdmin, ClusterView) {
    let sim = SpawnedSim::start().await.unwrap();
    let admin = sim.admin();
    let view = admin
        .create_cluster_with_auth(name, spec(), auth)
        .await
        .unwrap();
    (sim, admin, view)
}

fn spec() -> ClusterSpec {
    ClusterSpec {
        observability: fleetreg_sim::ObservabilitySpec {
            prometheus: true,
            tempo: true,
            loki: true,
            thanos: false,
        },
        ..ClusterSpec::default()
    }
}

/// GET `{api_server_url}{path}` with an optional bearer token: (status, JSON body or Null).
async fn get(
    http: &reqwest::Client,
    view: &ClusterView,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = http.get(format!("{}{path}", view.api_server_url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// The request-log entries of `cluster` after `after`.
async fn log_after(admin: &SimAdmin, after: u64, cluster: &str) -> Vec<LogEntry> {
    admin.requests(after, Some(cluster)).await.unwrap().items
}

/// Where the request log ends now.
async fn log_end(admin: &SimAdmin) -> u64 {
    admin.log_end().await.unwrap()
}
