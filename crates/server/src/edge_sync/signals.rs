//! [`NodeSignals`]: one `watch` channel per edge node with an open agent
//! stream on this replica, bumped by that node's `NODE_CONFIG_CHANGED` and
//! `NODE_PUSH` events. One task reads the event hub and decides from each
//! frame's type and resource id (the node's id), never its text; a change
//! that touches 1,000 nodes costs 1,000 map lookups, not 1,000 × the number
//! of streams.

use crate::events::{EventHub, Frame};
use fleetreg_model::EventType;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Wake-ups of agent streams, by node id. Cheap to clone.
#[derive(Clone, Default)]
pub struct NodeSignals {
    nodes: Arc<Mutex<HashMap<Uuid, watch::Sender<u64>>>>,
}

impl NodeSignals {
    /// Starts the task that reads `hub` and signals nodes until `shutdown`.
    pub fn start(hub: &EventHub, shutdown: CancellationToken) -> NodeSignals {
        let signals = NodeSignals::default();
        let frames = hub.subscribe().frames;
        tokio::spawn(signals.clone().run(frames, shutdown));
        signals
    }

    /// A receiver that changes whenever the node with id `node` should be
    /// sent its configuration (again).
    pub fn subscribe(&self, node: Uuid) -> watch::Receiver<u64> {
        let mut nodes = self.map();
        nodes.retain(|_, sender| sender.receiver_count() > 0);
        nodes
            .entry(node)
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe()
    }

    /// Wakes the streams of the node with id `node` on this replica, if any.
    pub fn notify(&self, node: Uuid) {
        if let Some(sender) = self.map().get(&node) {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Wakes every stream (after the hub dropped frames for a slow reader).
    fn notify_all(&self) {
        for sender in self.map().values() {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, watch::Sender<u64>>> {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn run(self, mut frames: broadcast::Receiver<Arc<Frame>>, shutdown: CancellationToken) {
        loop {
            let frame = tokio::select! {
                _ = shutdown.cancelled() => return,
                frame = frames.recv() => frame,
            };
            match frame {
                Ok(frame) => {
                    if let Some(node) = node_of(&frame) {
                        self.notify(node);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.notify_all(),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// The id of the node a `NODE_CONFIG_CHANGED` or `NODE_PUSH` frame asks to
/// send its configuration (both are about the node: their resource id is
/// its id); `None` for every other frame.
fn node_of(frame: &Frame) -> Option<Uuid> {
    matches!(
        frame.event.event_type,
        EventType::NodeConfigChanged | EventType::NodePush
    )
    .then_some(frame.event.resource_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetreg_model::Event;
    use serde_json::json;

    fn frame(event_type: EventType, node: Uuid) -> Frame {
        Frame::new(Event {
            revision: 7,
            event_type,
            occurred_at: chrono::Utc::now(),
            resource: event_type.resource().to_owned(),
            resource_id: node,
            payload: json!({"node": "vps1"}),
        })
    }

    #[test]
    fn config_and_push_frames_name_their_node_by_id() {
        let vps1 = Uuid::now_v7();
        assert_eq!(
            node_of(&frame(EventType::NodeConfigChanged, vps1)),
            Some(vps1)
        );
        assert_eq!(node_of(&frame(EventType::NodePush, vps1)), Some(vps1));
        // Other events about the node, even with the same payload, wake nothing.
        for other in [
            EventType::NodeUpdated,
            EventType::NodeSyncChanged,
            EventType::RoutingFailover,
        ] {
            assert_eq!(node_of(&frame(other, vps1)), None, "{other}");
        }
    }

    #[tokio::test]
    async fn hub_frames_wake_their_nodes_streams_only() {
        let (vps1, vps2) = (Uuid::now_v7(), Uuid::now_v7());
        let signals = NodeSignals::default();
        let mut on_vps1 = signals.subscribe(vps1);
        let mut on_vps2 = signals.subscribe(vps2);
        let (frames, receiver) = broadcast::channel(16);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(signals.clone().run(receiver, shutdown.clone()));
        frames
            .send(Arc::new(frame(EventType::NodeUpdated, vps1)))
            .unwrap();
        frames
            .send(Arc::new(frame(EventType::NodePush, vps2)))
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), on_vps2.changed())
            .await
            .expect("vps2 woken")
            .unwrap();
        assert!(
            !on_vps1.has_changed().unwrap(),
            "NODE_UPDATED wakes nothing"
        );
        frames
            .send(Arc::new(frame(EventType::NodeConfigChanged, vps1)))
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), on_vps1.changed())
            .await
            .expect("vps1 woken")
            .unwrap();
        assert!(!on_vps2.has_changed().unwrap());
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn streams_are_woken_by_id_and_forgotten_when_gone() {
        let (vps1, vps2) = (Uuid::now_v7(), Uuid::now_v7());
        let signals = NodeSignals::default();
        let mut on_vps1 = signals.subscribe(vps1);
        let on_vps2 = signals.subscribe(vps2);
        signals.notify(vps1);
        assert!(on_vps1.has_changed().unwrap());
        assert!(!on_vps2.has_changed().unwrap());
        drop(on_vps2);
        let _ = signals.subscribe(vps1);
        assert_eq!(signals.map().len(), 1);
        on_vps1.mark_unchanged();
    }
}
