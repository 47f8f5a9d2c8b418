//! The `Store` trait: the boundary between the server and the databases.

use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleetreg_model::{
    Audit, AuditEntry, Capabilities, Cluster, ClusterFilter, ClusterPatch, ClusterStatus,
    ClusterType, Event, FleetCapabilities, FleetHealth, FleetSummary, HealthSample, NewCluster,
    Page,
};
use tokio::sync::watch;
use uuid::Uuid;

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
pub trait Store: Send + Sync + 'static {
    /// Which database this is.
    fn backend(&self) -> Backend;

    /// The durability mode in force, e.g. `sqlite journal_mode=wal synchronous=FULL`.
    fn durability(&self) -> &str;

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

    /// The latest committed revision.
    async fn latest_revision(&self) -> Result<i64, StoreError>;

    /// Removes events that occurred before `before`, never above `keep_from`
    /// (the outbox cursor); returns how many were removed.
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

    /// Notifies of each committed revision of this process's writes.
    fn watch_revision(&self) -> watch::Receiver<i64>;

    /// Stops the writer after pending writes and closes the pools.
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
}
