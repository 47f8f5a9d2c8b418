//! Talking to clusters: the health check of seed 8.1 and the capability discovery
//! of seed 9.
//!
//! [`Prober`] holds the pooled HTTP clients; [`Prober::check`] returns a
//! [`HealthReport`] (the model's `CheckResults` plus causes), turned into a
//! `ClusterStatus` by [`HealthReport::status`]; [`Prober::discover`] returns a
//! [`Discovery`] (the model's `Capabilities` plus the platform version);
//! [`Prober::discover_services`] returns the Services a cluster exposes with the
//! annotation `fleetreg.io/expose: "true"` ([`ServiceDiscovery`]). The API
//! server is reached through kube-rs' request stack, built from an in-memory
//! `kube::Config` whose URL path is kept as a prefix (never a kubeconfig file)
//! and called without a `kube::Client` (`api_server.rs`); readiness endpoints and
//! Prometheus queries through reqwest.
//!
//! Every connection goes only where the [`EgressPolicy`]
//! (`health_check.allowed_networks`) allows: IP literals in a URL (or a redirect
//! target) are checked before sending, names are resolved by a resolver that drops
//! refused addresses, and both clients connect only to what it returned.
//!
//! Credentials (seed 4.2, 13): a [`ClusterCredential`] is built from a token
//! ([`ClusterCredential::from_token`]) or an uploaded kubeconfig
//! ([`ClusterCredential::from_kubeconfig`], inline data only: nothing in it can
//! make the probe run a command or read a file), plus optional Prometheus, Tempo
//! and Loki tokens. [`Prober::validate`] tries one on every component;
//! [`Prober::request_token`] gets a fresh service account token for rotation.
//!
//! Invariant: never writes to the store; it only observes clusters and returns
//! values. The API server's credential goes to the API server only, each
//! observability token to its own endpoint only, and no secret appears in a
//! `Debug` output or an error message.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod api_server;
mod client_cache;
mod credential;
mod credential_error;
mod discovery;
mod egress;
mod error;
mod health;
mod hub_secrets;
mod jwt;
pub mod kubeconfig;
mod node_check;
mod observability;
mod pki;
mod prober;
mod remote;
mod resolver;
mod services;
mod target;
mod token_request;
mod url_check;
mod validate;

pub use credential::{ApiAuth, ClusterCredential, TlsTrust};
pub use credential_error::CredentialError;
pub use discovery::{Discovery, GpuEvidence};
pub use egress::{canonical, embedded_ipv4, BlockReason, Blocked, EgressPolicy, PolicyError};
pub use error::Error;
pub use health::{Failure, HealthReport};
pub use hub_secrets::{HubConfig, HubError, HubSecret, HubSecrets};
pub use node_check::{NodeCheck, NodeChecker, NodeTarget};
pub use prober::Prober;
pub use remote::{escape_remote, TooLarge, DEFAULT_MAX_RESPONSE_BYTES, MAX_REMOTE_TEXT_CHARS};
pub use services::{
    ServiceDiscovery, ServiceProblem, DESCRIPTION_ANNOTATION, EXPOSE_ANNOTATION,
    MAX_EXPOSED_SERVICES, NAME_ANNOTATION, PORT_ANNOTATION, SUBDOMAIN_ANNOTATION,
    UPSTREAM_ANNOTATION,
};
pub use target::Target;
pub use url_check::{UrlCheck, UrlChecker};

/// An error and its sources, joined by `": "` (reqwest and hyper hide the useful
/// part in the source chain), escaped and truncated ([`escape_remote`]: a
/// decoding error may quote the cluster); only the block when the egress policy
/// refused the connection, only the limit when the answer was too large.
pub(crate) fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    if let Some(blocked) = find_blocked(error) {
        return blocked.to_string();
    }
    if let Some(too_large) = remote::find_too_large(error) {
        return too_large.to_string();
    }
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
    escape_remote(&text)
}

/// The egress policy's refusal somewhere in `error`'s source chain.
pub(crate) fn find_blocked<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a Blocked> {
    let mut current = Some(error);
    while let Some(inner) = current {
        if let Some(blocked) = inner.downcast_ref::<Blocked>() {
            return Some(blocked);
        }
        current = inner.source();
    }
    None
}

/// A kube-rs error in words: `HTTP 503 ServiceUnavailable: message` for API
/// errors (the cluster's reason and message escaped and truncated), the source
/// chain otherwise.
pub(crate) fn kube_cause(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!(
            "HTTP {} {}: {}",
            status.code,
            escape_remote(&status.reason),
            escape_remote(&status.message)
        ),
        other => cause_chain(other),
    }
}
