//! The health check of seed 8.1: API server, Prometheus, Tempo, Loki, all at once,
//! bounded together by the cluster type's timeout.

use crate::error::Error;
use crate::observability::Observability;
use crate::prober::{join, Prober};
use crate::remote::{fetch, read_body};
use crate::target::Target;
use chrono::{DateTime, Utc};
use fleetreg_model::{cluster_status, CheckResults, ClusterState, ClusterStatus, Component};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ListParams;
use kube::core::ObjectList;
use kube::Resource;
use secrecy::SecretString;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// The outcome of one check: the results the score and state come from, and why
/// each failed check failed.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    /// Pass/fail per component (`None` = not configured).
    pub results: CheckResults,
    /// One entry per failed component, with a sanitised cause.
    pub failures: Vec<Failure>,
    /// How long the whole check took.
    pub elapsed: Duration,
}

/// Why one component's check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Which component.
    pub component: Component,
    /// What happened, e.g. `HTTP 503 Service Unavailable` or `timed out after 10.0 s`.
    pub cause: String,
}

impl HealthReport {
    /// The status to store: the model's state, score and reason, with each failed
    /// component's cause appended to the reason.
    pub fn status(&self, current: ClusterState, checked_at: DateTime<Utc>) -> ClusterStatus {
        let mut status = cluster_status(current, &self.results, checked_at);
        if !self.failures.is_empty() {
            let causes: Vec<String> = self
                .failures
                .iter()
                .map(|f| format!("{}: {}", f.component, f.cause))
                .collect();
            let base = status.reason.take().unwrap_or_default();
            status.reason = Some(format!("{base} ({})", causes.join("; ")));
        }
        status
    }
}

impl Prober {
    /// Checks a cluster (seed 8.1): lists namespaces on the API server and calls
    /// `GET {prometheus_url}/-/ready`, `{tempo_url}/ready` and `{loki_url}/ready`
    /// for the endpoints configured, all concurrently, each with its own token
    /// from the target's credential. Whatever has not answered
    /// when `timeout` runs out counts as failed, so the check ends within it.
    pub async fn check(&self, target: &Target, timeout: Duration) -> HealthReport {
        let started = Instant::now();
        let deadline = started + timeout;
        let api = bounded(deadline, timeout, self.api_server_ready(target));
        let [prometheus, tempo, loki] = Observability::ALL.map(|endpoint| {
            let url = endpoint
                .base(target)
                .map(|base| join(base, endpoint.ready_path()));
            async move {
                let url = url?;
                let call = self.ready(target, &url, endpoint.token(target));
                Some(bounded(deadline, timeout, call).await)
            }
        });
        let (api, prometheus, tempo, loki) = tokio::join!(api, prometheus, tempo, loki);

        let mut failures = Vec::new();
        let mut record = |component: Component, outcome: Option<Result<(), String>>| {
            outcome.map(|result| match result {
                Ok(()) => true,
                Err(cause) => {
                    failures.push(Failure { component, cause });
                    false
                }
            })
        };
        let results = CheckResults {
            api_server: record(Component::ApiServer, Some(api)).unwrap_or(false),
            prometheus: record(Component::Prometheus, prometheus),
            tempo: record(Component::Tempo, tempo),
            loki: record(Component::Loki, loki),
        };
        let elapsed = started.elapsed();
        // The URL is the operator's; the causes are bounded and escaped.
        tracing::debug!(
            api_server_url = %target.api_server_url,
            api_server = results.api_server,
            failures = ?failures.iter().map(|f| (f.component, f.cause.as_str())).collect::<Vec<_>>(),
            elapsed_ms = elapsed.as_millis() as u64,
            "cluster checked"
        );
        HealthReport {
            results,
            failures,
            elapsed,
        }
    }

    /// Lists at most one namespace with the target's credential.
    pub(crate) async fn api_server_ready(&self, target: &Target) -> Result<(), String> {
        let api = self.api_server(target).map_err(|e| e.to_string())?;
        let request = kube::core::Request::new(Namespace::url_path(&(), None))
            .list(&ListParams::default().limit(1));
        fetch::<ObjectList<Namespace>>(&api, request, "list namespaces")
            .await
            .map(|_| ())
            .map_err(|e| match e {
                Error::Kube { source, .. } => crate::kube_cause(&source),
                other => other.to_string(),
            })
    }

    /// `GET url` (with `token` as a bearer token) answered 2xx, with a body of
    /// at most `max_response_bytes`.
    pub(crate) async fn ready(
        &self,
        target: &Target,
        url: &str,
        token: Option<&SecretString>,
    ) -> Result<(), String> {
        let response = self
            .get(target, url, token)
            .map_err(|e| e.to_string())?
            .send()
            .await
            .map_err(|e| crate::cause_chain(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(http_cause(status));
        }
        read_body(response, self.max_response_bytes(), "readiness")
            .await
            .map(|_| ())
            .map_err(|e| match e {
                Error::TooLarge { source, .. } => source.to_string(),
                other => other.to_string(),
            })
    }
}

/// `HTTP 401 Unauthorized`: the code and its canonical reason.
pub(crate) fn http_cause(status: reqwest::StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// `call`, failed with [`crate::Error::Timeout`] when `deadline` passes first.
pub(crate) async fn bounded(
    deadline: Instant,
    timeout: Duration,
    call: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    match tokio::time::timeout_at(deadline, call).await {
        Ok(result) => result,
        Err(_) => Err(crate::Error::Timeout { after: timeout }.to_string()),
    }
}
