//! The API error: one envelope, one table from code to HTTP status, and the
//! conversions from store and model errors.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fleetreg_model::{Error as ModelError, ErrorCode};
use fleetreg_store::StoreError;
use serde_json::{json, Value};

/// The HTTP status of every public error code. The only place statuses are
/// assigned; exhaustive (no catch-all arm), so a new [`ErrorCode`] without a
/// status does not compile.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::ClusterNotFound => StatusCode::NOT_FOUND,
        ErrorCode::ClusterAlreadyExists => StatusCode::CONFLICT,
        ErrorCode::InvalidClusterName => StatusCode::BAD_REQUEST,
        ErrorCode::CredentialsInvalid => StatusCode::BAD_REQUEST,
        ErrorCode::CredentialsNotFound => StatusCode::NOT_FOUND,
        ErrorCode::CredentialsOriginChanged => StatusCode::CONFLICT,
        ErrorCode::ClusterUnreachable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::DiscoveryFailed => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::ClientNotFound => StatusCode::NOT_FOUND,
        ErrorCode::ClientAlreadyExists
        | ErrorCode::InvalidStatusTransition
        | ErrorCode::ClientDestroyed => StatusCode::CONFLICT,
        ErrorCode::RolloutNotFound => StatusCode::NOT_FOUND,
        ErrorCode::ClientHasDeployments => StatusCode::CONFLICT,
        ErrorCode::RolloutConflict => StatusCode::CONFLICT,
        ErrorCode::HostNotFound | ErrorCode::DeploymentNotFound | ErrorCode::SyncJobNotFound => {
            StatusCode::NOT_FOUND
        }
        ErrorCode::HostAlreadyExists
        | ErrorCode::DeploymentAlreadyExists
        | ErrorCode::LeaderHeld
        | ErrorCode::ClusterHasSyncClients
        | ErrorCode::ConfirmationRequired => StatusCode::CONFLICT,
        ErrorCode::DomainNotFound
        | ErrorCode::NodeNotFound
        | ErrorCode::ServiceNotFound
        | ErrorCode::RoutingNotFound => StatusCode::NOT_FOUND,
        ErrorCode::DomainAlreadyExists
        | ErrorCode::NodeAlreadyExists
        | ErrorCode::NodeAddressTaken
        | ErrorCode::ServiceAlreadyExists
        | ErrorCode::ResourceInUse => StatusCode::CONFLICT,
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
        ErrorCode::MalformedRequest => StatusCode::BAD_REQUEST,
        ErrorCode::UriTooLong => StatusCode::URI_TOO_LONG,
        ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
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

    /// `code` (a 404) for the `kind` of resource named `what`.
    pub fn not_found(code: ErrorCode, kind: &str, what: impl std::fmt::Display) -> Self {
        // `what` may come from a path: echoed at most 128 characters long.
        let what: String = what.to_string().chars().take(128).collect();
        ApiError::new(code, format!("{kind} {what} not found")).with_details(json!({ kind: what }))
    }

    /// `VALIDATION_ERROR` for a registry file: every problem in
    /// `details.problems`, the first in the message; nothing was imported.
    pub fn import_problems(problems: &[fleetreg_model::ImportProblem]) -> Self {
        let first = problems
            .first()
            .map(|p| format!("client {:?}: {}: {}", p.client, p.field, p.reason))
            .unwrap_or_default();
        ApiError::new(
            ErrorCode::ValidationError,
            format!(
                "the registry file has {} problem(s); nothing was imported. First: {first}",
                problems.len()
            ),
        )
        .with_details(json!({ "problems": problems }))
    }

    /// An unexpected failure: the client sees a generic message, the log the cause.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::hidden(ErrorCode::InternalError, cause)
    }

    /// A server-side failure with `code`: generic message, cause only logged.
    fn hidden(code: ErrorCode, cause: impl std::fmt::Display) -> Self {
        ApiError {
            code,
            message: "internal error; see the server log for this request id".into(),
            details: json!({}),
            internal: Some(cause.to_string()),
        }
    }

    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The JSON body every error answers with:
    /// `{"error": {"code", "message", "details"}}`.
    pub fn envelope(&self) -> Value {
        json!({ "error": { "code": self.code.as_str(), "message": self.message, "details": self.details } })
    }
}

/// The code is always the model's `Error::code`.
impl From<ModelError> for ApiError {
    fn from(error: ModelError) -> Self {
        let code = error.code();
        match &error {
            ModelError::InvalidName { name, reason } => ApiError::new(code, error.to_string())
                .with_details(json!({ "field": "name", "value": name, "reason": reason })),
            ModelError::Transition { from, to, reason } => ApiError::new(code, error.to_string())
                .with_details(json!({ "from": from, "to": to, "reason": reason })),
            ModelError::Destroyed(client) => ApiError::new(code, error.to_string())
                .with_details(json!({ "client": client, "status": "destroyed" })),
            _ => ApiError {
                code,
                ..ApiError::validation(error.field(), error.reason())
            },
        }
    }
}

/// The code is always [`StoreError::code`] and the status its [`status_of`]:
/// the arms below only choose the message and details. A 5xx keeps its cause
/// out of the answer (it is logged with the request id), except
/// `Unavailable`, whose text the store sanitises for clients.
impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let code = error.code();
        if status_of(code).is_server_error() {
            return match error {
                StoreError::Closed => ApiError::new(code, "the server is shutting down"),
                // Its text is sanitised by the store and says what to fix
                // (e.g. a full disk); it is logged as well.
                unavailable @ StoreError::Unavailable(_) => ApiError {
                    internal: Some(unavailable.to_string()),
                    ..ApiError::new(code, format!("{unavailable}; try again later"))
                },
                other => ApiError::hidden(code, other),
            };
        }
        match error {
            StoreError::NotFound(what) => ApiError::cluster_not_found(&what),
            StoreError::AlreadyExists(name) => {
                ApiError::new(code, format!("a cluster named {name:?} already exists"))
                    .with_details(json!({ "name": name }))
            }
            StoreError::PreconditionFailed {
                expected,
                actual,
                id,
            } => ApiError::new(
                code,
                format!(
                    "If-Match revision {expected} is not current; {id} is at revision {actual}"
                ),
            )
            .with_details(json!({ "expected_revision": expected, "current_revision": actual })),
            StoreError::Invalid(e) => e.into(),
            StoreError::RolloutNotFound(id) => ApiError::not_found(code, "rollout", id),
            StoreError::RolloutUnfinished(id) => ApiError::new(
                code,
                format!("rollout {id} of this app is not finished; abort it first or wait"),
            )
            .with_details(json!({ "rollout": id })),
            StoreError::ImportRefused(problems) => ApiError::import_problems(&problems),
            StoreError::ClientHasDeployments(deployments) => ApiError::new(
                code,
                format!(
                    "the client runs in {} deployment(s); decommission them (DELETE /api/v1/deployments/{{id}}) \
                     or destroy the client instead, which keeps its entry",
                    deployments.len()
                ),
            )
            .with_details(json!({ "deployments": deployments })),
            StoreError::RolloutConflict(conflict) => ApiError::new(code, conflict.to_string())
                .with_details(json!({ "command": conflict.command, "status": conflict.status })),
            StoreError::HostNotFound(id) => ApiError::not_found(code, "host", id),
            StoreError::DeploymentNotFound(id) => ApiError::not_found(code, "deployment", id),
            StoreError::SyncJobNotFound(id) => ApiError::not_found(code, "sync_job", id),
            StoreError::HostExists(name) => {
                ApiError::new(code, format!("the cluster already has a host named {name:?}"))
                    .with_details(json!({ "hostname": name }))
            }
            StoreError::DeploymentExists(name) => ApiError::new(
                code,
                format!("the host already runs a container named {name:?}"),
            )
            .with_details(json!({ "container_name": name })),
            StoreError::LeaderHeld(leader) => ApiError::new(
                code,
                format!(
                    "host {} holds the leader lease until {}",
                    leader.host_id,
                    fleetreg_model::format_timestamp(&leader.lease_expires_at)
                ),
            )
            .with_details(json!({ "holder": leader })),
            StoreError::HasSyncClients(clients) => ApiError::new(
                code,
                format!(
                    "cannot deregister: {} client deployment(s) on the cluster's hosts have sync enabled; \
                     for each, disable sync, migrate it to another host, or decommission it",
                    clients.len()
                ),
            )
            .with_details(json!({
                "clients": clients,
                "remediations": fleetreg_model::SYNC_CLIENT_REMEDIATIONS,
            })),
            StoreError::NeedsConfirmation(preview) => ApiError::new(
                code,
                format!(
                    "deregistering removes {} host(s), {} deployment(s), {} sync job(s), {} conflict(s) \
                     and {} leader record(s); repeat with confirm=true",
                    preview.hosts.len(),
                    preview.deployments.len(),
                    preview.sync_jobs,
                    preview.conflicts,
                    preview.leader_records
                ),
            )
            .with_details(json!({ "preview": preview })),
            StoreError::ClientNotFound(name) => {
                ApiError::new(code, format!("client {name} not found"))
                    .with_details(json!({ "client": name }))
            }
            StoreError::ClientExists(name) => {
                ApiError::new(code, format!("a client named {name:?} already exists"))
                    .with_details(json!({ "name": name }))
            }
            StoreError::EventsExpired {
                after,
                oldest_revision,
                latest_revision,
            } => ApiError::new(
                code,
                format!(
                    "events after revision {after} were removed by retention; \
                     list again and resume from the list's revision"
                ),
            )
            .with_details(
                json!({ "oldest_revision": oldest_revision, "latest_revision": latest_revision }),
            ),
            StoreError::CredentialsNotFound(id) => {
                ApiError::new(code, format!("cluster {id} has no stored credentials"))
                    .with_details(json!({ "cluster": id.to_string() }))
            }
            StoreError::TokenNameTaken(name) => {
                ApiError::new(code, "invalid name: a token with this name exists")
                    .with_details(json!({ "field": "name", "reason": "taken", "name": name }))
            }
            StoreError::TokenNotFound(id) => ApiError::new(code, format!("no active token {id}")),
            StoreError::DomainNotFound(name) => ApiError::not_found(code, "domain", name),
            StoreError::NodeNotFound(name) => ApiError::not_found(code, "node", name),
            StoreError::ServiceNotFound(name) => ApiError::not_found(code, "service", name),
            StoreError::RoutingNotFound(service) => {
                let service: String = service.chars().take(128).collect();
                ApiError::new(code, format!("service {service} has no routing"))
                    .with_details(json!({ "service": service }))
            }
            StoreError::DomainExists(name) => {
                ApiError::new(code, format!("a domain named {name:?} already exists"))
                    .with_details(json!({ "name": name }))
            }
            StoreError::NodeExists(name) => {
                ApiError::new(code, format!("a node named {name:?} already exists"))
                    .with_details(json!({ "name": name }))
            }
            StoreError::ServiceExists(name) => {
                ApiError::new(code, format!("a service named {name:?} already exists"))
                    .with_details(json!({ "name": name }))
            }
            StoreError::NodeAddressTaken {
                field,
                address,
                node,
            } => ApiError::new(
                code,
                format!("{address} ({field}) is already the address of node {node}"),
            )
            .with_details(json!({ "field": field, "address": address, "node": node })),
            StoreError::InUse {
                what,
                name,
                services,
            } => ApiError::new(
                code,
                format!(
                    "the {what} {name} is named by the routing of {}; change or delete those routings first",
                    services.join(", ")
                ),
            )
            .with_details(json!({ "services": services })),
            // A logical failure without its own wording yet: still its own code.
            other => ApiError::new(code, other.to_string()),
        }
    }
}

/// `Retry-After` of every 503: the store's outages are detected within about
/// a second (pool acquire timeout), so a retry after one is cheap.
const RETRY_AFTER_SECONDS: &str = "1";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.code);
        let mut response = (status, Json(self.envelope())).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Transient by definition: tell clients and load balancers when to retry.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        if let Some(cause) = self.internal {
            response.extensions_mut().insert(InternalCause(cause));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    /// The answer's status and its JSON body.
    async fn answer(error: ApiError) -> (StatusCode, Value, Option<String>) {
        let response = error.into_response();
        let status = response.status();
        let cause = response
            .extensions()
            .get::<InternalCause>()
            .map(|c| c.0.clone());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap(), cause)
    }

    #[tokio::test]
    async fn every_code_has_an_error_status_and_round_trips_through_the_body() {
        for &code in ErrorCode::ALL {
            let status = status_of(code);
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code} answers {status}"
            );
            let (answered, body, _) = answer(ApiError::new(code, "m")).await;
            assert_eq!(answered, status, "{code}");
            let wire = &body["error"]["code"];
            assert_eq!(wire, code.as_str());
            assert_eq!(
                serde_json::from_value::<ErrorCode>(wire.clone()).unwrap(),
                code
            );
        }
    }

    #[test]
    fn the_store_calls_logical_exactly_the_4xx_codes() {
        for &code in ErrorCode::ALL {
            assert_eq!(
                StoreError::is_logical_code(code),
                status_of(code).is_client_error(),
                "{code} is {}",
                status_of(code)
            );
        }
    }

    /// One of each store error, with the status and code the API answers.
    fn store_errors() -> Vec<(StoreError, u16, &'static str)> {
        let id = Uuid::now_v7();
        vec![
            (StoreError::NotFound("c".into()), 404, "CLUSTER_NOT_FOUND"),
            (
                StoreError::AlreadyExists("c".into()),
                409,
                "CLUSTER_ALREADY_EXISTS",
            ),
            (
                StoreError::PreconditionFailed {
                    expected: 1,
                    actual: 2,
                    id,
                },
                412,
                "PRECONDITION_FAILED",
            ),
            (
                StoreError::CredentialsNotFound(id),
                404,
                "CREDENTIALS_NOT_FOUND",
            ),
            (
                StoreError::TokenNameTaken("ci".into()),
                400,
                "VALIDATION_ERROR",
            ),
            (StoreError::TokenNotFound(id), 404, "TOKEN_NOT_FOUND"),
            (
                StoreError::DomainNotFound("d.example".into()),
                404,
                "DOMAIN_NOT_FOUND",
            ),
            (
                StoreError::DomainExists("d.example".into()),
                409,
                "DOMAIN_ALREADY_EXISTS",
            ),
            (
                StoreError::NodeNotFound("vps1".into()),
                404,
                "NODE_NOT_FOUND",
            ),
            (
                StoreError::NodeExists("vps1".into()),
                409,
                "NODE_ALREADY_EXISTS",
            ),
            (
                StoreError::ServiceNotFound("web".into()),
                404,
                "SERVICE_NOT_FOUND",
            ),
            (
                StoreError::ServiceExists("web".into()),
                409,
                "SERVICE_ALREADY_EXISTS",
            ),
            (
                StoreError::RoutingNotFound("web".into()),
                404,
                "ROUTING_NOT_FOUND",
            ),
            (
                StoreError::Invalid(ModelError::invalid("labels", "bad")),
                400,
                "VALIDATION_ERROR",
            ),
            (
                StoreError::Invalid(ModelError::InvalidName {
                    name: "X".into(),
                    reason: "upper case".into(),
                }),
                400,
                "INVALID_CLUSTER_NAME",
            ),
            (
                StoreError::EventsExpired {
                    after: 1,
                    oldest_revision: 5,
                    latest_revision: 9,
                },
                410,
                "EVENTS_EXPIRED",
            ),
            (
                StoreError::UnsupportedUrl("mysql://x".into()),
                500,
                "INTERNAL_ERROR",
            ),
            (
                StoreError::Database(sqlx::Error::PoolClosed),
                500,
                "INTERNAL_ERROR",
            ),
            (
                StoreError::Migrate(sqlx::migrate::MigrateError::VersionMissing(3)),
                500,
                "INTERNAL_ERROR",
            ),
            (
                StoreError::Corrupt("secret detail".into()),
                500,
                "INTERNAL_ERROR",
            ),
            (StoreError::Closed, 503, "SERVICE_UNAVAILABLE"),
            (
                StoreError::Unavailable("disk full".into()),
                503,
                "SERVICE_UNAVAILABLE",
            ),
        ]
    }

    #[tokio::test]
    async fn every_store_error_answers_its_own_code_and_status() {
        for (error, status, wire) in store_errors() {
            let logical = error.is_logical();
            let code = error.code();
            let shown = error.to_string();
            let (answered, body, cause) = answer(error.into()).await;
            assert_eq!(answered, status, "{shown}");
            assert_eq!(answered, status_of(code), "{shown}");
            assert_eq!(body["error"]["code"], wire, "{shown}");
            assert_eq!(logical, answered.is_client_error(), "{shown}");
            if code == ErrorCode::InternalError {
                // 5xx detail stays in the log.
                assert_eq!(cause.as_deref(), Some(shown.as_str()));
                assert!(!body.to_string().contains(&shown), "{body}");
            } else if logical {
                assert_eq!(cause, None, "{shown}");
            }
        }
    }

    #[tokio::test]
    async fn token_errors_need_no_handler_to_be_right() {
        let id = Uuid::now_v7();
        let (status, body, _) = answer(StoreError::TokenNotFound(id).into()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "TOKEN_NOT_FOUND");
        assert_eq!(body["error"]["message"], format!("no active token {id}"));

        let (status, body, _) = answer(StoreError::TokenNameTaken("ci".into()).into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(
            body["error"]["details"],
            json!({ "field": "name", "reason": "taken", "name": "ci" })
        );
    }

    #[tokio::test]
    async fn edge_errors_carry_their_details() {
        let taken = StoreError::NodeAddressTaken {
            field: "overlay_address".into(),
            address: "100.64.0.1".into(),
            node: "vps1".into(),
        };
        let (status, body, _) = answer(taken.into()).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"]["code"], "NODE_ADDRESS_TAKEN");
        assert_eq!(
            body["error"]["details"],
            json!({ "field": "overlay_address", "address": "100.64.0.1", "node": "vps1" })
        );
        let in_use = StoreError::InUse {
            what: "domain",
            name: "curiios.com".into(),
            services: vec!["immich".into(), "open-webui".into()],
        };
        let (status, body, _) = answer(in_use.into()).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"]["code"], "RESOURCE_IN_USE");
        assert_eq!(
            body["error"]["details"],
            json!({ "services": ["immich", "open-webui"] })
        );
        let long = "a".repeat(300);
        let (status, body, _) = answer(StoreError::DomainNotFound(long).into()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "DOMAIN_NOT_FOUND");
        assert_eq!(
            body["error"]["details"]["domain"].as_str().map(str::len),
            Some(128)
        );
        let (status, body, _) = answer(StoreError::RoutingNotFound("immich".into()).into()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["details"], json!({ "service": "immich" }));
    }

    #[test]
    fn seed_codes_have_seed_statuses() {
        assert_eq!(status_of(ErrorCode::ClusterNotFound), 404);
        assert_eq!(status_of(ErrorCode::ClusterAlreadyExists), 409);
        assert_eq!(status_of(ErrorCode::InvalidClusterName), 400);
        assert_eq!(status_of(ErrorCode::CredentialsInvalid), 400);
        assert_eq!(status_of(ErrorCode::CredentialsNotFound), 404);
        assert_eq!(status_of(ErrorCode::CredentialsOriginChanged), 409);
        assert_eq!(status_of(ErrorCode::ClusterUnreachable), 503);
        assert_eq!(status_of(ErrorCode::DiscoveryFailed), 500);
    }
}
