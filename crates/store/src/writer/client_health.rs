//! Observations of a client's live health (the periodic URL checks). Like a
//! cluster's health status, not a mutation: no revision of the client, no
//! history row, no audit entry; only a change of state becomes an event.

use super::{Write, WriteCx};
use crate::client_health_rows::{load_client_by_id, recorded_state, upsert_health};
use crate::StoreError;
use async_trait::async_trait;
use fleetreg_model::{ClientHealth, ClientHealthState, ClientStatus, Event, EventType};
use serde_json::json;

/// Records a client's live health (see `ClientStore::record_client_health`).
pub(crate) struct RecordClientHealth(pub ClientHealth);

#[async_trait]
impl Write for RecordClientHealth {
    type Reply = Option<Event>;

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<Option<Event>, StoreError>, StoreError> {
        let health = &self.0;
        let Some(client) = load_client_by_id(cx.tx, health.client_id).await? else {
            return Ok(Err(StoreError::ClientNotFound(health.client.to_string())));
        };
        // A check that finished after the client left `deployed` (e.g. for
        // maintenance, which takes it down) says nothing about it now.
        if client.spec.status != ClientStatus::Deployed {
            return Ok(Ok(None));
        }
        let old_state = recorded_state(cx.tx, client.id)
            .await?
            .unwrap_or(ClientHealthState::NotChecked);
        upsert_health(cx.tx, health).await?;
        if old_state == health.state {
            return Ok(Ok(None));
        }
        let payload = json!({
            "client_id": client.id,
            "name": client.name,
            "old_state": old_state,
            "new_state": health.state,
            "health": health,
        });
        let event = cx.append_event(EventType::ClientHealthChanged, client.id, payload)?;
        Ok(Ok(Some(event)))
    }
}
