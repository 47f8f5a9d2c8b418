//! Talking to clusters: the health check of seed 8.1 and the capability discovery
//! of seed 9.
//!
//! [`Prober`] holds the pooled HTTP clients; [`Prober::check`] returns a
//! [`HealthReport`] (the model's `CheckResults` plus causes), turned into a
//! `ClusterStatus` by [`HealthReport::status`]; [`Prober::discover`] returns a
//! [`Discovery`] (the model's `Capabilities` plus the platform version). The API
//! server is reached through kube-rs, built from an in-memory `kube::Config` whose
//! URL path is kept as a prefix (never a kubeconfig file); readiness endpoints and
//! Prometheus queries through reqwest.
//!
//! Invariant: never writes to the store; it only observes clusters and returns
//! values. Credentials are sent to the API server only.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod discovery;
mod error;
mod health;
mod prober;
mod target;

pub use discovery::{Discovery, GpuEvidence};
pub use error::Error;
pub use health::{Failure, HealthReport};
pub use prober::Prober;
pub use target::{Credential, Target};

/// An error and its sources, joined by `": "` (reqwest and hyper hide the useful
/// part in the source chain).
pub(crate) fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

/// A kube-rs error in words: `HTTP 503 ServiceUnavailable: message` for API
/// errors, the source chain otherwise.
pub(crate) fn kube_cause(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            format!("HTTP {} {}: {}", status.code, status.reason, status.message)
        }
        other => cause_chain(other),
    }
}
