//! The HTTP check through an edge node (issue 13 item 10, health-driven
//! failover): the sync controller's record of a change of its outcome.

use super::edge::reroute_if_flipped;
use super::{Write, WriteCx};
use crate::StoreError;
use async_trait::async_trait;
use fleetreg_model::{DnsLabel, EventType, NodeSync, MAX_CHECK_ERROR};
use serde_json::json;

/// The HTTP check through `node` changed its outcome (the controller writes
/// only changes): failing makes the node down, passing makes it up again
/// while its heartbeats arrive. Routes fail over or move back in the same
/// transaction (`ROUTING_FAILOVER` per moved hostname, each audited
/// `routing.failover`, reason `check_failed` or `check_passed`), and
/// `NODE_SYNC_CHANGED` (payload `{node, check_ok, check_error, up, sync}`)
/// records the change. The outcome already stored changes nothing.
pub(crate) struct RecordNodeCheck {
    pub node: DnsLabel,
    pub ok: bool,
    /// Why it failed (kept at most [`MAX_CHECK_ERROR`] characters, control
    /// characters removed); ignored when `ok`.
    pub error: Option<String>,
}

#[async_trait]
impl Write for RecordNodeCheck {
    type Reply = NodeSync;

    fn reads_node_sync(&self) -> Option<&str> {
        Some(self.node.as_str())
    }

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<NodeSync, StoreError>, StoreError> {
        let Some((id, before)) = cx.tx.node_sync(&self.node).await? else {
            return Ok(Err(StoreError::NodeNotFound(self.node.to_string())));
        };
        if before.check_ok == self.ok {
            return Ok(Ok(before));
        }
        let up = before.heartbeat_ok && self.ok;
        let reason = if self.ok {
            "check_passed"
        } else {
            "check_failed"
        };
        let (desired_revision, push_attempts) =
            reroute_if_flipped(cx, id, &before, up, reason).await?;
        let after = NodeSync {
            up,
            check_ok: self.ok,
            check_error: (!self.ok).then(|| check_error(self.error.as_deref())),
            check_changed_at: Some(cx.at),
            desired_revision,
            push_attempts,
            ..before
        };
        cx.tx.stage_node_sync(id, &after);
        let payload = json!({
            "node": after.node,
            "check_ok": after.check_ok,
            "check_error": after.check_error,
            "up": after.up,
            "sync": after,
        });
        cx.append_event(EventType::NodeSyncChanged, id, payload)?;
        Ok(Ok(after))
    }
}

/// A check's error as kept: control characters removed, at most
/// [`MAX_CHECK_ERROR`] characters.
fn check_error(text: Option<&str>) -> String {
    let kept: String = text
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_CHECK_ERROR)
        .collect();
    if kept.trim().is_empty() {
        "failed".to_owned()
    } else {
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_bounded_and_printable() {
        assert_eq!(check_error(None), "failed");
        assert_eq!(check_error(Some("\n\t")), "failed");
        assert_eq!(
            check_error(Some("connect:\u{1b}[31m refused\r\n")),
            "connect:[31m refused"
        );
        let long = "x".repeat(MAX_CHECK_ERROR + 10);
        assert_eq!(check_error(Some(&long)).len(), MAX_CHECK_ERROR);
    }
}
