//! The `Store` trait: the boundary between the server and the databases.

use crate::writer::{AuditOnly, BindCredentials, PutCredentials, RewrapCredentials};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleetreg_model::{
    Audit, AuditEntry, Capabilities, Cluster, ClusterFilter, ClusterPatch, ClusterStatus,
    ClusterType, Event, EventFilter, ExpiringCredentials, FleetCapabilities, FleetHealth,
    FleetSummary, HealthSample, NewCluster, Page, StoredCredentials,
};
use tokio::sync::watch;
use uuid::Uuid;

/// A change of one token's stored hash (see [`Store::rekey_tokens`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRekey {
    /// The token.
    pub id: Uuid,
    /// The hash it must still have.
    pub from: String,
    /// Its new hash.
    pub to: String,
}

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite (WAL).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// Lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// One page of clusters and the revision the list was read at.
#[derive(Debug, Clone)]
pub struct ClusterList {
    /// The clusters of the page, sorted by name.
    pub items: Vec<Cluster>,
    /// How many clusters match the filter in all.
    pub total: u64,
    /// The change-log revision the list reflects.
    pub revision: i64,
}

/// A slice of the change log.
#[derive(Debug, Clone)]
pub struct EventPage {
    /// Events in revision order.
    pub items: Vec<Event>,
    /// The latest revision at the time of reading.
    pub latest_revision: i64,
    /// The highest revision the page accounts for: every event up to it that
    /// the filter matches is in the page or before it. The last item's
    /// revision when the page is full, else `latest_revision` (or the
    /// cursor, when that is ahead). Read on after it: a filter matching
    /// rarely does not make a reader scan the same revisions again.
    pub scanned_through: i64,
}

/// Filters of an audit query; all optional.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact action.
    pub action: Option<String>,
    /// The resource's id.
    pub resource_id: Option<Uuid>,
    /// Entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Entries before this time.
    pub until: Option<DateTime<Utc>>,
    /// Entries with id above this (paging).
    pub after_id: Option<i64>,
    /// At most this many entries.
    pub limit: u32,
}

/// The fleet's storage. Implemented for SQLite and PostgreSQL; both pass the
/// same contract tests.
#[async_trait]
pub trait Store:
    crate::ClientStore
    + crate::SyncStore
    + crate::RolloutStore
    + crate::EdgeStore
    + Send
    + Sync
    + 'static
{
    /// Which database this is.
    fn backend(&self) -> Backend;

    /// The durability mode in force, e.g. `sqlite journal_mode=wal synchronous=FULL`.
    fn durability(&self) -> &str;

    /// The clock this store stamps writes with and judges expiry by
    /// (`StoreOptions::clock`); the server reads the time from it too, so a
    /// test that sets it moves the whole process's notion of now.
    fn clock(&self) -> &fleetreg_model::Clock;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Registers a cluster. Fails with `AlreadyExists` when the name is taken.
    async fn insert_cluster(&self, new: NewCluster, audit: &Audit) -> Result<Cluster, StoreError>;

    /// Reads one cluster by id.
    async fn get_cluster(&self, id: Uuid) -> Result<Cluster, StoreError>;

    /// Reads one cluster by name.
    async fn find_cluster_by_name(&self, name: &str) -> Result<Option<Cluster>, StoreError>;

    /// Lists clusters matching `filter`, sorted by name, one page of them.
    async fn list_clusters(
        &self,
        filter: &ClusterFilter,
        page: Page,
    ) -> Result<ClusterList, StoreError>;

    /// The database's plans for the count and page queries of a list with
    /// `filter`, one line per plan step (for tests and diagnosis).
    async fn explain_list_clusters(&self, filter: &ClusterFilter) -> Result<String, StoreError>;

    /// Applies `patch`; with `expected_revision` fails unless it is current.
    async fn update_cluster(
        &self,
        id: Uuid,
        expected_revision: Option<i64>,
        patch: ClusterPatch,
        audit: &Audit,
    ) -> Result<Cluster, StoreError>;

    /// Removes a cluster; with `expected_revision` fails unless it is current.
    async fn delete_cluster(
        &self,
        id: Uuid,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<(), StoreError>;

    /// Records a health observation. Not a mutation: no revision, no audit; a
    /// change of `state` appends `CLUSTER_STATUS_CHANGED`, which is returned.
    async fn record_status(
        &self,
        id: Uuid,
        status: ClusterStatus,
        last_seen_at: Option<DateTime<Utc>>,
    ) -> Result<Option<Event>, StoreError>;

    /// Records discovered capabilities; appends `CLUSTER_CAPABILITIES_CHANGED`
    /// (returned) only when they differ from the stored ones, `discovered_at` aside.
    async fn set_capabilities(
        &self,
        id: Uuid,
        capabilities: Capabilities,
        platform_version: Option<String>,
    ) -> Result<Option<Event>, StoreError>;

    /// Events with revision above `after`, at most `limit`. Fails with
    /// `EventsExpired` when retention already removed events above `after`.
    async fn events_after(&self, after: i64, limit: u32) -> Result<EventPage, StoreError>;

    /// Events with revision above `after` that `filter` matches, at most
    /// `limit`, in revision order (filtered in SQL); read on after the page's
    /// `scanned_through`. Fails with `EventsExpired` like [`Store::events_after`].
    async fn events_matching(
        &self,
        after: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<EventPage, StoreError>;

    /// The latest committed revision.
    async fn latest_revision(&self) -> Result<i64, StoreError>;

    /// Removes the oldest events, up to the first that occurred at or after
    /// `before` and never above `keep_from` (the outbox cursor): always a
    /// prefix of the log, so after a clock stepped back an older event may
    /// wait for a newer one, and none that occurred after `before` goes.
    /// Returns how many were removed.
    async fn prune_events(&self, before: DateTime<Utc>, keep_from: i64) -> Result<u64, StoreError>;

    /// Health history samples of a cluster taken at or after `since`, newest
    /// first, at most `limit`; `NotFound` when the cluster does not exist.
    async fn list_health_history(
        &self,
        id: Uuid,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<HealthSample>, StoreError>;

    /// Removes health history samples taken before `before`, in batches;
    /// returns how many were removed.
    async fn prune_health_history(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The revision up to which events were published to Redis.
    async fn outbox_cursor(&self) -> Result<i64, StoreError>;

    /// Records that events up to `revision` were published.
    async fn set_outbox_cursor(&self, revision: i64) -> Result<(), StoreError>;

    /// Reads audit entries, oldest first.
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;

    /// Audit entries with their chain fields (MAC, key id), id above
    /// `after_id`, in id order, at most `limit` (for verification).
    async fn list_audit_chain(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<crate::ChainedAuditEntry>, StoreError>;

    /// The audit chain's head after each commit of this process's writer
    /// (`None` until the first sealed entry); kept outside the database by
    /// the server so a truncated tail is detected.
    fn watch_audit_head(&self) -> watch::Receiver<Option<crate::AuditHead>>;

    /// Notifies of each committed revision of this process's writes.
    fn watch_revision(&self) -> watch::Receiver<i64>;

    /// Stops the writer (writes still queued are answered `Closed`) and
    /// closes the pools.
    async fn close(&self);

    /// The fleet summary of seed 4.2, aggregated in the database in one read.
    async fn fleet_summary(&self) -> Result<FleetSummary, StoreError>;

    /// The fleet health view, aggregated in the database in one read. A cluster
    /// is stale when its `last_seen_at` is before the cutoff of its type in
    /// `stale_before` (types not listed are never stale); both lists hold at
    /// most `limit` clusters.
    async fn fleet_health(
        &self,
        stale_before: &[(ClusterType, DateTime<Utc>)],
        limit: u32,
    ) -> Result<FleetHealth, StoreError>;

    /// Discovered capabilities across the fleet, aggregated in the database.
    async fn fleet_capabilities(&self) -> Result<FleetCapabilities, StoreError>;

    /// A cluster's sealed credentials, if any (never decrypted here).
    async fn get_credentials(
        &self,
        cluster_id: Uuid,
    ) -> Result<Option<StoredCredentials>, StoreError>;

    /// Stores (replacing any) or rotates (existing required, else
    /// `CredentialsNotFound`) a cluster's sealed credentials, bumping their
    /// version, with `CLUSTER_CREDENTIALS_UPDATED` and the audit entry in the same
    /// transaction. `NotFound` when the cluster does not exist.
    async fn put_credentials(
        &self,
        put: PutCredentials,
        audit: &Audit,
    ) -> Result<StoredCredentials, StoreError>;

    /// Binds a cluster's credentials (of `bind.expected_version`, else
    /// `PreconditionFailed`) to the origins they were re-validated against,
    /// clearing `ORIGIN_CHANGED` when those are the cluster's origins now;
    /// `CLUSTER_CREDENTIALS_UPDATED` and a `credentials.rebind` audit entry in
    /// the same transaction. `NotFound`, `CredentialsNotFound` otherwise.
    async fn bind_credentials(
        &self,
        bind: BindCredentials,
        audit: &Audit,
    ) -> Result<StoredCredentials, StoreError>;

    /// Deletes a cluster's credentials (`CredentialsNotFound` when there are
    /// none), with the event and audit entry in the same transaction.
    async fn delete_credentials(&self, cluster_id: Uuid, audit: &Audit) -> Result<(), StoreError>;

    /// Appends an audit entry on its own (credential validation, decryption).
    async fn append_audit(&self, entry: AuditOnly, audit: &Audit) -> Result<(), StoreError>;

    /// Credentials expiring before `before` (or already expired), soonest
    /// first, at most `limit`.
    async fn expiring_credentials(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ExpiringCredentials>, StoreError>;

    /// How many clusters have credentials expiring before `before` (incl. expired).
    async fn count_expiring_credentials(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Creates an API token stored by `hash` (audited as `token.create`); with
    /// `replace`, a token of the same name is replaced (bootstrap). Fails with
    /// `TokenNameTaken` otherwise.
    async fn create_token(
        &self,
        token: fleetreg_model::ApiToken,
        hash: String,
        replace: bool,
        audit: &Audit,
    ) -> Result<fleetreg_model::ApiToken, StoreError>;

    /// Revokes a token (audited as `token.revoke`); `TokenNotFound` when there
    /// is no active token with that id.
    async fn revoke_token(&self, id: Uuid, audit: &Audit) -> Result<(), StoreError>;

    /// The token whose hash is `hash`, if any (active or not).
    async fn find_token(&self, hash: &str) -> Result<Option<fleetreg_model::ApiToken>, StoreError>;

    /// Every token, oldest first (never the tokens themselves).
    async fn list_tokens(&self) -> Result<Vec<fleetreg_model::ApiToken>, StoreError>;

    /// Every token's id and stored hash (for re-keying the stored form).
    async fn token_hashes(&self) -> Result<Vec<(Uuid, String)>, StoreError>;

    /// Replaces stored token hashes: each [`TokenRekey`] only while its token
    /// still has the hash `from` (audited as `token.rekey` per changed token).
    /// Returns how many were changed.
    async fn rekey_tokens(
        &self,
        changes: Vec<TokenRekey>,
        audit: &Audit,
    ) -> Result<u64, StoreError>;

    /// The database's identity: a random id created with the schema (16 hex
    /// digits), kept by copies and backups, new for a new (or reset) database.
    async fn database_id(&self) -> Result<String, StoreError>;

    /// The vault canary (a known value sealed with the master key), if set.
    async fn vault_canary(&self) -> Result<Option<String>, StoreError>;

    /// Records the vault canary unless one exists; true when it was recorded.
    async fn init_vault_canary(&self, sealed: &str, key_id: &str) -> Result<bool, StoreError>;

    /// Replaces (or records) the vault canary after a master-key rotation,
    /// audited as `vault.canary`.
    async fn replace_vault_canary(
        &self,
        sealed: &str,
        key_id: &str,
        audit: &Audit,
    ) -> Result<(), StoreError>;

    /// Sealed credentials of every cluster with an id above `after`, in id
    /// order, at most `limit` (paging through them to re-wrap).
    async fn list_sealed_credentials(
        &self,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<StoredCredentials>, StoreError>;

    /// Replaces a cluster's sealed map and key id with re-wrapped envelopes of
    /// the same secrets, only while its version is still the expected one:
    /// false when they were replaced, rotated or deleted meanwhile (nothing
    /// written). Keeps the version, appends no event, audits `vault.rewrap`.
    async fn rewrap_credentials(
        &self,
        rewrap: RewrapCredentials,
        audit: &Audit,
    ) -> Result<bool, StoreError>;

    /// How many clusters and envelopes each master key id wraps, by key id.
    async fn credential_key_usage(&self) -> Result<Vec<KeyUsage>, StoreError>;
}

/// How much stored data one master key wraps (see `Store::credential_key_usage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    /// The master key id.
    pub key_id: String,
    /// Clusters whose credentials it wraps.
    pub clusters: u64,
    /// Envelopes (sealed fields) it wraps.
    pub envelopes: u64,
}
