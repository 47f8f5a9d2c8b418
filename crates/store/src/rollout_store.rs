//! [`RolloutStore`]: canary-first rollouts, stored as one JSON document each
//! beside the columns lists filter on; and its implementation on [`SqlStore`]
//! (writes in `writer/rollout.rs`).

use crate::sql::{Row, Sql, Value};
use crate::write_tx::WriteTx;
use crate::writer::{ChangeRollout, CreateRollout, RolloutChange};
use crate::{SqlStore, StoreError};
use async_trait::async_trait;
use fleetreg_model::{Audit, Rollout, RolloutCommand, RolloutObservation, RolloutStatus};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Canary-first rollouts (a supertrait of [`crate::Store`]).
#[async_trait]
pub trait RolloutStore: Send + Sync {
    /// Stores a planned rollout (`ROLLOUT_CHANGED`, audited `rollout.start`).
    async fn create_rollout(&self, rollout: Rollout, audit: &Audit) -> Result<Rollout, StoreError>;

    /// A rollout (`RolloutNotFound`).
    async fn get_rollout(&self, id: Uuid) -> Result<Rollout, StoreError>;

    /// Rollouts, newest first, optionally of one status, at most `limit`.
    async fn list_rollouts(
        &self,
        status: Option<RolloutStatus>,
        limit: u32,
    ) -> Result<Vec<Rollout>, StoreError>;

    /// Applies an operator's command (`RolloutConflict` when the status
    /// does not allow it).
    async fn command_rollout(
        &self,
        id: Uuid,
        command: RolloutCommand,
        audit: &Audit,
    ) -> Result<Rollout, StoreError>;

    /// Feeds observations of wave `wave`'s clients (ignored unless it is
    /// still the current wave); the rollout as it is after them.
    async fn observe_rollout(
        &self,
        id: Uuid,
        wave: usize,
        seen: BTreeMap<String, RolloutObservation>,
    ) -> Result<Rollout, StoreError>;
}

fn rollout_from_row(row: &Row) -> Result<Rollout, StoreError> {
    row.json("document")
}

/// A rollout inside the write transaction (row-locked on PostgreSQL).
pub(crate) async fn load_rollout(
    tx: &mut WriteTx,
    id: Uuid,
) -> Result<Option<Rollout>, StoreError> {
    let lock = tx.dialect().lock_row;
    let sql = Sql::new(format!("SELECT document FROM rollouts WHERE id = $1{lock}")).arg(id);
    tx.fetch(&sql)
        .await?
        .first()
        .map(rollout_from_row)
        .transpose()
}

/// Writes a rollout's document and columns.
pub(crate) async fn save_rollout(tx: &mut WriteTx, rollout: &Rollout) -> Result<(), StoreError> {
    let sql =
        Sql::new("UPDATE rollouts SET status = $2, updated_at = $3, document = $4 WHERE id = $1")
            .arg(rollout.id)
            .arg(rollout.status.as_str())
            .arg(rollout.updated_at)
            .arg(Value::json(rollout)?);
    tx.execute(&sql).await?;
    Ok(())
}

#[async_trait]
impl RolloutStore for SqlStore {
    async fn create_rollout(&self, rollout: Rollout, audit: &Audit) -> Result<Rollout, StoreError> {
        self.writer.write(CreateRollout(rollout), audit).await
    }

    async fn get_rollout(&self, id: Uuid) -> Result<Rollout, StoreError> {
        let sql = Sql::new("SELECT document FROM rollouts WHERE id = $1").arg(id);
        self.fetch_optional_as(&sql, rollout_from_row)
            .await?
            .ok_or(StoreError::RolloutNotFound(id))
    }

    async fn list_rollouts(
        &self,
        status: Option<RolloutStatus>,
        limit: u32,
    ) -> Result<Vec<Rollout>, StoreError> {
        let mut sql = Sql::new("SELECT document FROM rollouts");
        if let Some(status) = status {
            sql.push(" WHERE status = ").bind(status.as_str());
        }
        sql.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .bind(i64::from(limit));
        self.fetch_as(&sql, rollout_from_row).await
    }

    async fn command_rollout(
        &self,
        id: Uuid,
        command: RolloutCommand,
        audit: &Audit,
    ) -> Result<Rollout, StoreError> {
        let change = ChangeRollout {
            id,
            change: RolloutChange::Command(command),
        };
        self.writer.write(change, audit).await
    }

    async fn observe_rollout(
        &self,
        id: Uuid,
        wave: usize,
        seen: BTreeMap<String, RolloutObservation>,
    ) -> Result<Rollout, StoreError> {
        let change = ChangeRollout {
            id,
            change: RolloutChange::Observe(wave, seen),
        };
        self.writer.write(change, &Audit::system("rollouts")).await
    }
}
