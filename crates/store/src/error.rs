//! Errors of the store.

use fleetreg_model as model;
use uuid::Uuid;

/// What can go wrong in the store. Logical failures carry data; database
/// failures keep their source for the log and never reach a client verbatim.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No cluster with that id or name.
    #[error("cluster {0} not found")]
    NotFound(String),
    /// Another cluster already has the name.
    #[error("a cluster named {0:?} already exists")]
    AlreadyExists(String),
    /// `If-Match` named a revision that is not current.
    #[error("revision {expected} is not current; the resource is at revision {actual}")]
    PreconditionFailed {
        /// The revision the client expected.
        expected: i64,
        /// The current revision.
        actual: i64,
        /// The cluster or client.
        id: Uuid,
    },
    /// No client with that name.
    #[error("client {0} not found")]
    ClientNotFound(String),
    /// Another client already has the name.
    #[error("a client named {0:?} already exists")]
    ClientExists(String),
    /// No host with that id.
    #[error("host {0} not found")]
    HostNotFound(Uuid),
    /// The cluster already has a host of that name.
    #[error("the cluster already has a host named {0:?}")]
    HostExists(String),
    /// No deployment with that id.
    #[error("deployment {0} not found")]
    DeploymentNotFound(Uuid),
    /// The host already runs a container of that name.
    #[error("the host already runs a container named {0:?}")]
    DeploymentExists(String),
    /// No sync job with that id.
    #[error("sync job {0} not found")]
    SyncJobNotFound(Uuid),
    /// Another host holds the cluster's leader lease.
    #[error("host {} holds the leader lease until {}", .0.host_id, .0.lease_expires_at)]
    LeaderHeld(model::Leader),
    /// Deployments on the cluster's hosts sync: it cannot be deregistered.
    #[error("{} client deployment(s) on the cluster's hosts have sync enabled", .0.len())]
    HasSyncClients(Vec<model::SyncClient>),
    /// Deregistering removes what the preview lists: it needs confirmation.
    #[error("deregistering removes hosts and deployments; confirm it")]
    NeedsConfirmation(Box<model::DeregistrationPreview>),
    /// The client runs on hosts (its deployments would be lost).
    #[error("the client has {} deployment(s)", .0.len())]
    ClientHasDeployments(Vec<model::Deployment>),
    /// Entries of a registry file that would break the lifecycle (nothing
    /// was imported).
    #[error("{} client(s) of the file would break the lifecycle", .0.len())]
    ImportRefused(Vec<model::ImportProblem>),
    /// Another rollout of the same app is not finished yet.
    #[error("rollout {0} of this app is not finished; abort it or wait")]
    RolloutUnfinished(Uuid),
    /// No rollout with that id.
    #[error("rollout {0} not found")]
    RolloutNotFound(Uuid),
    /// The rollout's status does not allow the command.
    #[error(transparent)]
    RolloutConflict(model::RolloutConflict),
    /// The cluster has no stored credentials.
    #[error("cluster {0} has no stored credentials")]
    CredentialsNotFound(Uuid),
    /// Another API token already has that name.
    #[error("a token named {0:?} already exists")]
    TokenNameTaken(String),
    /// No active API token with that id.
    #[error("token {0} not found")]
    TokenNotFound(Uuid),
    /// No domain with that name.
    #[error("domain {0} not found")]
    DomainNotFound(String),
    /// Another domain already has the name.
    #[error("a domain named {0:?} already exists")]
    DomainExists(String),
    /// No edge node with that name.
    #[error("node {0} not found")]
    NodeNotFound(String),
    /// Another edge node already has the name.
    #[error("a node named {0:?} already exists")]
    NodeExists(String),
    /// Another node already has that overlay or public address.
    #[error("{address} ({field}) is already the address of node {node}")]
    NodeAddressTaken {
        /// The request field holding the address (`overlay_address`, `public_address`).
        field: String,
        /// The address.
        address: String,
        /// The node that has it.
        node: String,
    },
    /// No service with that name.
    #[error("service {0} not found")]
    ServiceNotFound(String),
    /// Another service already has the name.
    #[error("a service named {0:?} already exists")]
    ServiceExists(String),
    /// The service has no routing.
    #[error("service {0} has no routing")]
    RoutingNotFound(String),
    /// A domain, node or service is named by routings: it cannot be removed.
    #[error("the {what} {name} is named by the routing of {}", .services.join(", "))]
    InUse {
        /// `domain`, `node` or `service`.
        what: &'static str,
        /// Its name.
        name: String,
        /// The services whose routing names it, by name.
        services: Vec<String>,
    },
    /// The change was rejected by a model rule (e.g. renaming).
    #[error(transparent)]
    Invalid(#[from] model::Error),
    /// The requested events were removed by retention.
    #[error(
        "events after revision {after} have been pruned; oldest retained is {oldest_revision}"
    )]
    EventsExpired {
        /// The cursor the client sent.
        after: i64,
        /// Oldest revision still retained.
        oldest_revision: i64,
        /// Latest revision.
        latest_revision: i64,
    },
    /// The database URL has an unsupported scheme.
    #[error("unsupported database URL {0:?}; use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The SQLite database failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database cannot be reached or cannot take writes now (connection
    /// refused or lost, no connection within the acquire timeout, disk full).
    /// Clients should retry; the text is a sanitised cause, safe to show.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The writer task has stopped (the store is closing).
    #[error("the store is shutting down")]
    Closed,
}

impl StoreError {
    /// Whether this is a logical outcome (to report to the client) rather than
    /// a failure of the database: derived from [`StoreError::code`], so the two
    /// cannot disagree.
    pub fn is_logical(&self) -> bool {
        Self::is_logical_code(self.code())
    }

    /// Whether a failure with this code is the client's (the API answers 4xx)
    /// rather than the server's (5xx). The server's tests check this against
    /// its status table for every code.
    pub fn is_logical_code(code: model::ErrorCode) -> bool {
        use model::ErrorCode as C;
        !matches!(
            code,
            C::InternalError | C::ServiceUnavailable | C::ClusterUnreachable | C::DiscoveryFailed
        )
    }

    /// The public error code of this failure; the server maps it to the HTTP
    /// status. Exhaustive on purpose: a new variant must choose its code.
    pub fn code(&self) -> model::ErrorCode {
        use model::ErrorCode as C;
        match self {
            StoreError::NotFound(_) => C::ClusterNotFound,
            StoreError::AlreadyExists(_) => C::ClusterAlreadyExists,
            StoreError::ClientNotFound(_) => C::ClientNotFound,
            StoreError::ClientExists(_) => C::ClientAlreadyExists,
            StoreError::ClientHasDeployments(_) => C::ClientHasDeployments,
            StoreError::ImportRefused(_) => C::ValidationError,
            StoreError::RolloutNotFound(_) => C::RolloutNotFound,
            StoreError::RolloutConflict(_) | StoreError::RolloutUnfinished(_) => C::RolloutConflict,
            StoreError::HostNotFound(_) => C::HostNotFound,
            StoreError::HostExists(_) => C::HostAlreadyExists,
            StoreError::DeploymentNotFound(_) => C::DeploymentNotFound,
            StoreError::DeploymentExists(_) => C::DeploymentAlreadyExists,
            StoreError::SyncJobNotFound(_) => C::SyncJobNotFound,
            StoreError::LeaderHeld(_) => C::LeaderHeld,
            StoreError::HasSyncClients(_) => C::ClusterHasSyncClients,
            StoreError::NeedsConfirmation(_) => C::ConfirmationRequired,
            StoreError::PreconditionFailed { .. } => C::PreconditionFailed,
            StoreError::DomainNotFound(_) => C::DomainNotFound,
            StoreError::DomainExists(_) => C::DomainAlreadyExists,
            StoreError::NodeNotFound(_) => C::NodeNotFound,
            StoreError::NodeExists(_) => C::NodeAlreadyExists,
            StoreError::NodeAddressTaken { .. } => C::NodeAddressTaken,
            StoreError::ServiceNotFound(_) => C::ServiceNotFound,
            StoreError::ServiceExists(_) => C::ServiceAlreadyExists,
            StoreError::RoutingNotFound(_) => C::RoutingNotFound,
            StoreError::InUse { .. } => C::ResourceInUse,
            StoreError::Invalid(e) => e.code(),
            StoreError::EventsExpired { .. } => C::EventsExpired,
            StoreError::CredentialsNotFound(_) => C::CredentialsNotFound,
            // The API has always answered a duplicate token name with a 400
            // on the `name` field.
            StoreError::TokenNameTaken(_) => C::ValidationError,
            StoreError::TokenNotFound(_) => C::TokenNotFound,
            StoreError::Closed | StoreError::Unavailable(_) => C::ServiceUnavailable,
            StoreError::UnsupportedUrl(_)
            | StoreError::Database(_)
            | StoreError::Sqlite(_)
            | StoreError::Migrate(_)
            | StoreError::Corrupt(_) => C::InternalError,
        }
    }
}
