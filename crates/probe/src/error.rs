//! The probe's error type. Messages name the URL and the cause but never a
//! credential.

use crate::egress::{describe, BlockReason, Blocked, PolicyError};
use crate::remote::TooLarge;
use std::net::IpAddr;
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
    /// `health_check.allowed_networks` refused the address a URL denotes or
    /// resolved to; nothing was sent to it.
    #[error("{}", describe(host.as_deref(), *address, *reason))]
    Blocked {
        /// The host name the address was resolved from (`None` for an IP literal).
        host: Option<String>,
        /// The refused address, canonical.
        address: IpAddr,
        /// Why it was refused.
        reason: BlockReason,
    },
    /// A bearer token would have crossed the network unencrypted: plain
    /// `http://` to a host that is not a loopback address, and plain http is
    /// not allowed for tokens (`credentials.allow_plain_http`). Nothing was
    /// sent, no connection made.
    #[error(
        "refusing to send a bearer token over plain http to {origin}: only loopback \
         addresses may receive one unencrypted (credentials.allow_plain_http)"
    )]
    PlainHttpToken {
        /// `http://host:port` of the refused request.
        origin: String,
    },
    /// `health_check.allowed_networks` holds an invalid entry.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A Kubernetes object name given to the probe is not one.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// What it names, e.g. `namespace`.
        what: &'static str,
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The cluster answered, but not with what the call needs.
    #[error("unexpected {what} response: {reason}")]
    UnexpectedResponse {
        /// What was asked for, e.g. `TokenRequest`.
        what: &'static str,
        /// What was wrong (never a secret).
        reason: String,
    },
    /// A response body was larger than `health_check.max_response_bytes`; the
    /// rest of it was not read.
    #[error("{what}: {source}")]
    TooLarge {
        /// What was being read, e.g. `list nodes`.
        what: &'static str,
        /// The limit and what the response announced.
        #[source]
        source: TooLarge,
    },
    /// The request or its answer broke off (connection, TLS, a truncated body).
    #[error("{what}: {reason}")]
    Transport {
        /// What was being read.
        what: &'static str,
        /// The cause chain, escaped.
        reason: String,
    },
    /// The whole operation ran past its time bound.
    #[error("timed out after {:.1} s", after.as_secs_f64())]
    Timeout {
        /// The bound.
        after: Duration,
    },
}

impl From<Blocked> for Error {
    fn from(blocked: Blocked) -> Error {
        Error::Blocked {
            host: blocked.host,
            address: blocked.address,
            reason: blocked.reason,
        }
    }
}

impl Error {
    /// A failed Kubernetes read: [`Error::Blocked`] when the connection was refused
    /// by the egress policy, [`Error::TooLarge`] when the answer was over the
    /// limit, [`Error::Kube`] otherwise.
    pub(crate) fn kube(what: &'static str, source: kube::Error) -> Error {
        if let Some(blocked) = crate::find_blocked(&source) {
            return blocked.clone().into();
        }
        match crate::remote::find_too_large(&source) {
            Some(too_large) => Error::TooLarge {
                what,
                source: too_large,
            },
            None => Error::Kube { what, source },
        }
    }
}
