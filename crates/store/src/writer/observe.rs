//! Observations of a cluster: health status and discovered capabilities.
//! Not mutations: no revision of the cluster, no audit entry; only a state
//! transition or a capability change becomes an event.

use super::cluster::current;
use super::{Write, WriteCx};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleetreg_model::{Capabilities, ClusterStatus, Event, EventType};
use serde_json::json;
use uuid::Uuid;

/// Records a health observation (see `Store::record_status`).
pub(crate) struct RecordStatus {
    pub id: Uuid,
    pub status: ClusterStatus,
    pub last_seen_at: Option<DateTime<Utc>>,
}

#[async_trait]
impl Write for RecordStatus {
    type Reply = Option<Event>;

    fn observes(&self) -> Option<Uuid> {
        Some(self.id)
    }

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<Option<Event>, StoreError>, StoreError> {
        // The batch's observations are read together and written together
        // (`ObservationBatch`): this reads and stages in memory.
        let Some(current) = cx.tx.observed(self.id).await? else {
            return Ok(Err(StoreError::NotFound(self.id.to_string())));
        };
        let last_seen_at = self.last_seen_at.or(current.last_seen_at);
        let changed = current.state != self.status.state;
        let checked_at = self
            .status
            .checked_at
            .or(self.last_seen_at)
            .unwrap_or(cx.at);
        let sample_due = changed
            || current
                .last_sample_at
                .is_none_or(|last| checked_at - last >= cx.sample);
        cx.tx.stage_observation(
            self.id,
            &self.status,
            last_seen_at,
            sample_due.then_some(checked_at),
        )?;
        if !changed {
            return Ok(Ok(None));
        }
        let payload = json!({
            "cluster_id": self.id,
            "old_state": current.state,
            "new_state": self.status.state,
        });
        let event = cx.append_event(EventType::ClusterStatusChanged, self.id, payload)?;
        Ok(Ok(Some(event)))
    }
}

/// Records discovered capabilities (see `Store::set_capabilities`).
pub(crate) struct SetCapabilities {
    pub id: Uuid,
    pub capabilities: Capabilities,
    pub platform_version: Option<String>,
}

#[async_trait]
impl Write for SetCapabilities {
    type Reply = Option<Event>;

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<Option<Event>, StoreError>, StoreError> {
        let current = match current(cx, self.id, None).await? {
            Ok(cluster) => cluster,
            Err(not_found) => return Ok(Err(not_found)),
        };
        cx.tx
            .update_capabilities(
                self.id,
                &self.capabilities,
                self.platform_version.as_deref(),
            )
            .await?;
        let undated = |caps: &Capabilities| Capabilities {
            discovered_at: None,
            ..caps.clone()
        };
        let unchanged = current
            .capabilities
            .as_ref()
            .is_some_and(|old| undated(old) == undated(&self.capabilities));
        if unchanged {
            return Ok(Ok(None));
        }
        let payload = json!({ "cluster_id": self.id, "capabilities": self.capabilities });
        let event = cx.append_event(EventType::ClusterCapabilitiesChanged, self.id, payload)?;
        Ok(Ok(Some(event)))
    }
}
