//! The SQL of hosts, deployments, sync jobs, conflicts and leader leases,
//! once for both engines: columns and decoding, and the statements the
//! writer runs (`writer/sync.rs` holds the rules, `writer/cluster.rs` the
//! deregistration).

use crate::decode::parsed;
use crate::sql::{Row, Sql};
use crate::write_tx::WriteTx;
use crate::StoreError;
use fleetreg_model::{
    Deployment, DeregistrationPreview, Host, Leader, SyncClient, SyncConflict, SyncJob, SyncKind,
    SyncStatus,
};
use uuid::Uuid;

/// `SELECT` of hosts (`hosts h`), read by [`host_from_row`].
pub(crate) const HOST_SELECT: &str = "SELECT h.id, h.cluster_id, h.hostname, h.address, \
     h.last_heartbeat_at, h.orphaned, h.created_at FROM hosts h";

/// `SELECT` of deployments with their cluster and client name, read by
/// [`deployment_from_row`].
pub(crate) const DEPLOYMENT_SELECT: &str = "SELECT d.id, d.host_id, h.cluster_id, \
     c.name AS client, d.container_name, d.sync_enabled, d.last_sync_at, d.last_sync_status, \
     d.consecutive_failures, d.created_at FROM client_deployments d \
     JOIN hosts h ON h.id = d.host_id JOIN clients c ON c.id = d.client_id";

/// `SELECT` of sync jobs (`sync_jobs j`), read by [`job_from_row`].
pub(crate) const JOB_SELECT: &str = "SELECT j.id, j.deployment_id, j.kind, j.status, \
     j.started_at, j.finished_at, j.rows_synced, j.error FROM sync_jobs j";

/// `SELECT` of conflicts (`sync_conflicts x`), read by [`conflict_from_row`].
pub(crate) const CONFLICT_SELECT: &str = "SELECT x.id, x.deployment_id, x.at, x.table_name, \
     x.row_key, x.resolution FROM sync_conflicts x";

/// `SELECT` of leader leases (`cluster_leaders l`), read by [`leader_from_row`].
pub(crate) const LEADER_SELECT: &str =
    "SELECT l.cluster_id, l.host_id, l.lease_expires_at, l.term FROM cluster_leaders l";

/// Reads a [`Host`].
pub(crate) fn host_from_row(row: &Row) -> Result<Host, StoreError> {
    Ok(Host {
        id: row.get("id")?,
        cluster_id: row.get("cluster_id")?,
        hostname: row.get("hostname")?,
        address: row.get("address")?,
        last_heartbeat_at: row.get("last_heartbeat_at")?,
        orphaned: row.get("orphaned")?,
        created_at: row.get("created_at")?,
    })
}

/// Reads a [`Deployment`].
pub(crate) fn deployment_from_row(row: &Row) -> Result<Deployment, StoreError> {
    Ok(Deployment {
        id: row.get("id")?,
        host_id: row.get("host_id")?,
        cluster_id: row.get("cluster_id")?,
        client: row.get("client")?,
        container_name: row.get("container_name")?,
        sync_enabled: row.get("sync_enabled")?,
        last_sync_at: row.get("last_sync_at")?,
        last_sync_status: parsed(row, "last_sync_status", SyncStatus::parse)?,
        consecutive_failures: row.get("consecutive_failures")?,
        created_at: row.get("created_at")?,
    })
}

/// Reads a [`SyncJob`].
pub(crate) fn job_from_row(row: &Row) -> Result<SyncJob, StoreError> {
    Ok(SyncJob {
        id: row.get("id")?,
        deployment_id: row.get("deployment_id")?,
        kind: parsed(row, "kind", SyncKind::parse)?,
        status: parsed(row, "status", SyncStatus::parse)?,
        started_at: row.get("started_at")?,
        finished_at: row.get("finished_at")?,
        rows: row.get("rows_synced")?,
        error: row.get("error")?,
    })
}

/// Reads a [`SyncConflict`].
pub(crate) fn conflict_from_row(row: &Row) -> Result<SyncConflict, StoreError> {
    Ok(SyncConflict {
        id: row.get("id")?,
        deployment_id: row.get("deployment_id")?,
        at: row.get("at")?,
        table_name: row.get("table_name")?,
        row_key: row.get("row_key")?,
        resolution: row.get("resolution")?,
    })
}

/// Reads a [`Leader`].
pub(crate) fn leader_from_row(row: &Row) -> Result<Leader, StoreError> {
    Ok(Leader {
        cluster_id: row.get("cluster_id")?,
        host_id: row.get("host_id")?,
        lease_expires_at: row.get("lease_expires_at")?,
        term: row.get("term")?,
    })
}

/// The rows of `sql` inside the write transaction, decoded.
pub(crate) async fn fetch_all<T>(
    tx: &mut WriteTx,
    sql: &Sql,
    decode: fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    tx.fetch(sql).await?.iter().map(decode).collect()
}

/// The first row of `sql` inside the write transaction, decoded.
pub(crate) async fn fetch_first<T>(
    tx: &mut WriteTx,
    sql: &Sql,
    decode: fn(&Row) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    tx.fetch(sql).await?.first().map(decode).transpose()
}

/// A host by id, inside the transaction.
pub(crate) async fn load_host(tx: &mut WriteTx, id: Uuid) -> Result<Option<Host>, StoreError> {
    let sql = Sql::new(format!("{HOST_SELECT} WHERE h.id = $1")).arg(id);
    fetch_first(tx, &sql, host_from_row).await
}

/// A deployment by id, inside the transaction.
pub(crate) async fn load_deployment(
    tx: &mut WriteTx,
    id: Uuid,
) -> Result<Option<Deployment>, StoreError> {
    let sql = Sql::new(format!("{DEPLOYMENT_SELECT} WHERE d.id = $1")).arg(id);
    fetch_first(tx, &sql, deployment_from_row).await
}

/// The deployments of a client (by client id), inside the transaction.
pub(crate) async fn client_deployments(
    tx: &mut WriteTx,
    client_id: Uuid,
) -> Result<Vec<Deployment>, StoreError> {
    let sql = Sql::new(format!(
        "{DEPLOYMENT_SELECT} WHERE c.id = $1 ORDER BY d.container_name"
    ))
    .arg(client_id);
    fetch_all(tx, &sql, deployment_from_row).await
}

/// Locks a cluster's row until commit (PostgreSQL; SQLite's writer already
/// holds the database lock): what changes whether the cluster may be
/// deregistered (enabling sync, moving a deployment in) serialises with its
/// deregistration across replicas. `false` when the cluster is gone.
pub(crate) async fn lock_cluster(tx: &mut WriteTx, cluster_id: Uuid) -> Result<bool, StoreError> {
    let lock = tx.dialect().lock_row;
    let sql = Sql::new(format!("SELECT id FROM clusters WHERE id = $1{lock}")).arg(cluster_id);
    Ok(!tx.fetch(&sql).await?.is_empty())
}

/// The deployments on a cluster's hosts that sync.
pub(crate) async fn sync_clients(
    tx: &mut WriteTx,
    cluster_id: Uuid,
) -> Result<Vec<SyncClient>, StoreError> {
    let sql = Sql::new(format!(
        "{DEPLOYMENT_SELECT} WHERE h.cluster_id = $1 AND d.sync_enabled ORDER BY c.name, d.container_name"
    ))
    .arg(cluster_id);
    let deployments = fetch_all(tx, &sql, deployment_from_row).await?;
    Ok(deployments
        .into_iter()
        .map(|d| SyncClient {
            client: d.client,
            container_name: d.container_name,
            deployment_id: d.id,
            last_sync_at: d.last_sync_at,
            last_sync_status: d.last_sync_status,
        })
        .collect())
}

/// Everything deleting the cluster would remove with it.
pub(crate) async fn cascade_of(
    tx: &mut WriteTx,
    cluster_id: Uuid,
) -> Result<DeregistrationPreview, StoreError> {
    let hosts = Sql::new(format!(
        "{HOST_SELECT} WHERE h.cluster_id = $1 ORDER BY h.hostname"
    ))
    .arg(cluster_id);
    let deployments = Sql::new(format!(
        "{DEPLOYMENT_SELECT} WHERE h.cluster_id = $1 ORDER BY c.name, d.container_name"
    ))
    .arg(cluster_id);
    let count = |table: &str| {
        Sql::new(format!(
            "SELECT COUNT(*) FROM {table} t JOIN client_deployments d ON d.id = t.deployment_id \
             JOIN hosts h ON h.id = d.host_id WHERE h.cluster_id = $1"
        ))
        .arg(cluster_id)
    };
    let first_count = |rows: Vec<Row>| -> Result<u64, StoreError> {
        let n: i64 = rows
            .first()
            .map(|r| r.get_at(0))
            .transpose()?
            .unwrap_or_default();
        Ok(u64::try_from(n).unwrap_or_default())
    };
    let leaders =
        Sql::new("SELECT COUNT(*) FROM cluster_leaders WHERE cluster_id = $1").arg(cluster_id);
    Ok(DeregistrationPreview {
        cluster_id,
        hosts: fetch_all(tx, &hosts, host_from_row).await?,
        deployments: fetch_all(tx, &deployments, deployment_from_row).await?,
        sync_jobs: first_count(tx.fetch(&count("sync_jobs")).await?)?,
        conflicts: first_count(tx.fetch(&count("sync_conflicts")).await?)?,
        leader_records: first_count(tx.fetch(&leaders).await?)?,
        dry_run: false,
    })
}
