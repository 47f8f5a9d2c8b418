//! Storage of the fleet: the [`Store`] trait and its one implementation,
//! [`SqlStore`], on SQLite or PostgreSQL, with migrations, the change log and
//! the audit log.
//!
//! Shape: every method is written once (`sql_store.rs` for reads,
//! `writer.rs` for the rules of writes, `write_tx.rs` for their SQL,
//! `fleet.rs` for aggregates) against [`sql::Sql`] statements and
//! [`sql::Row`]s. The SQL the two databases spell differently is in
//! `dialect.rs`; `engine/` binds values and reads rows for each database.
//!
//! Invariants:
//! - Every mutation writes its row, one change-log entry with a global, strictly
//!   increasing revision, and its audit entry in ONE transaction, and is reported
//!   done only after that transaction is durably committed. Concurrent writes are
//!   grouped into one commit by a single writer task ([`writer`]).
//! - Revisions become visible in revision order (one writer per process; across
//!   PostgreSQL replicas the `meta.revision` row lock is held until commit).
//! - Health observations update status without a revision, change-log entry or
//!   audit entry; only state transitions and capability changes become events.
//! - Audit entries form a keyed hash chain in insert order ([`audit_chain`]):
//!   dense ids and `mac = HMAC(key, prev_mac || entry)`, computed by the writer
//!   under the write lock.
//! - This crate knows nothing of HTTP.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod audit_chain;
mod client_health_rows;
mod client_rows;
mod client_store;
mod count_cache;
mod decode;
mod dialect;
mod edge_rows;
mod edge_store;
mod engine;
mod error;
mod fleet;
mod node_sync_batch;
mod observation_batch;
mod query;
mod rollout_store;
mod sql;
mod sql_store;
mod store;
mod sync_rows;
mod sync_store;
mod thread;
mod write_tx;
pub mod writer;

pub use audit_chain::{
    verify_audit_chain, AuditHead, AuditKey, AuditKeys, ChainBreak, ChainedAuditEntry,
    VerifyReport, AUDIT_KEY_PURPOSE,
};
pub use client_store::{ClientList, ClientStore};
pub use edge_store::{
    DesiredConfig, DiscoveredService, EdgeStore, LivenessChange, NodeSyncCounts, ReconcileSchedule,
    ServiceSyncReport,
};
pub use error::StoreError;
pub use rollout_store::RolloutStore;
pub use sql_store::SqlStore;
pub use store::{AuditQuery, Backend, ClusterList, EventPage, KeyUsage, Store, TokenRekey};
pub use sync_store::SyncStore;
pub use writer::{
    AuditOnly, BindCredentials, PutCredentials, RewrapCredentials, SYNC_FAILING_AFTER,
};

use fleetreg_model::Clock;
use std::sync::Arc;
use std::time::Duration;

/// Tunables of a store beyond its URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Without a state change, a cluster gets at most one health history sample
    /// per this period (`history.sample_minutes`; DESIGN.md's
    /// `history_sample_minutes`, default 5 minutes).
    pub history_sample: Duration,
    /// The audit log's MAC keys (derived from the vault's master keys); without
    /// them audit entries are written without a MAC (tests of the store only).
    pub audit_keys: Option<Arc<AuditKeys>>,
    /// Where the store reads the time: the writer's batch time (stamps of
    /// rows, events, audit entries; history sampling of observations without
    /// their own time), and expiry judged in reads. The system clock by
    /// default; tests pass a manual one. [`Store::clock`] hands it on.
    pub clock: Clock,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            history_sample: Duration::from_secs(300),
            audit_keys: None,
            clock: Clock::system(),
        }
    }
}

/// Opens the store named by `database_url` (`sqlite://path` or `postgres://…`),
/// creating the SQLite file if needed and running migrations.
pub async fn connect(database_url: &str) -> Result<Arc<dyn Store>, StoreError> {
    connect_with(database_url, StoreOptions::default()).await
}

/// [`connect`] with non-default options.
pub async fn connect_with(
    database_url: &str,
    options: StoreOptions,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SqlStore::open(database_url, options).await?))
}

/// A database URL with any password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
