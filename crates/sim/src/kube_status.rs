//! Failures as a Kubernetes API server reports them: an HTTP status with a
//! `Status` body (`reason`, `message`, `details`).

use crate::objects;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A Kubernetes API failure.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KubeError {
    status: StatusCode,
    reason: &'static str,
    message: String,
    /// `(name, kind)` for `details`, e.g. `("db", "secrets")`.
    details: Option<(String, String)>,
}

impl KubeError {
    /// Any failure.
    pub(crate) fn new(
        status: StatusCode,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        KubeError {
            status,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn about(mut self, kind: &str, name: &str) -> Self {
        self.details = Some((name.to_owned(), kind.to_owned()));
        self
    }

    /// 401, as for a request without an accepted credential.
    pub(crate) fn unauthorized() -> Self {
        KubeError::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    /// 400 `BadRequest`.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        KubeError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 404 for a path the server does not serve.
    pub(crate) fn no_route() -> Self {
        KubeError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 404 for an object of `kind` (plural resource name) that does not exist.
    pub(crate) fn not_found(kind: &str, name: &str) -> Self {
        KubeError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{kind} \"{name}\" not found"),
        )
        .about(kind, name)
    }

    /// 409 on creating an object that exists.
    pub(crate) fn already_exists(kind: &str, name: &str) -> Self {
        KubeError::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{kind} \"{name}\" already exists"),
        )
        .about(kind, name)
    }

    /// 409 on a stale `resourceVersion`.
    pub(crate) fn conflict(kind: &str, name: &str) -> Self {
        KubeError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {kind} \"{name}\": the object has been \
                 modified; please apply your changes to the latest version and try again"
            ),
        )
        .about(kind, name)
    }

    /// 422 `Invalid`: `{Kind} "{name}" is invalid: {cause}`.
    pub(crate) fn invalid(kind: &str, plural: &str, name: &str, cause: &str) -> Self {
        KubeError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {cause}"),
        )
        .about(plural, name)
    }

    /// 500 `InternalError`.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        KubeError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }
}

impl IntoResponse for KubeError {
    fn into_response(self) -> Response {
        let mut body = objects::status(self.status.as_u16(), self.reason, &self.message);
        match (&self.details, self.status) {
            (Some((name, kind)), _) => body["details"] = json!({"name": name, "kind": kind}),
            // A real API server sends no `details` with 401.
            (None, StatusCode::UNAUTHORIZED) => {
                if let Some(map) = body.as_object_mut() {
                    map.remove("details");
                }
            }
            (None, _) => {}
        }
        (self.status, Json(body)).into_response()
    }
}

/// The `Status` a successful delete answers with.
pub(crate) fn deleted(kind: &str, name: &str, uid: &serde_json::Value) -> serde_json::Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "kind": kind, "uid": uid},
    })
}
