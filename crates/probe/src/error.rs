//! The probe's error type. Messages name the URL and the cause but never a
//! credential.

use std::time::Duration;

/// Why talking to a cluster failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configured URL cannot be used.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as configured.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The HTTP client could not be set up (TLS roots, connector).
    #[error("cannot set up the HTTP client: {reason}")]
    Setup {
        /// Why.
        reason: String,
    },
    /// A Kubernetes API call failed.
    #[error("{what}: {}", crate::kube_cause(source))]
    Kube {
        /// What was being read, e.g. `list nodes`.
        what: &'static str,
        /// The kube-rs error.
        #[source]
        source: kube::Error,
    },
    /// The whole operation ran past its time bound.
    #[error("timed out after {:.1} s", after.as_secs_f64())]
    Timeout {
        /// The bound.
        after: Duration,
    },
}
