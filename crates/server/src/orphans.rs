//! Marks hosts orphaned when their heartbeat is older than
//! `sync.orphan_after_seconds` (seed: "Alert on orphaned hosts (heartbeat >
//! 5 min)"): one `HOST_ORPHANED` event per episode; a heartbeat ends it
//! (`HOST_RECOVERED`).

use crate::settings::SyncConfig;
use fleetreg_store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The orphan watcher; `tick()` does one pass so tests can drive it. Ages
/// are measured back from the store's clock.
#[derive(Clone)]
pub struct OrphanWatch {
    store: Arc<dyn Store>,
    after: chrono::Duration,
}

impl OrphanWatch {
    /// A watcher with the `sync:` settings.
    pub fn new(store: Arc<dyn Store>, config: &SyncConfig) -> Self {
        let seconds = i64::try_from(config.orphan_after_seconds).unwrap_or(i64::MAX);
        OrphanWatch {
            store,
            after: chrono::Duration::try_seconds(seconds).unwrap_or(chrono::Duration::MAX),
        }
    }

    /// Marks the hosts silent for too long; how many became orphaned.
    pub async fn tick(&self) -> Result<usize, StoreError> {
        let now = self.store.clock().now();
        let Some(before) = now.checked_sub_signed(self.after) else {
            return Ok(0);
        };
        let hosts = self.store.mark_orphaned_hosts(before).await?;
        for host in &hosts {
            tracing::warn!(host = %host.id, hostname = %host.hostname, cluster = %host.cluster_id,
                "host orphaned: no heartbeat");
        }
        Ok(hosts.len())
    }

    /// Runs every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {
                    if let Err(error) = self.tick().await {
                        tracing::warn!(%error, "orphaned-host check failed");
                    }
                }
            }
        }
    }
}
