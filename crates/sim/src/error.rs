//! The simulator's error type, shared by the admin API, its client and `run_cli`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// What went wrong, with the offending input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No simulated cluster has this name.
    #[error("no simulated cluster named {name:?}")]
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// A simulated cluster with this name exists already.
    #[error("a simulated cluster named {name:?} exists already")]
    AlreadyExists {
        /// The name.
        name: String,
    },
    /// The name is not a DNS label (1–63 of `a-z0-9-`).
    #[error("invalid simulated cluster name {name:?}: use 1-63 of a-z, 0-9 and '-'")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// The cluster has no token, client certificate or other credential with this id.
    #[error("simulated cluster {cluster:?} has no {what} {id:?}")]
    UnknownCredential {
        /// The cluster.
        cluster: String,
        /// What kind of credential (`token`, `client certificate`).
        what: &'static str,
        /// The id asked for (token value or certificate serial).
        id: String,
    },
    /// The cluster declares no service with this namespace and name.
    #[error("simulated cluster {cluster:?} declares no service {service:?}")]
    UnknownService {
        /// The cluster.
        cluster: String,
        /// `namespace/name`.
        service: String,
    },
    /// Client certificates and the CA need the simulator to serve HTTPS.
    #[error("the simulator serves plain HTTP; start it with --tls (SpawnedSim::start_tls) for certificates")]
    TlsDisabled,
    /// Generating a key or certificate failed.
    #[error("cannot make a certificate: {reason}")]
    Pki {
        /// Why.
        reason: String,
    },
    /// Setting up TLS failed.
    #[error("cannot set up TLS: {reason}")]
    Tls {
        /// Why.
        reason: String,
    },
    /// An admin request body or query could not be read.
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// Why.
        reason: String,
    },
    /// The admin API answered with an error (client side).
    #[error("simulator admin API answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
    /// The admin API could not be reached (client side).
    #[error("cannot reach the simulator admin API")]
    Http(#[from] reqwest::Error),
    /// Binding or serving failed.
    #[error("simulator I/O failed")]
    Io(#[from] std::io::Error),
}

impl Error {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::NotFound { .. }
            | Error::UnknownCredential { .. }
            | Error::UnknownService { .. } => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            Error::TlsDisabled => (StatusCode::CONFLICT, "TLS_DISABLED"),
            Error::AlreadyExists { .. } => (StatusCode::CONFLICT, "ALREADY_EXISTS"),
            Error::InvalidName { .. } | Error::InvalidRequest { .. } => {
                (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
            }
            Error::Pki { .. }
            | Error::Tls { .. }
            | Error::Status { .. }
            | Error::Http(_)
            | Error::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = serde_json::json!({"error": {"code": code, "message": self.to_string()}});
        (status, Json(body)).into_response()
    }
}
