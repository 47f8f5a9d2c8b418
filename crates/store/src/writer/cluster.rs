//! Registering, updating and deleting clusters.

use super::{check_revision, to_json, Write, WriteCx};
use crate::sync_rows::{cascade_of, sync_clients};
use crate::StoreError;
use async_trait::async_trait;
use fleetreg_model::{Cluster, ClusterPatch, DeregistrationPreview, EventType, NewCluster};
use serde_json::json;
use uuid::Uuid;

/// Registers a cluster (`AlreadyExists` when the name is taken).
pub(crate) struct InsertCluster(pub NewCluster);

#[async_trait]
impl Write for InsertCluster {
    type Reply = Cluster;

    fn registers(&self) -> Option<&str> {
        Some(self.0.name.as_str())
    }

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<Cluster, StoreError>, StoreError> {
        let action = "cluster.create";
        let cluster = self
            .0
            .clone()
            .into_cluster(Uuid::now_v7(), cx.upcoming_revision(), cx.at);
        if !cx.tx.insert_cluster(&cluster).await? {
            let taken = StoreError::AlreadyExists(self.0.name.to_string());
            return cx.refuse(action, None, taken).await;
        }
        let event =
            cx.append_event(EventType::ClusterRegistered, cluster.id, to_json(&cluster)?)?;
        cx.audit_success(action, Some(cluster.id), Some(event.revision))
            .await?;
        Ok(Ok(cluster))
    }
}

/// Applies a patch, optionally guarded by the expected revision.
pub(crate) struct UpdateCluster {
    pub id: Uuid,
    pub expected_revision: Option<i64>,
    pub patch: ClusterPatch,
}

#[async_trait]
impl Write for UpdateCluster {
    type Reply = Cluster;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<Cluster, StoreError>, StoreError> {
        let action = "cluster.update";
        let mut cluster = match current(cx, self.id, self.expected_revision).await? {
            Ok(cluster) => cluster,
            Err(refused) => return cx.refuse(action, Some(self.id), refused).await,
        };
        let before = cluster.clone();
        match self.patch.apply(&mut cluster) {
            Err(invalid) => {
                cx.refuse(action, Some(self.id), StoreError::Invalid(invalid))
                    .await
            }
            // Nothing changed: no revision, no event, no audit entry.
            Ok(false) => Ok(Ok(cluster)),
            Ok(true) => {
                let moved_urls = cluster.api_server_url != before.api_server_url
                    || cluster.endpoints != before.endpoints;
                cluster.revision = cx.upcoming_revision();
                cluster.updated_at = cx.at;
                cx.tx.update_cluster(&cluster).await?;
                let event =
                    cx.append_event(EventType::ClusterUpdated, cluster.id, to_json(&cluster)?)?;
                cx.audit_success(action, Some(cluster.id), Some(event.revision))
                    .await?;
                if moved_urls {
                    // Same transaction: no check ever sees the new URL with
                    // credentials still bound.
                    super::credentials::unbind_if_moved(cx, &cluster).await?;
                }
                Ok(Ok(cluster))
            }
        }
    }
}

/// Deregisters a cluster, optionally guarded by the expected revision:
/// refused while deployments on its hosts sync (`HasSyncClients`, checked in
/// the same transaction as the delete, under the cluster's row lock), and,
/// when hosts, deployments, jobs, conflicts or leases would go with it, unless
/// `confirm` (`NeedsConfirmation` carries the preview). With `dry_run` only
/// the preview is made.
pub(crate) struct DeleteCluster {
    pub id: Uuid,
    pub expected_revision: Option<i64>,
    pub confirm: bool,
    pub dry_run: bool,
}

#[async_trait]
impl Write for DeleteCluster {
    type Reply = DeregistrationPreview;

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<DeregistrationPreview, StoreError>, StoreError> {
        let action = "cluster.delete";
        if let Err(refused) = current(cx, self.id, self.expected_revision).await? {
            return cx.refuse(action, Some(self.id), refused).await;
        }
        let syncing = sync_clients(cx.tx, self.id).await?;
        if !syncing.is_empty() {
            let blocked = StoreError::HasSyncClients(syncing);
            return cx.refuse(action, Some(self.id), blocked).await;
        }
        let mut preview = cascade_of(cx.tx, self.id).await?;
        if self.dry_run {
            preview.dry_run = true;
            return Ok(Ok(preview));
        }
        if preview.cascades() && !self.confirm {
            let unconfirmed = StoreError::NeedsConfirmation(Box::new(preview));
            return cx.refuse(action, Some(self.id), unconfirmed).await;
        }
        cx.tx.delete_cluster(self.id).await?;
        // Seed 6: `CLUSTER_DELETED` carries the id only; what went with the
        // cluster is in the preview the caller saw and in the audit log.
        let payload = json!({ "cluster_id": self.id });
        let event = cx.append_event(EventType::ClusterDeleted, self.id, payload)?;
        cx.audit_success(action, Some(self.id), Some(event.revision))
            .await?;
        Ok(Ok(preview))
    }
}

/// The cluster as stored, or why the write is refused: `NotFound`, or
/// `PreconditionFailed` when `expected_revision` is not current.
pub(super) async fn current(
    cx: &mut WriteCx<'_>,
    id: Uuid,
    expected_revision: Option<i64>,
) -> Result<Result<Cluster, StoreError>, StoreError> {
    Ok(match cx.tx.load_cluster(id).await? {
        None => Err(StoreError::NotFound(id.to_string())),
        Some(cluster) => check_revision(expected_revision, cluster.revision, id).map(|()| cluster),
    })
}
