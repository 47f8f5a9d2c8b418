//! Storage of the fleet: the [`Store`] trait and its SQLite and PostgreSQL
//! implementations, with migrations, the change log and the audit log.
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
//! - This crate knows nothing of HTTP.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod count_cache;
mod decode;
mod error;
mod fleet;
mod postgres;
mod query;
mod sqlite;
mod store;
pub mod writer;

pub use error::StoreError;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use store::{AuditQuery, Backend, ClusterList, EventPage, Store};

use std::sync::Arc;

/// Opens the store named by `database_url` (`sqlite://path` or `postgres://…`),
/// creating the SQLite file if needed and running migrations.
pub async fn connect(database_url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if database_url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(database_url).await?))
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::open(database_url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(redact_url(database_url)))
    }
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
