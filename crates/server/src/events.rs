//! The event hub: one task tails the change log, renders each event once as an
//! SSE frame and broadcasts it to every stream subscriber.

use crate::metrics::EVENTS_REVISION;
use bytes::Bytes;
use fleetreg_model::{Event, EventFilter, EventType};
use fleetreg_store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Frames buffered per subscriber before it counts as lagging.
const CHANNEL_CAPACITY: usize = 8192;
/// How often the hub looks for events committed by other replicas.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// An event rendered once for every subscriber, with what a filtered
/// subscription (`EventFilter`) selects on beside the bytes.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The event's revision.
    pub revision: i64,
    /// The event's type.
    pub event_type: EventType,
    /// The kind of resource the event is about.
    pub resource: String,
    /// The resource's id.
    pub resource_id: Uuid,
    /// `id: …\nevent: …\ndata: …\n\n`.
    pub bytes: Bytes,
}

impl Frame {
    /// Whether a subscription with `filter` receives this frame.
    pub fn matches(&self, filter: &EventFilter) -> bool {
        filter.matches(self.event_type, &self.resource, self.resource_id)
    }
}

/// Renders an event as a server-sent-events frame.
pub fn render_frame(event: &Event) -> Frame {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    Frame {
        revision: event.revision,
        event_type: event.event_type,
        resource: event.resource.clone(),
        resource_id: event.resource_id,
        bytes: Bytes::from(format!(
            "id: {}\nevent: {}\ndata: {}\n\n",
            event.revision, event.event_type, data
        )),
    }
}

/// Handle to the hub; clone freely.
#[derive(Clone)]
pub struct EventHub {
    frames: broadcast::Sender<Arc<Frame>>,
    published: watch::Receiver<i64>,
}

impl EventHub {
    /// Starts the hub's tailing task.
    pub async fn start(
        store: Arc<dyn Store>,
        shutdown: CancellationToken,
    ) -> Result<(EventHub, tokio::task::JoinHandle<()>), StoreError> {
        let (frames, _) = broadcast::channel(CHANNEL_CAPACITY);
        let latest = store.latest_revision().await?;
        let (published_tx, published) = watch::channel(latest);
        let task = tokio::spawn(tail(store, frames.clone(), published_tx, latest, shutdown));
        Ok((EventHub { frames, published }, task))
    }

    /// Subscribes to frames broadcast from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Frame>> {
        self.frames.subscribe()
    }

    /// The highest revision broadcast so far.
    pub fn published(&self) -> i64 {
        *self.published.borrow()
    }
}

async fn tail(
    store: Arc<dyn Store>,
    frames: broadcast::Sender<Arc<Frame>>,
    published: watch::Sender<i64>,
    mut cursor: i64,
    shutdown: CancellationToken,
) {
    let mut committed = store.watch_revision();
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = committed.changed() => if changed.is_err() { return },
            _ = poll.tick() => {}
        }
        loop {
            match store.events_after(cursor, 1000).await {
                Ok(page) => {
                    let n = page.items.len();
                    for event in &page.items {
                        // No receivers is fine: nobody is listening.
                        let _ = frames.send(Arc::new(render_frame(event)));
                        cursor = event.revision;
                    }
                    published.send_replace(cursor);
                    metrics::gauge!(EVENTS_REVISION).set(cursor as f64);
                    if n < 1000 {
                        break;
                    }
                }
                Err(StoreError::EventsExpired {
                    oldest_revision, ..
                }) => {
                    tracing::error!(
                        cursor,
                        oldest_revision,
                        "event hub fell behind retention; skipping ahead"
                    );
                    cursor = oldest_revision - 1;
                }
                Err(error) => {
                    tracing::warn!(%error, "event hub could not read the change log; retrying");
                    break;
                }
            }
        }
    }
}
