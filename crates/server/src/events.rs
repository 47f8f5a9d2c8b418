//! The event hub: one task tails the change log, renders each event once as an
//! SSE frame and broadcasts it to every stream subscriber.
//!
//! A subscriber learns the hub's head together with its receiver
//! ([`Subscription`]): every frame after the head reaches the receiver, so a
//! stream that starts "now" reads nothing from the store.

use crate::metrics::EVENTS_REVISION;
use bytes::Bytes;
use fleetreg_model::{Event, EventFilter, EventType};
use fleetreg_store::{Store, StoreError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::broadcast;
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
    broadcast: Arc<Broadcast>,
}

/// The channel and the revision of the last frame sent on it, moved together
/// under one lock, so a subscriber's head and receiver agree.
struct Broadcast {
    frames: broadcast::Sender<Arc<Frame>>,
    head: Mutex<i64>,
}

impl Broadcast {
    fn head(&self) -> std::sync::MutexGuard<'_, i64> {
        self.head.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `frame` and makes its revision the head.
    fn send(&self, frame: Frame) {
        let frame = Arc::new(frame);
        let mut head = self.head();
        *head = frame.revision;
        // No receivers is fine: nobody is listening.
        let _ = self.frames.send(frame);
    }
}

/// What [`EventHub::subscribe`] gives: the frames broadcast after `head`,
/// every one of them (unless the receiver lags behind the channel).
pub struct Subscription {
    /// Receives every frame with a revision above `head`.
    pub frames: broadcast::Receiver<Arc<Frame>>,
    /// The revision of the last frame broadcast before the subscription.
    pub head: i64,
}

impl EventHub {
    /// Starts the hub's tailing task.
    pub async fn start(
        store: Arc<dyn Store>,
        shutdown: CancellationToken,
    ) -> Result<(EventHub, tokio::task::JoinHandle<()>), StoreError> {
        let (frames, _) = broadcast::channel(CHANNEL_CAPACITY);
        let latest = store.latest_revision().await?;
        let broadcast = Arc::new(Broadcast {
            frames,
            head: Mutex::new(latest),
        });
        let task = tokio::spawn(tail(store, broadcast.clone(), latest, shutdown));
        Ok((EventHub { broadcast }, task))
    }

    /// Subscribes to the frames broadcast from now on.
    pub fn subscribe(&self) -> Subscription {
        let head = self.broadcast.head();
        Subscription {
            frames: self.broadcast.frames.subscribe(),
            head: *head,
        }
    }
}

async fn tail(
    store: Arc<dyn Store>,
    broadcast: Arc<Broadcast>,
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
                        broadcast.send(render_frame(event));
                        cursor = event.revision;
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frame(revision: i64) -> Frame {
        render_frame(&Event {
            revision,
            event_type: EventType::ClusterUpdated,
            occurred_at: chrono::Utc::now(),
            resource: "cluster".into(),
            resource_id: Uuid::now_v7(),
            payload: json!({}),
        })
    }

    #[test]
    fn a_subscription_gets_every_frame_after_its_head_and_none_before() {
        let (frames, _) = broadcast::channel(16);
        let hub = EventHub {
            broadcast: Arc::new(Broadcast {
                frames,
                head: Mutex::new(3),
            }),
        };
        assert_eq!(hub.subscribe().head, 3, "the store's latest at start");
        let mut early = hub.subscribe();
        hub.broadcast.send(frame(4));
        let mut late = hub.subscribe();
        assert_eq!(late.head, 4, "the head moves with each frame sent");
        hub.broadcast.send(frame(5));
        let revisions = |live: &mut Subscription| {
            std::iter::from_fn(|| live.frames.try_recv().ok())
                .map(|frame| frame.revision)
                .collect::<Vec<_>>()
        };
        assert_eq!(revisions(&mut early), [4, 5]);
        assert_eq!(revisions(&mut late), [5]);
    }
}
