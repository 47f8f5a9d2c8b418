//! Publishes committed events to Redis (`fleetreg:events`) from the change log,
//! which doubles as the outbox: the published cursor is stored only after Redis
//! took the events, so an outage delays publishing but loses nothing.

use crate::metrics::{REDIS_BACKLOG, REDIS_FAILURES, REDIS_PUBLISHED};
use fleetreg_store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The Redis channel events are published on.
pub const CHANNEL: &str = "fleetreg:events";
const BATCH: u32 = 500;
const POLL_INTERVAL: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Errors of one publishing step.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one step did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Published this many events.
    Published(usize),
    /// Nothing was waiting.
    Idle,
}

/// The publisher; `step()` does one round so tests can drive it.
pub struct Outbox {
    store: Arc<dyn Store>,
    client: redis::Client,
    connection: Option<redis::aio::MultiplexedConnection>,
}

impl Outbox {
    /// A publisher for `redis_url` (connects lazily).
    pub fn new(store: Arc<dyn Store>, redis_url: &str) -> Result<Self, OutboxError> {
        Ok(Outbox {
            store,
            client: redis::Client::open(redis_url)?,
            connection: None,
        })
    }

    /// Publishes the next batch of unpublished events, in revision order.
    pub async fn step(&mut self) -> Result<Step, OutboxError> {
        let cursor = self.store.outbox_cursor().await?;
        let page = match self.store.events_after(cursor, BATCH).await {
            Ok(page) => page,
            Err(StoreError::EventsExpired {
                oldest_revision, ..
            }) => {
                tracing::error!(
                    cursor,
                    oldest_revision,
                    "outbox cursor is behind retention; events were lost to Redis"
                );
                self.store.set_outbox_cursor(oldest_revision - 1).await?;
                return Ok(Step::Idle);
            }
            Err(e) => return Err(e.into()),
        };
        metrics::gauge!(REDIS_BACKLOG).set((page.latest_revision - cursor) as f64);
        let Some(last) = page.items.last().map(|e| e.revision) else {
            return Ok(Step::Idle);
        };
        if self.connection.is_none() {
            let timeout = Duration::from_secs(2);
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout);
            self.connection = Some(
                self.client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            );
        }
        let mut pipe = redis::pipe();
        for event in &page.items {
            let json = serde_json::to_string(event).unwrap_or_default();
            pipe.cmd("PUBLISH").arg(CHANNEL).arg(json).ignore();
        }
        if let Some(connection) = self.connection.as_mut() {
            if let Err(e) = pipe.query_async::<()>(connection).await {
                self.connection = None;
                return Err(e.into());
            }
        }
        self.store.set_outbox_cursor(last).await?;
        metrics::counter!(REDIS_PUBLISHED).increment(page.items.len() as u64);
        Ok(Step::Published(page.items.len()))
    }

    /// Runs until `shutdown`, waking on each commit, retrying with backoff.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut committed = self.store.watch_revision();
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.step().await {
                Ok(Step::Published(_)) => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ok(Step::Idle) => {
                    backoff = Duration::from_millis(100);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = committed.changed() => {}
                        _ = tokio::time::sleep(POLL_INTERVAL) => {}
                    }
                }
                Err(error) => {
                    metrics::counter!(REDIS_FAILURES).increment(1);
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "publishing events to Redis failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
