//! The API error: one envelope, one table from code to HTTP status, and the
//! conversions from store and model errors.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fleetreg_model::{Error as ModelError, ErrorCode};
use fleetreg_store::StoreError;
use serde_json::{json, Value};

/// The HTTP status of every public error code. The only place statuses are assigned.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::ClusterNotFound => StatusCode::NOT_FOUND,
        ErrorCode::ClusterAlreadyExists => StatusCode::CONFLICT,
        ErrorCode::InvalidClusterName => StatusCode::BAD_REQUEST,
        ErrorCode::CredentialsInvalid => StatusCode::BAD_REQUEST,
        ErrorCode::CredentialsNotFound => StatusCode::NOT_FOUND,
        ErrorCode::ClusterUnreachable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::DiscoveryFailed => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::ValidationError => StatusCode::BAD_REQUEST,
        ErrorCode::MalformedJson => StatusCode::BAD_REQUEST,
        ErrorCode::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::EventsExpired => StatusCode::GONE,
        ErrorCode::NotFound | ErrorCode::TokenNotFound => StatusCode::NOT_FOUND,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error answered to a client: `{"error": {"code", "message", "details"}}`.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    details: Value,
    /// The hidden cause of an unexpected error, logged by the response layer.
    internal: Option<String>,
}

/// The cause of a 5xx, parked in the response extensions for the log.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

impl ApiError {
    /// An error with a code, a message and no details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: json!({}),
            internal: None,
        }
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// `VALIDATION_ERROR` for one field.
    pub fn validation(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        ApiError::new(
            ErrorCode::ValidationError,
            format!("invalid {field}: {reason}"),
        )
        .with_details(json!({ "field": field, "reason": reason }))
    }

    /// `CLUSTER_NOT_FOUND` for an id or name.
    pub fn cluster_not_found(what: &str) -> Self {
        ApiError::new(
            ErrorCode::ClusterNotFound,
            format!("cluster {what} not found"),
        )
        .with_details(json!({ "cluster": what }))
    }

    /// An unexpected failure: the client sees a generic message, the log the cause.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError {
            code: ErrorCode::InternalError,
            message: "internal error; see the server log for this request id".into(),
            details: json!({}),
            internal: Some(cause.to_string()),
        }
    }

    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl From<ModelError> for ApiError {
    fn from(error: ModelError) -> Self {
        match &error {
            ModelError::InvalidName { name, reason } => {
                ApiError::new(ErrorCode::InvalidClusterName, error.to_string())
                    .with_details(json!({ "field": "name", "value": name, "reason": reason }))
            }
            _ => ApiError::validation(error.field(), error.reason()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => ApiError::cluster_not_found(&what),
            StoreError::AlreadyExists(name) => {
                ApiError::new(ErrorCode::ClusterAlreadyExists, format!("a cluster named {name:?} already exists"))
                    .with_details(json!({ "name": name }))
            }
            StoreError::PreconditionFailed { expected, actual, id } => ApiError::new(
                ErrorCode::PreconditionFailed,
                format!("If-Match revision {expected} is not current; cluster {id} is at revision {actual}"),
            )
            .with_details(json!({ "expected_revision": expected, "current_revision": actual })),
            StoreError::Invalid(e) => e.into(),
            StoreError::EventsExpired { after, oldest_revision, latest_revision } => ApiError::new(
                ErrorCode::EventsExpired,
                format!("events after revision {after} were removed by retention; list again and resume from the list's revision"),
            )
            .with_details(json!({ "oldest_revision": oldest_revision, "latest_revision": latest_revision })),
            StoreError::CredentialsNotFound(id) => ApiError::new(
                ErrorCode::CredentialsNotFound,
                format!("cluster {id} has no stored credentials"),
            )
            .with_details(json!({ "cluster": id.to_string() })),
            StoreError::Closed => ApiError::new(ErrorCode::ServiceUnavailable, "the server is shutting down"),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.code);
        let body = json!({ "error": { "code": self.code.as_str(), "message": self.message, "details": self.details } });
        let mut response = (status, Json(body)).into_response();
        if let Some(cause) = self.internal {
            response.extensions_mut().insert(InternalCause(cause));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_codes_have_seed_statuses() {
        assert_eq!(status_of(ErrorCode::ClusterNotFound), 404);
        assert_eq!(status_of(ErrorCode::ClusterAlreadyExists), 409);
        assert_eq!(status_of(ErrorCode::InvalidClusterName), 400);
        assert_eq!(status_of(ErrorCode::CredentialsInvalid), 400);
        assert_eq!(status_of(ErrorCode::CredentialsNotFound), 404);
        assert_eq!(status_of(ErrorCode::ClusterUnreachable), 503);
        assert_eq!(status_of(ErrorCode::DiscoveryFailed), 500);
    }
}
