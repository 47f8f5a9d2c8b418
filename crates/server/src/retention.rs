//! Removes change-log events older than the retention period, in batches,
//! never ones the Redis outbox has yet to publish.

use crate::metrics::EVENTS_PRUNED;
use fleetreg_store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The retention worker; `tick()` does one pass so tests can drive it.
#[derive(Clone)]
pub struct Retention {
    store: Arc<dyn Store>,
    retention: Duration,
    outbox_enabled: bool,
}

impl Retention {
    /// A worker keeping `retention` of events.
    pub fn new(store: Arc<dyn Store>, retention: Duration, outbox_enabled: bool) -> Self {
        Retention {
            store,
            retention,
            outbox_enabled,
        }
    }

    /// Prunes once; returns how many events were removed.
    pub async fn tick(&self) -> Result<u64, StoreError> {
        self.prune_older_than(self.retention).await
    }

    /// Prunes events older than `age` (tests use zero).
    pub async fn prune_older_than(&self, age: Duration) -> Result<u64, StoreError> {
        // A huge retention keeps everything: plain subtraction would panic and
        // kill the worker, and dates before 1970 (no event is older) may be out
        // of the database's range.
        let epoch = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        let before = chrono::Duration::from_std(age)
            .ok()
            .and_then(|age| fleetreg_model::now().checked_sub_signed(age))
            .map_or(epoch, |before| before.max(epoch));
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
                }
            }
        }
    }
}
