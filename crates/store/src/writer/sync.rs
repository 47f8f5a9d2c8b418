//! Hosts, deployments, sync jobs, conflicts and leader leases. API changes
//! append an event and an audit entry; heartbeats and orphan marking are
//! observations (an event only when a host becomes orphaned or recovers).

use super::{to_json, Write, WriteCx};
use crate::client_rows::load_client;
use crate::sql::Sql;
use crate::sync_rows::{
    fetch_all, fetch_first, host_from_row, job_from_row, leader_from_row, load_deployment,
    load_host, lock_cluster, HOST_SELECT, JOB_SELECT, LEADER_SELECT,
};
use crate::StoreError;
use async_trait::async_trait;
use chrono::Duration;
use fleetreg_model::{
    ClientName, ConflictReport, Deployment, EventType, Host, HostCreateRequest, Leader,
    LeaderClaim, SyncConflict, SyncJob, SyncJobReport, SyncKind, SyncStatus,
};
use serde_json::json;
use uuid::Uuid;

/// Failed syncs in a row that make a deployment `SYNC_FAILING`.
pub const SYNC_FAILING_AFTER: i64 = 3;

/// Registers a host under a cluster.
pub(crate) struct RegisterHost {
    pub cluster_id: Uuid,
    pub request: HostCreateRequest,
}

#[async_trait]
impl Write for RegisterHost {
    type Reply = Host;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<Host, StoreError>, StoreError> {
        let action = "host.create";
        if !lock_cluster(cx.tx, self.cluster_id).await? {
            let missing = StoreError::NotFound(self.cluster_id.to_string());
            return cx.refuse(action, Some(self.cluster_id), missing).await;
        }
        let host = Host {
            id: Uuid::now_v7(),
            cluster_id: self.cluster_id,
            hostname: self.request.hostname.clone(),
            address: self.request.address.clone(),
            last_heartbeat_at: None,
            orphaned: false,
            created_at: cx.at,
        };
        let sql = Sql::new(
            "INSERT INTO hosts (id, cluster_id, hostname, address, orphaned, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (cluster_id, hostname) DO NOTHING",
        )
        .arg(host.id)
        .arg(host.cluster_id)
        .arg(host.hostname.as_str())
        .arg(&host.address)
        .arg(false)
        .arg(host.created_at);
        if cx.tx.execute(&sql).await? == 0 {
            let taken = StoreError::HostExists(host.hostname.clone());
            return cx.refuse(action, Some(self.cluster_id), taken).await;
        }
        let event = cx.append_event(EventType::HostRegistered, host.id, to_json(&host)?)?;
        cx.audit_success(action, Some(host.id), Some(event.revision))
            .await?;
        Ok(Ok(host))
    }
}

/// A host's heartbeat: stamps `last_heartbeat_at`; an orphaned host recovers.
pub(crate) struct Heartbeat(pub Uuid);

#[async_trait]
impl Write for Heartbeat {
    type Reply = Host;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<Host, StoreError>, StoreError> {
        let Some(mut host) = load_host(cx.tx, self.0).await? else {
            return Ok(Err(StoreError::HostNotFound(self.0)));
        };
        let sql = Sql::new("UPDATE hosts SET last_heartbeat_at = $2, orphaned = $3 WHERE id = $1")
            .arg(host.id)
            .arg(cx.at)
            .arg(false);
        cx.tx.execute(&sql).await?;
        let recovered = host.orphaned;
        host.last_heartbeat_at = Some(cx.at);
        host.orphaned = false;
        if recovered {
            cx.append_event(EventType::HostRecovered, host.id, to_json(&host)?)?;
        }
        Ok(Ok(host))
    }
}

/// Marks hosts without a heartbeat since `before` (or, never having sent
/// one, registered before it) orphaned: one `HOST_ORPHANED` per episode.
pub(crate) struct MarkOrphans {
    pub before: chrono::DateTime<chrono::Utc>,
}

#[async_trait]
impl Write for MarkOrphans {
    type Reply = Vec<Host>;

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<Vec<Host>, StoreError>, StoreError> {
        let sql = Sql::new(
            "UPDATE hosts SET orphaned = $1 WHERE orphaned = $2 \
             AND COALESCE(last_heartbeat_at, created_at) < $3 \
             RETURNING id, cluster_id, hostname, address, last_heartbeat_at, orphaned, created_at",
        )
        .arg(true)
        .arg(false)
        .arg(self.before);
        let hosts = fetch_all(cx.tx, &sql, host_from_row).await?;
        for host in &hosts {
            cx.append_event(EventType::HostOrphaned, host.id, to_json(host)?)?;
        }
        Ok(Ok(hosts))
    }
}

/// Places a registered client on a host.
pub(crate) struct CreateDeployment {
    pub host_id: Uuid,
    pub client: ClientName,
    pub container_name: String,
    pub sync_enabled: bool,
}

#[async_trait]
impl Write for CreateDeployment {
    type Reply = Deployment;

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<Deployment, StoreError>, StoreError> {
        let action = "deployment.create";
        let Some(host) = load_host(cx.tx, self.host_id).await? else {
            let missing = StoreError::HostNotFound(self.host_id);
            return cx.refuse(action, Some(self.host_id), missing).await;
        };
        lock_cluster(cx.tx, host.cluster_id).await?;
        let Some(client) = load_client(cx.tx, self.client.as_str()).await? else {
            let missing = StoreError::ClientNotFound(self.client.to_string());
            return cx.refuse(action, Some(self.host_id), missing).await;
        };
        let id = Uuid::now_v7();
        let sql = Sql::new(
            "INSERT INTO client_deployments (id, host_id, client_id, container_name, sync_enabled, \
             last_sync_status, consecutive_failures, created_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7) \
             ON CONFLICT (host_id, container_name) DO NOTHING",
        )
        .arg(id)
        .arg(host.id)
        .arg(client.id)
        .arg(self.container_name.as_str())
        .arg(self.sync_enabled)
        .arg(SyncStatus::Pending.as_str())
        .arg(cx.at);
        if cx.tx.execute(&sql).await? == 0 {
            let taken = StoreError::DeploymentExists(self.container_name.clone());
            return cx.refuse(action, Some(self.host_id), taken).await;
        }
        changed(cx, id, "created", action).await
    }
}

/// Turns a deployment's sync on or off (off: `last_sync_status` `stopped`).
pub(crate) struct SetSync {
    pub deployment_id: Uuid,
    pub enabled: bool,
}

#[async_trait]
impl Write for SetSync {
    type Reply = Deployment;

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<Deployment, StoreError>, StoreError> {
        let action = if self.enabled {
            "deployment.enable_sync"
        } else {
            "deployment.pause_sync"
        };
        let deployment = match existing(cx, self.deployment_id, action).await? {
            Ok(deployment) => deployment,
            Err(refused) => return Ok(Err(refused)),
        };
        lock_cluster(cx.tx, deployment.cluster_id).await?;
        if deployment.sync_enabled == self.enabled {
            return Ok(Ok(deployment));
        }
        let status = match (self.enabled, deployment.last_sync_status) {
            (false, _) => SyncStatus::Stopped,
            (true, SyncStatus::Stopped) => SyncStatus::Pending,
            (true, other) => other,
        };
        let sql = Sql::new(
            "UPDATE client_deployments SET sync_enabled = $2, last_sync_status = $3 WHERE id = $1",
        )
        .arg(deployment.id)
        .arg(self.enabled)
        .arg(status.as_str());
        cx.tx.execute(&sql).await?;
        let what = if self.enabled {
            "sync_enabled"
        } else {
            "sync_paused"
        };
        changed(cx, deployment.id, what, action).await
    }
}

/// Moves a deployment to another host (seed remediation: migrate).
pub(crate) struct MoveDeployment {
    pub deployment_id: Uuid,
    pub host_id: Uuid,
}

#[async_trait]
impl Write for MoveDeployment {
    type Reply = Deployment;

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<Deployment, StoreError>, StoreError> {
        let action = "deployment.move";
        let deployment = match existing(cx, self.deployment_id, action).await? {
            Ok(deployment) => deployment,
            Err(refused) => return Ok(Err(refused)),
        };
        let Some(target) = load_host(cx.tx, self.host_id).await? else {
            let missing = StoreError::HostNotFound(self.host_id);
            return cx.refuse(action, Some(deployment.id), missing).await;
        };
        if target.id == deployment.host_id {
            return Ok(Ok(deployment));
        }
        // Both clusters: the source may be mid-deregistration, the target gains a deployment.
        let (first, second) = ordered(deployment.cluster_id, target.cluster_id);
        lock_cluster(cx.tx, first).await?;
        lock_cluster(cx.tx, second).await?;
        let clash = Sql::new(
            "SELECT id FROM client_deployments WHERE host_id = $1 AND container_name = $2",
        )
        .arg(target.id)
        .arg(deployment.container_name.as_str());
        if !cx.tx.fetch(&clash).await?.is_empty() {
            let taken = StoreError::DeploymentExists(deployment.container_name.clone());
            return cx.refuse(action, Some(deployment.id), taken).await;
        }
        let sql = Sql::new("UPDATE client_deployments SET host_id = $2 WHERE id = $1")
            .arg(deployment.id)
            .arg(target.id);
        cx.tx.execute(&sql).await?;
        changed(cx, deployment.id, "moved", action).await
    }
}

/// Two cluster ids in lock order (so two moves never wait on each other).
fn ordered(a: Uuid, b: Uuid) -> (Uuid, Uuid) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Removes a deployment with its jobs and conflicts (seed remediation: decommission).
pub(crate) struct DeleteDeployment(pub Uuid);

#[async_trait]
impl Write for DeleteDeployment {
    type Reply = ();

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<(), StoreError>, StoreError> {
        let action = "deployment.delete";
        let deployment = match existing(cx, self.0, action).await? {
            Ok(deployment) => deployment,
            Err(refused) => return Ok(Err(refused)),
        };
        let sql = Sql::new("DELETE FROM client_deployments WHERE id = $1").arg(deployment.id);
        cx.tx.execute(&sql).await?;
        let payload = json!({ "action": "deleted", "deployment": deployment });
        let event = cx.append_event(EventType::DeploymentChanged, deployment.id, payload)?;
        cx.audit_success(action, Some(deployment.id), Some(event.revision))
            .await?;
        Ok(Ok(()))
    }
}

/// Starts a sync job of a deployment whose sync is enabled.
pub(crate) struct StartSync {
    pub deployment_id: Uuid,
    pub kind: SyncKind,
}

#[async_trait]
impl Write for StartSync {
    type Reply = SyncJob;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<SyncJob, StoreError>, StoreError> {
        let action = "sync.start";
        let deployment = match existing(cx, self.deployment_id, action).await? {
            Ok(deployment) => deployment,
            Err(refused) => return Ok(Err(refused)),
        };
        if !deployment.sync_enabled {
            let paused = StoreError::Invalid(fleetreg_model::Error::invalid(
                "sync_enabled",
                "sync is paused for this deployment; enable it first",
            ));
            return cx.refuse(action, Some(deployment.id), paused).await;
        }
        let job = SyncJob {
            id: Uuid::now_v7(),
            deployment_id: deployment.id,
            kind: self.kind,
            status: SyncStatus::Running,
            started_at: cx.at,
            finished_at: None,
            rows: None,
            error: None,
        };
        let insert = Sql::new(
            "INSERT INTO sync_jobs (id, deployment_id, kind, status, started_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .arg(job.id)
        .arg(job.deployment_id)
        .arg(job.kind.as_str())
        .arg(job.status.as_str())
        .arg(job.started_at);
        cx.tx.execute(&insert).await?;
        let running = Sql::new("UPDATE client_deployments SET last_sync_status = $2 WHERE id = $1")
            .arg(deployment.id)
            .arg(SyncStatus::Running.as_str());
        cx.tx.execute(&running).await?;
        cx.audit_success(action, Some(deployment.id), None).await?;
        Ok(Ok(job))
    }
}

/// Records how a running sync job ended, as its host reports it.
pub(crate) struct FinishSync {
    pub job_id: Uuid,
    pub report: SyncJobReport,
}

#[async_trait]
impl Write for FinishSync {
    type Reply = SyncJob;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<SyncJob, StoreError>, StoreError> {
        let action = "sync.finish";
        let sql = Sql::new(format!("{JOB_SELECT} WHERE j.id = $1")).arg(self.job_id);
        let Some(mut job) = fetch_first(cx.tx, &sql, job_from_row).await? else {
            let missing = StoreError::SyncJobNotFound(self.job_id);
            return cx.refuse(action, Some(self.job_id), missing).await;
        };
        if job.status != SyncStatus::Running {
            let done = StoreError::Invalid(fleetreg_model::Error::invalid(
                "status",
                format!("the job already finished ({})", job.status.as_str()),
            ));
            return cx.refuse(action, Some(job.id), done).await;
        }
        job.status = self.report.status;
        job.finished_at = Some(cx.at);
        job.rows = self.report.rows;
        job.error.clone_from(&self.report.error);
        let update = Sql::new(
            "UPDATE sync_jobs SET status = $2, finished_at = $3, rows_synced = $4, error = $5 WHERE id = $1",
        )
        .arg(job.id)
        .arg(job.status.as_str())
        .arg(cx.at)
        .arg(job.rows)
        .arg(&job.error);
        cx.tx.execute(&update).await?;
        let Some(deployment) = load_deployment(cx.tx, job.deployment_id).await? else {
            return Ok(Err(StoreError::DeploymentNotFound(job.deployment_id)));
        };
        let failures = if job.status == SyncStatus::Failed {
            deployment.consecutive_failures + 1
        } else {
            0
        };
        // A paused deployment stays `stopped`; its job's outcome is still kept.
        let status = if deployment.sync_enabled {
            job.status
        } else {
            SyncStatus::Stopped
        };
        let record = Sql::new(
            "UPDATE client_deployments SET last_sync_at = $2, last_sync_status = $3, \
             consecutive_failures = $4 WHERE id = $1",
        )
        .arg(deployment.id)
        .arg(cx.at)
        .arg(status.as_str())
        .arg(failures);
        cx.tx.execute(&record).await?;
        let revision = if failures == SYNC_FAILING_AFTER {
            let after = load_deployment(cx.tx, deployment.id).await?;
            let payload = json!({ "deployment": after, "consecutive_failures": failures });
            Some(
                cx.append_event(EventType::SyncFailing, deployment.id, payload)?
                    .revision,
            )
        } else {
            None
        };
        cx.audit_success(action, Some(job.id), revision).await?;
        Ok(Ok(job))
    }
}

/// Records a conflict a deployment's sync resolved.
pub(crate) struct RecordConflict {
    pub deployment_id: Uuid,
    pub report: ConflictReport,
}

#[async_trait]
impl Write for RecordConflict {
    type Reply = SyncConflict;

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<SyncConflict, StoreError>, StoreError> {
        let action = "sync.conflict";
        let deployment = match existing(cx, self.deployment_id, action).await? {
            Ok(deployment) => deployment,
            Err(refused) => return Ok(Err(refused)),
        };
        let conflict = SyncConflict {
            id: Uuid::now_v7(),
            deployment_id: deployment.id,
            at: cx.at,
            table_name: self.report.table_name.clone(),
            row_key: self.report.row_key.clone(),
            resolution: self.report.resolution.clone(),
        };
        let sql = Sql::new(
            "INSERT INTO sync_conflicts (id, deployment_id, at, table_name, row_key, resolution) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .arg(conflict.id)
        .arg(conflict.deployment_id)
        .arg(conflict.at)
        .arg(conflict.table_name.as_str())
        .arg(conflict.row_key.as_str())
        .arg(conflict.resolution.as_str());
        cx.tx.execute(&sql).await?;
        cx.audit_success(action, Some(deployment.id), None).await?;
        Ok(Ok(conflict))
    }
}

/// Takes or renews a cluster's leader lease for one of its hosts
/// (compare-and-swap under the cluster's row lock).
pub(crate) struct ClaimLeader {
    pub cluster_id: Uuid,
    pub claim: LeaderClaim,
}

#[async_trait]
impl Write for ClaimLeader {
    type Reply = Leader;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<Leader, StoreError>, StoreError> {
        let action = "leader.claim";
        if !lock_cluster(cx.tx, self.cluster_id).await? {
            let missing = StoreError::NotFound(self.cluster_id.to_string());
            return cx.refuse(action, Some(self.cluster_id), missing).await;
        }
        let host = Sql::new(format!(
            "{HOST_SELECT} WHERE h.id = $1 AND h.cluster_id = $2"
        ))
        .arg(self.claim.host_id)
        .arg(self.cluster_id);
        if fetch_first(cx.tx, &host, host_from_row).await?.is_none() {
            let missing = StoreError::HostNotFound(self.claim.host_id);
            return cx.refuse(action, Some(self.cluster_id), missing).await;
        }
        let current =
            Sql::new(format!("{LEADER_SELECT} WHERE l.cluster_id = $1")).arg(self.cluster_id);
        let current = fetch_first(cx.tx, &current, leader_from_row).await?;
        let expires = cx.at + Duration::seconds(i64::from(self.claim.lease_seconds));
        let term = match &current {
            Some(held) if held.host_id == self.claim.host_id => held.term,
            Some(held) if held.lease_expires_at > cx.at => {
                let held = StoreError::LeaderHeld(held.clone());
                return cx.refuse(action, Some(self.cluster_id), held).await;
            }
            Some(expired) => expired.term + 1,
            None => 1,
        };
        let leader = Leader {
            cluster_id: self.cluster_id,
            host_id: self.claim.host_id,
            lease_expires_at: expires,
            term,
        };
        let upsert = Sql::new(
            "INSERT INTO cluster_leaders (cluster_id, host_id, lease_expires_at, term) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (cluster_id) DO UPDATE SET host_id = $2, lease_expires_at = $3, term = $4",
        )
        .arg(leader.cluster_id)
        .arg(leader.host_id)
        .arg(leader.lease_expires_at)
        .arg(leader.term);
        cx.tx.execute(&upsert).await?;
        let changed_hands = current.as_ref().is_none_or(|c| c.host_id != leader.host_id);
        // A renewal (every few seconds per cluster) is neither an event nor
        // an audit entry; a change of holder is both.
        if changed_hands {
            let event =
                cx.append_event(EventType::LeaderChanged, self.cluster_id, to_json(&leader)?)?;
            cx.audit_success(action, Some(self.cluster_id), Some(event.revision))
                .await?;
        }
        Ok(Ok(leader))
    }
}

/// The deployment, or its refusal (audited) when it does not exist.
async fn existing(
    cx: &mut WriteCx<'_>,
    id: Uuid,
    action: &'static str,
) -> Result<Result<Deployment, StoreError>, StoreError> {
    match load_deployment(cx.tx, id).await? {
        Some(deployment) => Ok(Ok(deployment)),
        None => {
            cx.refuse(action, Some(id), StoreError::DeploymentNotFound(id))
                .await
        }
    }
}

/// The `DEPLOYMENT_CHANGED` event and audit entry of a change, and the
/// deployment as it is now.
async fn changed(
    cx: &mut WriteCx<'_>,
    id: Uuid,
    what: &str,
    action: &'static str,
) -> Result<Result<Deployment, StoreError>, StoreError> {
    let Some(deployment) = load_deployment(cx.tx, id).await? else {
        return Ok(Err(StoreError::DeploymentNotFound(id)));
    };
    let payload = json!({ "action": what, "deployment": deployment });
    let event = cx.append_event(EventType::DeploymentChanged, id, payload)?;
    cx.audit_success(action, Some(id), Some(event.revision))
        .await?;
    Ok(Ok(deployment))
}
