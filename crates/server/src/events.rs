//! The event hub: one task tails the change log and broadcasts each event to
//! every subscriber (event streams, the health scheduler, edge sync); a
//! stream's SSE frame is rendered once, by the first stream that sends it.
//!
//! A subscriber learns the hub's head together with its receiver
//! ([`Subscription`]): every frame after the head reaches the receiver, so a
//! stream that starts "now" reads nothing from the store.

use crate::metrics::EVENTS_REVISION;
use bytes::Bytes;
use fleetreg_model::{Event, EventFilter};
use fleetreg_store::{Store, StoreError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Frames buffered per subscriber before it counts as lagging.
const CHANNEL_CAPACITY: usize = 8192;
/// How often the hub looks for events committed by other replicas.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// An event as the hub broadcasts it: the event itself, for subscribers that
/// act on it (the health scheduler, edge sync), and its server-sent-events
/// frame, rendered on first use and then shared by every stream (never, when
/// no stream is open).
#[derive(Debug)]
pub struct Frame {
    /// The event.
    pub event: Event,
    rendered: OnceLock<Bytes>,
}

impl Frame {
    /// A frame of `event`, not rendered yet.
    pub fn new(event: Event) -> Frame {
        Frame {
            event,
            rendered: OnceLock::new(),
        }
    }

    /// The event's revision.
    pub fn revision(&self) -> i64 {
        self.event.revision
    }

    /// Whether a subscription with `filter` receives this frame.
    pub fn matches(&self, filter: &EventFilter) -> bool {
        let event = &self.event;
        filter.matches(event.event_type, &event.resource, event.resource_id)
    }

    /// `id: …\nevent: …\ndata: …\n\n`, rendered once for all streams.
    pub fn bytes(&self) -> Bytes {
        self.rendered.get_or_init(|| render(&self.event)).clone()
    }
}

/// Renders an event as a server-sent-events frame.
pub fn render(event: &Event) -> Bytes {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        event.revision, event.event_type, data
    ))
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
        *head = frame.revision();
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
                    for event in page.items {
                        cursor = event.revision;
                        broadcast.send(Frame::new(event));
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
    use fleetreg_model::EventType;
    use serde_json::json;
    use uuid::Uuid;

    fn frame(revision: i64) -> Frame {
        Frame::new(Event {
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
                .map(|frame| frame.revision())
                .collect::<Vec<_>>()
        };
        assert_eq!(revisions(&mut early), [4, 5]);
        assert_eq!(revisions(&mut late), [5]);
    }

    #[test]
    fn a_frame_is_rendered_on_first_use_once_for_every_stream() {
        let frame = frame(9);
        assert!(
            frame.rendered.get().is_none(),
            "nothing rendered until a stream asks"
        );
        let first = frame.bytes();
        assert!(first.starts_with(b"id: 9\nevent: CLUSTER_UPDATED\ndata: {"));
        assert_eq!(first, render(&frame.event));
        assert_eq!(frame.bytes().as_ptr(), first.as_ptr(), "one buffer, shared");
    }
}
