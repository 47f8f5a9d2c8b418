//! [`SyncStore`]: hosts, deployments, sync jobs, conflicts, leader leases and
//! safe deregistration (seed cluster-lifecycle-deregistration.md), and its
//! one implementation on [`SqlStore`] (SQL in `sync_rows.rs`, writes in
//! `writer/sync.rs`).

use crate::sql::Sql;
use crate::sync_rows::{
    conflict_from_row, deployment_from_row, host_from_row, job_from_row, leader_from_row,
    CONFLICT_SELECT, DEPLOYMENT_SELECT, HOST_SELECT, JOB_SELECT, LEADER_SELECT,
};
use crate::writer::{
    ClaimLeader, CreateDeployment, DeleteCluster, DeleteDeployment, FinishSync, Heartbeat,
    MarkOrphans, MoveDeployment, RecordConflict, RegisterHost, SetSync, StartSync,
};
use crate::{SqlStore, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleetreg_model::{
    Audit, ClientName, ConflictReport, Deployment, DeregistrationPreview, Host, HostCreateRequest,
    Leader, LeaderClaim, SyncConflict, SyncJob, SyncJobReport, SyncKind, SyncStatusView,
};
use uuid::Uuid;

/// Hosts, deployments and their sync (a supertrait of [`crate::Store`]).
#[async_trait]
pub trait SyncStore: Send + Sync {
    /// Registers a host under a cluster (`NotFound`, `HostExists`).
    async fn register_host(
        &self,
        cluster_id: Uuid,
        request: HostCreateRequest,
        audit: &Audit,
    ) -> Result<Host, StoreError>;

    /// A cluster's hosts by name (`NotFound` when the cluster does not exist).
    async fn list_hosts(&self, cluster_id: Uuid) -> Result<Vec<Host>, StoreError>;

    /// Records a host's heartbeat now; an orphaned host recovers
    /// (`HOST_RECOVERED`). `HostNotFound` otherwise.
    async fn heartbeat(&self, host_id: Uuid) -> Result<Host, StoreError>;

    /// Marks hosts silent since `before` orphaned (`HOST_ORPHANED` once per
    /// episode); returns those newly marked.
    async fn mark_orphaned_hosts(&self, before: DateTime<Utc>) -> Result<Vec<Host>, StoreError>;

    /// Orphaned hosts, longest silent first, at most `limit`.
    async fn orphaned_hosts(&self, limit: u32) -> Result<Vec<Host>, StoreError>;

    /// How many hosts are orphaned.
    async fn count_orphaned_hosts(&self) -> Result<u64, StoreError>;

    /// How many sync-enabled deployments have failed at least
    /// [`crate::writer::SYNC_FAILING_AFTER`] syncs in a row.
    async fn count_failing_deployments(&self) -> Result<u64, StoreError>;

    /// Places a registered client on a host (`HostNotFound`,
    /// `ClientNotFound`, `DeploymentExists`).
    async fn create_deployment(
        &self,
        host_id: Uuid,
        client: ClientName,
        container_name: String,
        sync_enabled: bool,
        audit: &Audit,
    ) -> Result<Deployment, StoreError>;

    /// A deployment (`DeploymentNotFound`).
    async fn get_deployment(&self, id: Uuid) -> Result<Deployment, StoreError>;

    /// Turns a deployment's sync on or off.
    async fn set_sync(
        &self,
        id: Uuid,
        enabled: bool,
        audit: &Audit,
    ) -> Result<Deployment, StoreError>;

    /// Moves a deployment to another host.
    async fn move_deployment(
        &self,
        id: Uuid,
        host_id: Uuid,
        audit: &Audit,
    ) -> Result<Deployment, StoreError>;

    /// Removes a deployment with its jobs and conflicts.
    async fn delete_deployment(&self, id: Uuid, audit: &Audit) -> Result<(), StoreError>;

    /// Starts a sync job (the deployment's sync must be enabled).
    async fn start_sync(
        &self,
        id: Uuid,
        kind: SyncKind,
        audit: &Audit,
    ) -> Result<SyncJob, StoreError>;

    /// Records how a running job ended; `SYNC_FAILING` after
    /// [`crate::writer::SYNC_FAILING_AFTER`] failures in a row.
    async fn finish_sync(
        &self,
        job_id: Uuid,
        report: SyncJobReport,
        audit: &Audit,
    ) -> Result<SyncJob, StoreError>;

    /// Records a conflict a deployment's sync resolved.
    async fn record_conflict(
        &self,
        deployment_id: Uuid,
        report: ConflictReport,
        audit: &Audit,
    ) -> Result<SyncConflict, StoreError>;

    /// A deployment's conflicts, newest first, at most `limit`.
    async fn list_conflicts(
        &self,
        deployment_id: Uuid,
        limit: u32,
    ) -> Result<Vec<SyncConflict>, StoreError>;

    /// Takes or renews the cluster's leader lease (`LeaderHeld` while
    /// another host's lease runs).
    async fn claim_leader(
        &self,
        cluster_id: Uuid,
        claim: LeaderClaim,
        audit: &Audit,
    ) -> Result<Leader, StoreError>;

    /// Hosts, leader, deployments and the latest `job_limit` jobs of a
    /// cluster, read in one snapshot.
    async fn sync_status(
        &self,
        cluster_id: Uuid,
        job_limit: u32,
    ) -> Result<SyncStatusView, StoreError>;

    /// Deregisters a cluster (see [`DeleteCluster`]): `HasSyncClients`,
    /// `NeedsConfirmation` unless `confirm`, or with `dry_run` the preview.
    async fn deregister_cluster(
        &self,
        id: Uuid,
        expected_revision: Option<i64>,
        confirm: bool,
        dry_run: bool,
        audit: &Audit,
    ) -> Result<DeregistrationPreview, StoreError>;
}

#[async_trait]
impl SyncStore for SqlStore {
    async fn register_host(
        &self,
        cluster_id: Uuid,
        request: HostCreateRequest,
        audit: &Audit,
    ) -> Result<Host, StoreError> {
        let write = RegisterHost {
            cluster_id,
            request,
        };
        self.writer.write(write, audit).await
    }

    async fn list_hosts(&self, cluster_id: Uuid) -> Result<Vec<Host>, StoreError> {
        let mut tx = self.engine.snapshot().await?;
        let exists = Sql::new("SELECT id FROM clusters WHERE id = $1").arg(cluster_id);
        if tx.fetch(&exists).await?.is_empty() {
            return Err(StoreError::NotFound(cluster_id.to_string()));
        }
        let sql = Sql::new(format!(
            "{HOST_SELECT} WHERE h.cluster_id = $1 ORDER BY h.hostname"
        ))
        .arg(cluster_id);
        let hosts = tx.fetch(&sql).await?.iter().map(host_from_row).collect();
        tx.commit().await?;
        hosts
    }

    async fn heartbeat(&self, host_id: Uuid) -> Result<Host, StoreError> {
        self.writer
            .write(Heartbeat(host_id), &Audit::system("heartbeat"))
            .await
    }

    async fn mark_orphaned_hosts(&self, before: DateTime<Utc>) -> Result<Vec<Host>, StoreError> {
        self.writer
            .write(MarkOrphans { before }, &Audit::system("orphans"))
            .await
    }

    async fn orphaned_hosts(&self, limit: u32) -> Result<Vec<Host>, StoreError> {
        let sql = Sql::new(format!(
            "{HOST_SELECT} WHERE h.orphaned ORDER BY COALESCE(h.last_heartbeat_at, h.created_at), h.hostname LIMIT $1"
        ))
        .arg(i64::from(limit));
        self.fetch_as(&sql, host_from_row).await
    }

    async fn count_orphaned_hosts(&self) -> Result<u64, StoreError> {
        let sql = Sql::new("SELECT COUNT(*) FROM hosts h WHERE h.orphaned");
        let n: i64 = self.engine.fetch_one(&sql).await?.get_at(0)?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    async fn count_failing_deployments(&self) -> Result<u64, StoreError> {
        let sql = Sql::new(
            "SELECT COUNT(*) FROM client_deployments d \
             WHERE d.sync_enabled AND d.consecutive_failures >= $1",
        )
        .arg(crate::writer::SYNC_FAILING_AFTER);
        let n: i64 = self.engine.fetch_one(&sql).await?.get_at(0)?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    async fn create_deployment(
        &self,
        host_id: Uuid,
        client: ClientName,
        container_name: String,
        sync_enabled: bool,
        audit: &Audit,
    ) -> Result<Deployment, StoreError> {
        let write = CreateDeployment {
            host_id,
            client,
            container_name,
            sync_enabled,
        };
        self.writer.write(write, audit).await
    }

    async fn get_deployment(&self, id: Uuid) -> Result<Deployment, StoreError> {
        let sql = Sql::new(format!("{DEPLOYMENT_SELECT} WHERE d.id = $1")).arg(id);
        self.fetch_optional_as(&sql, deployment_from_row)
            .await?
            .ok_or(StoreError::DeploymentNotFound(id))
    }

    async fn set_sync(
        &self,
        id: Uuid,
        enabled: bool,
        audit: &Audit,
    ) -> Result<Deployment, StoreError> {
        let write = SetSync {
            deployment_id: id,
            enabled,
        };
        self.writer.write(write, audit).await
    }

    async fn move_deployment(
        &self,
        id: Uuid,
        host_id: Uuid,
        audit: &Audit,
    ) -> Result<Deployment, StoreError> {
        let write = MoveDeployment {
            deployment_id: id,
            host_id,
        };
        self.writer.write(write, audit).await
    }

    async fn delete_deployment(&self, id: Uuid, audit: &Audit) -> Result<(), StoreError> {
        self.writer.write(DeleteDeployment(id), audit).await
    }

    async fn start_sync(
        &self,
        id: Uuid,
        kind: SyncKind,
        audit: &Audit,
    ) -> Result<SyncJob, StoreError> {
        let write = StartSync {
            deployment_id: id,
            kind,
        };
        self.writer.write(write, audit).await
    }

    async fn finish_sync(
        &self,
        job_id: Uuid,
        report: SyncJobReport,
        audit: &Audit,
    ) -> Result<SyncJob, StoreError> {
        self.writer
            .write(FinishSync { job_id, report }, audit)
            .await
    }

    async fn record_conflict(
        &self,
        deployment_id: Uuid,
        report: ConflictReport,
        audit: &Audit,
    ) -> Result<SyncConflict, StoreError> {
        let write = RecordConflict {
            deployment_id,
            report,
        };
        self.writer.write(write, audit).await
    }

    async fn list_conflicts(
        &self,
        deployment_id: Uuid,
        limit: u32,
    ) -> Result<Vec<SyncConflict>, StoreError> {
        self.get_deployment(deployment_id).await?;
        let sql = Sql::new(format!(
            "{CONFLICT_SELECT} WHERE x.deployment_id = $1 ORDER BY x.at DESC, x.id DESC LIMIT $2"
        ))
        .arg(deployment_id)
        .arg(i64::from(limit));
        self.fetch_as(&sql, conflict_from_row).await
    }

    async fn claim_leader(
        &self,
        cluster_id: Uuid,
        claim: LeaderClaim,
        audit: &Audit,
    ) -> Result<Leader, StoreError> {
        self.writer
            .write(ClaimLeader { cluster_id, claim }, audit)
            .await
    }

    async fn sync_status(
        &self,
        cluster_id: Uuid,
        job_limit: u32,
    ) -> Result<SyncStatusView, StoreError> {
        let mut tx = self.engine.snapshot().await?;
        let exists = Sql::new("SELECT id FROM clusters WHERE id = $1").arg(cluster_id);
        if tx.fetch(&exists).await?.is_empty() {
            return Err(StoreError::NotFound(cluster_id.to_string()));
        }
        let hosts = Sql::new(format!(
            "{HOST_SELECT} WHERE h.cluster_id = $1 ORDER BY h.hostname"
        ))
        .arg(cluster_id);
        let leader = Sql::new(format!("{LEADER_SELECT} WHERE l.cluster_id = $1")).arg(cluster_id);
        let deployments = Sql::new(format!(
            "{DEPLOYMENT_SELECT} WHERE h.cluster_id = $1 ORDER BY c.name, d.container_name"
        ))
        .arg(cluster_id);
        let jobs = Sql::new(format!(
            "{JOB_SELECT} JOIN client_deployments d ON d.id = j.deployment_id \
             JOIN hosts h ON h.id = d.host_id WHERE h.cluster_id = $1 \
             ORDER BY j.started_at DESC, j.id DESC LIMIT $2"
        ))
        .arg(cluster_id)
        .arg(i64::from(job_limit));
        let view = SyncStatusView {
            cluster_id,
            hosts: tx
                .fetch(&hosts)
                .await?
                .iter()
                .map(host_from_row)
                .collect::<Result<_, _>>()?,
            leader: tx
                .fetch(&leader)
                .await?
                .first()
                .map(leader_from_row)
                .transpose()?,
            deployments: tx
                .fetch(&deployments)
                .await?
                .iter()
                .map(deployment_from_row)
                .collect::<Result<_, _>>()?,
            recent_jobs: tx
                .fetch(&jobs)
                .await?
                .iter()
                .map(job_from_row)
                .collect::<Result<_, _>>()?,
        };
        tx.commit().await?;
        Ok(view)
    }

    async fn deregister_cluster(
        &self,
        id: Uuid,
        expected_revision: Option<i64>,
        confirm: bool,
        dry_run: bool,
        audit: &Audit,
    ) -> Result<DeregistrationPreview, StoreError> {
        let write = DeleteCluster {
            id,
            expected_revision,
            confirm,
            dry_run,
        };
        self.writer.write(write, audit).await
    }
}
