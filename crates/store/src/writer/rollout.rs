//! Starting rollouts and moving them: operators' commands and the server's
//! observations, each applied to the stored rollout inside the transaction
//! (so a command and an observation never overwrite each other).

use super::{to_json, Write, WriteCx};
use crate::rollout_store::{load_rollout, save_rollout};
use crate::sql::{Sql, Value};
use crate::StoreError;
use async_trait::async_trait;
use fleetreg_model::{EventType, Rollout, RolloutCommand, RolloutObservation};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Stores a planned rollout.
pub(crate) struct CreateRollout(pub Rollout);

#[async_trait]
impl Write for CreateRollout {
    type Reply = Rollout;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<Rollout, StoreError>, StoreError> {
        let r = &self.0;
        let busy = Sql::new(
            "SELECT id FROM rollouts WHERE app = $1 \
             AND status IN ('running', 'awaiting_promotion', 'paused')",
        )
        .arg(r.app.as_str());
        if let Some(row) = cx.tx.fetch(&busy).await?.first() {
            let other = StoreError::RolloutUnfinished(row.get("id")?);
            return cx.refuse("rollout.start", Some(r.id), other).await;
        }
        let sql = Sql::new(
            "INSERT INTO rollouts (id, app, version, status, created_at, updated_at, document) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .arg(r.id)
        .arg(r.app.as_str())
        .arg(r.version.as_str())
        .arg(r.status.as_str())
        .arg(r.created_at)
        .arg(r.updated_at)
        .arg(Value::json(r)?);
        cx.tx.execute(&sql).await?;
        let event = cx.append_event(EventType::RolloutChanged, r.id, to_json(&r.event())?)?;
        cx.audit_success("rollout.start", Some(r.id), Some(event.revision))
            .await?;
        Ok(Ok(r.clone()))
    }
}

/// What moves a rollout.
pub(crate) enum RolloutChange {
    /// An operator's command (audited; refused with `RolloutConflict`).
    Command(RolloutCommand),
    /// What the server saw of the clients of a wave (index, observations).
    Observe(usize, BTreeMap<String, RolloutObservation>),
}

/// Applies a change to a stored rollout.
pub(crate) struct ChangeRollout {
    pub id: Uuid,
    pub change: RolloutChange,
}

#[async_trait]
impl Write for ChangeRollout {
    type Reply = Rollout;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<Rollout, StoreError>, StoreError> {
        let Some(mut rollout) = load_rollout(cx.tx, self.id).await? else {
            let missing = StoreError::RolloutNotFound(self.id);
            return match &self.change {
                RolloutChange::Command(command) => {
                    cx.refuse(command.audit_action(), Some(self.id), missing)
                        .await
                }
                RolloutChange::Observe(..) => Ok(Err(missing)),
            };
        };
        let action = match &self.change {
            RolloutChange::Command(command) => {
                if let Err(conflict) = rollout.command(*command, cx.at) {
                    let refused = StoreError::RolloutConflict(conflict);
                    return cx
                        .refuse(command.audit_action(), Some(self.id), refused)
                        .await;
                }
                Some(command.audit_action())
            }
            RolloutChange::Observe(wave, seen) => {
                if !rollout.observe(*wave, seen, cx.at) {
                    return Ok(Ok(rollout));
                }
                None
            }
        };
        save_rollout(cx.tx, &rollout).await?;
        let event = cx.append_event(
            EventType::RolloutChanged,
            rollout.id,
            to_json(&rollout.event())?,
        )?;
        if let Some(action) = action {
            cx.audit_success(action, Some(rollout.id), Some(event.revision))
                .await?;
        }
        Ok(Ok(rollout))
    }
}
