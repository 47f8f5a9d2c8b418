//! The sync controller's stored settings (`edge_sync_settings`, one row):
//! the reconciliation interval set at run time (audited) and the schedule,
//! i.e. when every node was last sent its full configuration.

use super::{Write, WriteCx};
use crate::edge_rows::{schedule_from_row, SCHEDULE_SELECT};
use crate::edge_store::ReconcileSchedule;
use crate::sql::Sql;
use crate::StoreError;
use async_trait::async_trait;

/// The stored schedule, inside the transaction.
async fn load_schedule(cx: &mut WriteCx<'_>) -> Result<ReconcileSchedule, StoreError> {
    let rows = cx.tx.fetch(&Sql::new(SCHEDULE_SELECT)).await?;
    let row = rows
        .first()
        .ok_or_else(|| StoreError::Corrupt("edge_sync_settings has no row".into()))?;
    schedule_from_row(row)
}

/// Sets how often every node is sent its full configuration
/// (`fleetreg sync reconcile --every`), for every replica and restart;
/// audited `sync.reconcile_interval`. Zero is refused (`Invalid`).
pub(crate) struct SetReconcileEvery {
    pub every_seconds: u64,
}

#[async_trait]
impl Write for SetReconcileEvery {
    type Reply = ReconcileSchedule;

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<ReconcileSchedule, StoreError>, StoreError> {
        let action = "sync.reconcile_interval";
        let seconds = match i64::try_from(self.every_seconds) {
            Ok(seconds) if seconds > 0 => seconds,
            _ => {
                let error = fleetreg_model::Error::invalid(
                    "every_seconds",
                    "must be a positive number of seconds",
                );
                return cx.refuse(action, None, error.into()).await;
            }
        };
        let sql = Sql::new("UPDATE edge_sync_settings SET reconcile_seconds = $1 WHERE id = 1")
            .arg(seconds);
        cx.tx.execute(&sql).await?;
        cx.audit_success(action, None, None).await?;
        Ok(Ok(load_schedule(cx).await?))
    }
}

/// Starts the schedule when none was recorded (a new database): the first
/// controller's start counts as the last reconciliation, so the first one
/// is an interval later and every replica can tell when. An observation,
/// not audited. Returns the schedule.
pub(crate) struct StartReconcileSchedule;

#[async_trait]
impl Write for StartReconcileSchedule {
    type Reply = ReconcileSchedule;

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<ReconcileSchedule, StoreError>, StoreError> {
        let sql = Sql::new(
            "UPDATE edge_sync_settings SET reconciled_at = $1 WHERE id = 1 \
             AND reconciled_at IS NULL",
        )
        .arg(cx.at);
        cx.tx.execute(&sql).await?;
        Ok(Ok(load_schedule(cx).await?))
    }
}

/// Records that every node was just sent its full configuration (the
/// reconciliation's own transaction): the next is due an interval from now.
pub(crate) async fn record_reconciled(cx: &mut WriteCx<'_>) -> Result<(), StoreError> {
    let sql = Sql::new("UPDATE edge_sync_settings SET reconciled_at = $1 WHERE id = 1").arg(cx.at);
    cx.tx.execute(&sql).await?;
    Ok(())
}
