//! Validation errors of the model and the public error codes of the API.

use serde::{Deserialize, Serialize};

/// Every public error code fleetreg answers with.
///
/// The HTTP status of each code is assigned in exactly one place
/// (`fleetreg-server`'s `status_of`, an exhaustive match: a new code without a
/// status does not compile); the CLI uses the same names. Not
/// `#[non_exhaustive]`, so that match needs no catch-all arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// Cluster with given ID/name not found (seed, 404).
    ClusterNotFound,
    /// Cluster with that name already exists (seed, 409).
    ClusterAlreadyExists,
    /// Name does not match the DNS pattern (seed, 400).
    InvalidClusterName,
    /// Provided credentials failed validation (seed, 400).
    CredentialsInvalid,
    /// No credentials stored for the cluster (seed, 404).
    CredentialsNotFound,
    /// The stored credentials are bound to origins the cluster's URLs no
    /// longer have; they are not presented until uploaded again or
    /// re-bound by an admin (`POST …/credentials/rebind`) (409).
    CredentialsOriginChanged,
    /// Cannot connect to the cluster API (seed, 503).
    ClusterUnreachable,
    /// Capability discovery failed (seed, 500).
    DiscoveryFailed,
    /// No client with that name (404).
    ClientNotFound,
    /// A client with that name already exists (409).
    ClientAlreadyExists,
    /// The requested status change is not a lifecycle move; details
    /// `{from, to}` name both states (409).
    InvalidStatusTransition,
    /// The client is destroyed: only an explicit deploy (or notes) may change
    /// it (409).
    ClientDestroyed,
    /// No host with that id (404).
    HostNotFound,
    /// The cluster already has a host of that name (409).
    HostAlreadyExists,
    /// No deployment with that id (404).
    DeploymentNotFound,
    /// The host already runs a container of that name (409).
    DeploymentAlreadyExists,
    /// No sync job with that id (404).
    SyncJobNotFound,
    /// Another host holds the cluster's leader lease (409; details name it
    /// and its expiry).
    LeaderHeld,
    /// The cluster cannot be deregistered while deployments on its hosts
    /// sync; details list them and the remediations (409).
    ClusterHasSyncClients,
    /// Deregistering removes hosts and deployments: repeat with
    /// `confirm=true`; details hold the preview (409).
    ConfirmationRequired,
    /// The client still runs on hosts: decommission or move its deployments
    /// first; details list them (409).
    ClientHasDeployments,
    /// No rollout with that id (404).
    RolloutNotFound,
    /// The rollout's status does not allow the command, e.g. promoting a
    /// halted rollout (409; details `{command, status}`).
    RolloutConflict,
    /// No domain with that name (404).
    DomainNotFound,
    /// A domain with that name already exists (409).
    DomainAlreadyExists,
    /// No edge node (VPS or laptop) with that name (404).
    NodeNotFound,
    /// An edge node with that name already exists (409).
    NodeAlreadyExists,
    /// Another node already has that overlay or public address; details `{field, address, node}` (409).
    NodeAddressTaken,
    /// No service with that name (404).
    ServiceNotFound,
    /// A service with that name already exists (409).
    ServiceAlreadyExists,
    /// The service has no routing configured (404).
    RoutingNotFound,
    /// The domain, node or service is named by a routing configuration; details list the services (409).
    ResourceInUse,
    /// A field of the request is invalid (400, details `{field, reason}`).
    ValidationError,
    /// The body is not valid JSON or has the wrong shape (400).
    MalformedJson,
    /// `If-Match` named a revision that is not current (412).
    PreconditionFailed,
    /// No or an invalid bearer token (401).
    Unauthenticated,
    /// The token's role may not do this (403).
    Forbidden,
    /// `after` is older than the retained change log (410).
    EventsExpired,
    /// No route matches the path (404).
    NotFound,
    /// No active API token with that id (404).
    TokenNotFound,
    /// The route exists but not with this method (405).
    MethodNotAllowed,
    /// The body is not `application/json` (415).
    UnsupportedMediaType,
    /// The body is larger than the server accepts (413).
    PayloadTooLarge,
    /// The request is not valid HTTP: a bad request line, header name or
    /// header byte (400).
    MalformedRequest,
    /// The request target (path and query) is longer than the server accepts (414).
    UriTooLong,
    /// The request's headers are larger or more numerous than the server accepts (431).
    HeadersTooLarge,
    /// The store cannot be reached (503).
    ServiceUnavailable,
    /// An unexpected error; details are logged, not returned (500).
    InternalError,
}

impl ErrorCode {
    /// Every code, in declaration order (a test checks it is complete).
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::ClusterNotFound,
        ErrorCode::ClusterAlreadyExists,
        ErrorCode::InvalidClusterName,
        ErrorCode::CredentialsInvalid,
        ErrorCode::CredentialsNotFound,
        ErrorCode::CredentialsOriginChanged,
        ErrorCode::ClusterUnreachable,
        ErrorCode::DiscoveryFailed,
        ErrorCode::ClientNotFound,
        ErrorCode::ClientAlreadyExists,
        ErrorCode::InvalidStatusTransition,
        ErrorCode::ClientDestroyed,
        ErrorCode::HostNotFound,
        ErrorCode::HostAlreadyExists,
        ErrorCode::DeploymentNotFound,
        ErrorCode::DeploymentAlreadyExists,
        ErrorCode::SyncJobNotFound,
        ErrorCode::LeaderHeld,
        ErrorCode::ClusterHasSyncClients,
        ErrorCode::ConfirmationRequired,
        ErrorCode::ClientHasDeployments,
        ErrorCode::RolloutNotFound,
        ErrorCode::RolloutConflict,
        ErrorCode::DomainNotFound,
        ErrorCode::DomainAlreadyExists,
        ErrorCode::NodeNotFound,
        ErrorCode::NodeAlreadyExists,
        ErrorCode::NodeAddressTaken,
        ErrorCode::ServiceNotFound,
        ErrorCode::ServiceAlreadyExists,
        ErrorCode::RoutingNotFound,
        ErrorCode::ResourceInUse,
        ErrorCode::ValidationError,
        ErrorCode::MalformedJson,
        ErrorCode::PreconditionFailed,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::EventsExpired,
        ErrorCode::NotFound,
        ErrorCode::TokenNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::PayloadTooLarge,
        ErrorCode::MalformedRequest,
        ErrorCode::UriTooLong,
        ErrorCode::HeadersTooLarge,
        ErrorCode::ServiceUnavailable,
        ErrorCode::InternalError,
    ];

    /// The code as it appears on the wire, e.g. `CLUSTER_NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ClusterNotFound => "CLUSTER_NOT_FOUND",
            ErrorCode::ClusterAlreadyExists => "CLUSTER_ALREADY_EXISTS",
            ErrorCode::InvalidClusterName => "INVALID_CLUSTER_NAME",
            ErrorCode::CredentialsInvalid => "CREDENTIALS_INVALID",
            ErrorCode::CredentialsNotFound => "CREDENTIALS_NOT_FOUND",
            ErrorCode::CredentialsOriginChanged => "CREDENTIALS_ORIGIN_CHANGED",
            ErrorCode::ClusterUnreachable => "CLUSTER_UNREACHABLE",
            ErrorCode::DiscoveryFailed => "DISCOVERY_FAILED",
            ErrorCode::ClientNotFound => "CLIENT_NOT_FOUND",
            ErrorCode::ClientAlreadyExists => "CLIENT_ALREADY_EXISTS",
            ErrorCode::InvalidStatusTransition => "INVALID_STATUS_TRANSITION",
            ErrorCode::ClientDestroyed => "CLIENT_DESTROYED",
            ErrorCode::HostNotFound => "HOST_NOT_FOUND",
            ErrorCode::HostAlreadyExists => "HOST_ALREADY_EXISTS",
            ErrorCode::DeploymentNotFound => "DEPLOYMENT_NOT_FOUND",
            ErrorCode::DeploymentAlreadyExists => "DEPLOYMENT_ALREADY_EXISTS",
            ErrorCode::SyncJobNotFound => "SYNC_JOB_NOT_FOUND",
            ErrorCode::LeaderHeld => "LEADER_HELD",
            ErrorCode::ClusterHasSyncClients => "CLUSTER_HAS_SYNC_CLIENTS",
            ErrorCode::ConfirmationRequired => "CONFIRMATION_REQUIRED",
            ErrorCode::ClientHasDeployments => "CLIENT_HAS_DEPLOYMENTS",
            ErrorCode::RolloutNotFound => "ROLLOUT_NOT_FOUND",
            ErrorCode::RolloutConflict => "ROLLOUT_CONFLICT",
            ErrorCode::DomainNotFound => "DOMAIN_NOT_FOUND",
            ErrorCode::DomainAlreadyExists => "DOMAIN_ALREADY_EXISTS",
            ErrorCode::NodeNotFound => "NODE_NOT_FOUND",
            ErrorCode::NodeAlreadyExists => "NODE_ALREADY_EXISTS",
            ErrorCode::NodeAddressTaken => "NODE_ADDRESS_TAKEN",
            ErrorCode::ServiceNotFound => "SERVICE_NOT_FOUND",
            ErrorCode::ServiceAlreadyExists => "SERVICE_ALREADY_EXISTS",
            ErrorCode::RoutingNotFound => "ROUTING_NOT_FOUND",
            ErrorCode::ResourceInUse => "RESOURCE_IN_USE",
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::MalformedJson => "MALFORMED_JSON",
            ErrorCode::PreconditionFailed => "PRECONDITION_FAILED",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::EventsExpired => "EVENTS_EXPIRED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::TokenNotFound => "TOKEN_NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::MalformedRequest => "MALFORMED_REQUEST",
            ErrorCode::UriTooLong => "URI_TOO_LONG",
            ErrorCode::HeadersTooLarge => "HEADERS_TOO_LARGE",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value that failed validation; it keeps the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A cluster name that does not match `^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`.
    #[error("invalid cluster name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A status change that is not a lifecycle move.
    #[error("cannot move from {from} to {to}: {reason}")]
    Transition {
        /// The current state.
        from: crate::ClientStatus,
        /// The requested state.
        to: crate::ClientStatus,
        /// Why not.
        reason: String,
    },
    /// A change to a destroyed client other than a re-deploy or its notes.
    #[error("client {0} is destroyed; deploy it again before changing it")]
    Destroyed(String),
    /// Any other field that failed validation.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, as named in the API (`labels.team`, `page_size`, …).
        field: String,
        /// Why it was rejected.
        reason: String,
    },
}

impl Error {
    /// Builds an [`Error::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The public error code this validation failure maps to.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidName { .. } => ErrorCode::InvalidClusterName,
            Error::Invalid { .. } => ErrorCode::ValidationError,
            Error::Transition { .. } => ErrorCode::InvalidStatusTransition,
            Error::Destroyed(_) => ErrorCode::ClientDestroyed,
        }
    }

    /// The field the error is about.
    pub fn field(&self) -> &str {
        match self {
            Error::InvalidName { .. } => "name",
            Error::Invalid { field, .. } => field,
            Error::Transition { .. } | Error::Destroyed(_) => "status",
        }
    }

    /// Why the value was rejected.
    pub fn reason(&self) -> &str {
        match self {
            Error::InvalidName { reason, .. }
            | Error::Invalid { reason, .. }
            | Error::Transition { reason, .. } => reason,
            Error::Destroyed(_) => "destroyed is terminal until re-deployed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;
    use serde::de::{value::Error, Deserialize, IntoDeserializer};

    /// serde's derive knows every variant and also accepts a variant's index,
    /// so walking the indices until one is refused enumerates the enum without
    /// naming a variant: a code missing from `ALL` fails here.
    #[test]
    fn all_lists_every_code_once_in_declaration_order() {
        let declared: Vec<ErrorCode> = (0u32..)
            .map_while(|i| {
                ErrorCode::deserialize(IntoDeserializer::<Error>::into_deserializer(i)).ok()
            })
            .collect();
        assert!(declared.len() >= 20, "enumerated {declared:?}");
        assert_eq!(declared, ErrorCode::ALL);
    }

    #[test]
    fn wire_names_are_serde_names_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            let wire = serde_json::to_value(code).unwrap();
            assert_eq!(wire, code.as_str(), "{code:?}");
            assert_eq!(code.to_string(), code.as_str());
            let back: ErrorCode = serde_json::from_value(wire).unwrap();
            assert_eq!(back, code);
            assert!(seen.insert(code.as_str()), "{code:?} shares its wire name");
        }
    }
}
