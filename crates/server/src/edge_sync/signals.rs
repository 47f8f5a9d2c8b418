//! [`NodeSignals`]: one `watch` channel per edge node with an open agent
//! stream on this replica, bumped by that node's `NODE_CONFIG_CHANGED` and
//! `NODE_PUSH` events. One task reads the event hub; a change that touches
//! 1,000 nodes costs 1,000 map lookups, not 1,000 × the number of streams.

use crate::events::{EventHub, Frame};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// Wake-ups of agent streams, by node name. Cheap to clone.
#[derive(Clone, Default)]
pub struct NodeSignals {
    nodes: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

impl NodeSignals {
    /// Starts the task that reads `hub` and signals nodes until `shutdown`.
    pub fn start(hub: &EventHub, shutdown: CancellationToken) -> NodeSignals {
        let signals = NodeSignals::default();
        let frames = hub.subscribe();
        tokio::spawn(signals.clone().run(frames, shutdown));
        signals
    }

    /// A receiver that changes whenever `node` should be sent its
    /// configuration (again).
    pub fn subscribe(&self, node: &str) -> watch::Receiver<u64> {
        let mut nodes = self.map();
        nodes.retain(|_, sender| sender.receiver_count() > 0);
        nodes
            .entry(node.to_owned())
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe()
    }

    /// Wakes `node`'s streams on this replica, if any.
    pub fn notify(&self, node: &str) {
        if let Some(sender) = self.map().get(node) {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Wakes every stream (after the hub dropped frames for a slow reader).
    fn notify_all(&self) {
        for sender in self.map().values() {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
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
                    if let Some(node) = node_of(&frame.bytes) {
                        self.notify(&node);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.notify_all(),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// The node a rendered `NODE_CONFIG_CHANGED` or `NODE_PUSH` frame is about.
fn node_of(frame: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(frame).ok()?;
    let mut event_type = None;
    let mut data = None;
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("event: ") {
            event_type = Some(value);
        } else if let Some(value) = line.strip_prefix("data: ") {
            data = Some(value);
        }
    }
    if !matches!(event_type?, "NODE_CONFIG_CHANGED" | "NODE_PUSH") {
        return None;
    }
    let event: serde_json::Value = serde_json::from_str(data?).ok()?;
    event
        .pointer("/payload/node")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_node_of_config_and_push_frames_only() {
        let frame = |t: &str| {
            format!(
                "id: 7\nevent: {t}\ndata: {{\"revision\":7,\"type\":\"{t}\",\"payload\":{{\"node\":\"vps1\"}}}}\n\n"
            )
        };
        assert_eq!(
            node_of(frame("NODE_CONFIG_CHANGED").as_bytes()).as_deref(),
            Some("vps1")
        );
        assert_eq!(
            node_of(frame("NODE_PUSH").as_bytes()).as_deref(),
            Some("vps1")
        );
        assert_eq!(node_of(frame("NODE_UPDATED").as_bytes()), None);
        assert_eq!(node_of(b"garbage"), None);
    }

    #[tokio::test]
    async fn streams_are_woken_by_name_and_forgotten_when_gone() {
        let signals = NodeSignals::default();
        let mut vps1 = signals.subscribe("vps1");
        let vps2 = signals.subscribe("vps2");
        signals.notify("vps1");
        assert!(vps1.has_changed().unwrap());
        assert!(!vps2.has_changed().unwrap());
        drop(vps2);
        let _ = signals.subscribe("vps1");
        assert_eq!(signals.map().len(), 1);
        vps1.mark_unchanged();
    }
}
