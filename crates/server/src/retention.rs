//! Removes change-log events older than the retention period, in batches,
//! never ones the Redis outbox has yet to publish; and health history samples
//! older than their retention period, in batches.

use crate::metrics::EVENTS_PRUNED;
use fleetreg_store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The retention worker; `tick()` does one pass so tests can drive it. Ages
/// are measured back from the store's clock (`Store::clock`).
#[derive(Clone)]
pub struct Retention {
    store: Arc<dyn Store>,
    retention: Duration,
    outbox_enabled: bool,
    history_retention: Duration,
}

/// Default health history retention: 7 days.
const DEFAULT_HISTORY_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// `now - age`, clamped to the epoch (a huge age keeps everything).
fn cutoff(now: chrono::DateTime<chrono::Utc>, age: Duration) -> chrono::DateTime<chrono::Utc> {
    // Plain subtraction would panic and kill the worker, and dates before 1970
    // (nothing is older) may be out of the database's range.
    let epoch = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    chrono::Duration::from_std(age)
        .ok()
        .and_then(|age| now.checked_sub_signed(age))
        .map_or(epoch, |before| before.max(epoch))
}

impl Retention {
    /// A worker keeping `retention` of events.
    pub fn new(store: Arc<dyn Store>, retention: Duration, outbox_enabled: bool) -> Self {
        Retention {
            store,
            retention,
            outbox_enabled,
            history_retention: DEFAULT_HISTORY_RETENTION,
        }
    }

    /// Keeps `retention` of health history (default 7 days).
    pub fn with_history_retention(mut self, retention: Duration) -> Self {
        self.history_retention = retention;
        self
    }

    /// Prunes health history samples older than the history retention once;
    /// returns how many were removed.
    pub async fn prune_history(&self) -> Result<u64, StoreError> {
        self.store
            .prune_health_history(cutoff(self.store.clock().now(), self.history_retention))
            .await
    }

    /// Prunes once; returns how many events were removed.
    pub async fn tick(&self) -> Result<u64, StoreError> {
        self.prune_older_than(self.retention).await
    }

    /// Prunes events older than `age` (tests use zero).
    pub async fn prune_older_than(&self, age: Duration) -> Result<u64, StoreError> {
        let before = cutoff(self.store.clock().now(), age);
        let keep_from = if self.outbox_enabled {
            self.store.outbox_cursor().await?
        } else {
            i64::MAX
        };
        let removed = self.store.prune_events(before, keep_from).await?;
        metrics::counter!(EVENTS_PRUNED).increment(removed);
        Ok(removed)
    }

    /// Runs every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {
                    match self.tick().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(removed = n, "pruned old events"),
                        Err(error) => tracing::warn!(%error, "event retention failed"),
                    }
                    match self.prune_history().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(removed = n, "pruned old health history"),
                        Err(error) => tracing::warn!(%error, "health history retention failed"),
                    }
                }
            }
        }
    }
}
