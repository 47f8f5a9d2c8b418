//! Hosts, client deployments and their sync (seed
//! cluster-lifecycle-deregistration.md): the hosts under a cluster, which
//! client runs where with sync on or off, sync jobs and conflicts, the
//! cluster's leader lease, and what deregistering a cluster would remove.

use crate::cluster::validate_text;
use crate::{ClientName, Error};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The status of a deployment's last sync (seed: `last_sync_status`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SyncStatus {
    /// The last sync finished well.
    Success,
    /// The last sync failed.
    Failed,
    /// A sync is running.
    Running,
    /// No sync has run yet.
    Pending,
    /// Sync is paused.
    Stopped,
}

impl SyncStatus {
    /// The wire and database form.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Success => "success",
            SyncStatus::Failed => "failed",
            SyncStatus::Running => "running",
            SyncStatus::Pending => "pending",
            SyncStatus::Stopped => "stopped",
        }
    }

    /// Parses the wire form.
    pub fn parse(value: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(value.to_owned())).ok()
    }
}

/// A full or incremental sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SyncKind {
    /// Everything.
    Full,
    /// Changes since the last sync.
    Incremental,
}

impl SyncKind {
    /// The wire and database form.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncKind::Full => "full",
            SyncKind::Incremental => "incremental",
        }
    }

    /// Parses the wire form.
    pub fn parse(value: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(value.to_owned())).ok()
    }
}

/// A host of a cluster (seed: `sync_metadata.hosts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Host {
    /// Server-assigned id.
    pub id: Uuid,
    /// The cluster it belongs to.
    pub cluster_id: Uuid,
    /// Its host name (unique within the cluster).
    pub hostname: String,
    /// Where it is reached, if recorded.
    pub address: Option<String>,
    /// Its last heartbeat (`POST /api/v1/hosts/{id}/heartbeat`).
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// Whether it is orphaned now: no heartbeat for longer than the
    /// threshold (`sync.orphan_after_seconds`).
    pub orphaned: bool,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// `POST /api/v1/clusters/{id}/hosts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostCreateRequest {
    /// Host name: letters, digits, '-', '.', at most 253 characters.
    pub hostname: String,
    /// Address (IP or DNS name), optional.
    #[serde(default)]
    pub address: Option<String>,
}

impl HostCreateRequest {
    /// Checks the host name and address.
    pub fn validate(&self) -> Result<(), Error> {
        check_host_name("hostname", &self.hostname)?;
        if let Some(address) = &self.address {
            if address.parse::<std::net::IpAddr>().is_err() {
                check_host_name("address", address)?;
            }
        }
        Ok(())
    }
}

fn check_host_name(field: &str, name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{name:?} is not a host name (labels of letters, digits and '-', at most 253 characters)"),
        ))
    }
}

/// A client placed on a host (seed: `sync_metadata.client_deployments`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Deployment {
    /// Server-assigned id.
    pub id: Uuid,
    /// The host it runs on.
    pub host_id: Uuid,
    /// The host's cluster.
    pub cluster_id: Uuid,
    /// The client (a registered client's name).
    pub client: String,
    /// The container running it.
    pub container_name: String,
    /// Whether its data syncs; a cluster cannot be deregistered while any
    /// deployment on its hosts syncs.
    pub sync_enabled: bool,
    /// When its last sync finished.
    pub last_sync_at: Option<DateTime<Utc>>,
    /// How its last sync went.
    pub last_sync_status: SyncStatus,
    /// Failed syncs in a row.
    pub consecutive_failures: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// `POST /api/v1/hosts/{id}/deployments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentCreateRequest {
    /// The client's name (it must be registered).
    pub client: String,
    /// The container (letters, digits, '-', '_', '.'; at most 128).
    pub container_name: String,
    /// Sync on from the start (default off).
    #[serde(default)]
    pub sync_enabled: bool,
}

impl DeploymentCreateRequest {
    /// Checks the client name and the container name.
    pub fn validate(&self) -> Result<ClientName, Error> {
        let client = ClientName::parse(&self.client)
            .map_err(|e| Error::invalid("client", e.reason().to_owned()))?;
        validate_text("container_name", &self.container_name, 128)?;
        let valid = !self.container_name.is_empty()
            && self
                .container_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(Error::invalid(
                "container_name",
                "use letters, digits, '-', '_' and '.'",
            ));
        }
        Ok(client)
    }
}

/// `POST /api/v1/deployments/{id}/move`: moves a deployment to another host
/// (seed remediation 2, migrate), keeping its sync setting and history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// The host to move to (of any cluster).
    pub host_id: Uuid,
}

/// One sync run of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncJob {
    /// Server-assigned id.
    pub id: Uuid,
    /// The deployment synced.
    pub deployment_id: Uuid,
    /// Full or incremental.
    pub kind: SyncKind,
    /// `running`, then `success` or `failed`.
    pub status: SyncStatus,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Rows synced, as reported.
    pub rows: Option<i64>,
    /// The failure, as reported.
    pub error: Option<String>,
}

/// `POST /api/v1/deployments/{id}/sync`: starts a sync job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncStartRequest {
    /// Full or incremental (default incremental).
    #[serde(default = "incremental")]
    pub kind: SyncKind,
}

fn incremental() -> SyncKind {
    SyncKind::Incremental
}

/// `POST /api/v1/sync-jobs/{id}/finish`: how a job ended, as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncJobReport {
    /// `success` or `failed`.
    pub status: SyncStatus,
    /// Rows synced.
    #[serde(default)]
    pub rows: Option<i64>,
    /// Why it failed (at most 1024 characters).
    #[serde(default)]
    pub error: Option<String>,
}

impl SyncJobReport {
    /// Only a finished state, a non-negative row count and a short error.
    pub fn validate(&self) -> Result<(), Error> {
        if !matches!(self.status, SyncStatus::Success | SyncStatus::Failed) {
            return Err(Error::invalid("status", "must be success or failed"));
        }
        if self.rows.is_some_and(|r| r < 0) {
            return Err(Error::invalid("rows", "must not be negative"));
        }
        if let Some(error) = &self.error {
            validate_text("error", error, 1024)?;
        }
        Ok(())
    }
}

/// One conflict a sync resolved (seed: `conflict_log`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncConflict {
    /// Server-assigned id.
    pub id: Uuid,
    /// The deployment.
    pub deployment_id: Uuid,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// The table.
    pub table_name: String,
    /// The row's key.
    pub row_key: String,
    /// How it was resolved (e.g. `local_wins`).
    pub resolution: String,
}

/// `POST /api/v1/deployments/{id}/conflicts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConflictReport {
    /// The table (at most 128 characters).
    pub table_name: String,
    /// The row's key (at most 256).
    pub row_key: String,
    /// How it was resolved (at most 64).
    pub resolution: String,
}

impl ConflictReport {
    /// Length limits and no control characters.
    pub fn validate(&self) -> Result<(), Error> {
        validate_text("table_name", &self.table_name, 128)?;
        validate_text("row_key", &self.row_key, 256)?;
        validate_text("resolution", &self.resolution, 64)
    }
}

/// Most seconds a leader lease may run.
pub const MAX_LEASE_SECONDS: u32 = 600;

/// `POST /api/v1/clusters/{id}/leader`: take or renew the cluster's leader
/// lease for a host. Granted when nobody holds it, the lease has expired,
/// or the host already holds it (renewal); otherwise `LEADER_HELD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaderClaim {
    /// The claiming host (of this cluster).
    pub host_id: Uuid,
    /// Lease length, 1 to 600 seconds.
    pub lease_seconds: u32,
}

/// A cluster's leader lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Leader {
    /// The cluster.
    pub cluster_id: Uuid,
    /// The holding host.
    pub host_id: Uuid,
    /// Until when.
    pub lease_expires_at: DateTime<Utc>,
    /// Increases each time the lease changes hands.
    pub term: i64,
}

/// `GET /api/v1/clusters/{id}/sync-status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncStatusView {
    /// The cluster.
    pub cluster_id: Uuid,
    /// Its hosts.
    pub hosts: Vec<Host>,
    /// Its leader lease, if any (possibly expired).
    pub leader: Option<Leader>,
    /// Deployments on its hosts.
    pub deployments: Vec<Deployment>,
    /// The most recent sync jobs of those deployments, newest first.
    pub recent_jobs: Vec<SyncJob>,
}

/// A deployment that keeps a cluster from being deregistered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncClient {
    /// The client.
    pub client: String,
    /// Its container.
    pub container_name: String,
    /// The deployment.
    pub deployment_id: Uuid,
    /// When it last synced.
    pub last_sync_at: Option<DateTime<Utc>>,
    /// How.
    pub last_sync_status: SyncStatus,
}

/// What deregistering a cluster removes (`DELETE …?dry_run=true`), or removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeregistrationPreview {
    /// The cluster.
    pub cluster_id: Uuid,
    /// Its hosts.
    pub hosts: Vec<Host>,
    /// The (sync-disabled) deployments on them.
    pub deployments: Vec<Deployment>,
    /// Sync jobs of those deployments.
    pub sync_jobs: u64,
    /// Conflict log entries of those deployments.
    pub conflicts: u64,
    /// Leader records.
    pub leader_records: u64,
    /// Whether this was only a preview.
    pub dry_run: bool,
}

impl DeregistrationPreview {
    /// Whether deleting the cluster removes anything besides the cluster.
    pub fn cascades(&self) -> bool {
        !self.hosts.is_empty()
            || !self.deployments.is_empty()
            || self.sync_jobs > 0
            || self.conflicts > 0
            || self.leader_records > 0
    }
}

/// The seed's three remediations for a sync client, as the error details give them.
pub const SYNC_CLIENT_REMEDIATIONS: [&str; 3] = [
    "disable sync: POST /api/v1/deployments/{id}/pause (fleetreg deployment pause ID)",
    "migrate: POST /api/v1/deployments/{id}/move with a host of another cluster (fleetreg deployment move ID --host HOST_ID)",
    "decommission: DELETE /api/v1/deployments/{id} (fleetreg deployment delete ID)",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_and_container_names_are_checked() {
        let ok = HostCreateRequest {
            hostname: "prod-host-1.example.net".into(),
            address: Some("10.0.0.5".into()),
        };
        assert!(ok.validate().is_ok());
        for bad in ["", "-a", "a..b", "a b", &"a".repeat(64)] {
            let request = HostCreateRequest {
                hostname: bad.into(),
                address: None,
            };
            assert!(request.validate().is_err(), "{bad:?}");
        }
        let deployment = DeploymentCreateRequest {
            client: "acme".into(),
            container_name: "openwebui-acme".into(),
            sync_enabled: true,
        };
        assert!(deployment.validate().is_ok());
        let bad = DeploymentCreateRequest {
            container_name: "a/b".into(),
            ..deployment
        };
        assert_eq!(bad.validate().unwrap_err().field(), "container_name");
    }

    #[test]
    fn a_report_must_be_final() {
        let running = SyncJobReport {
            status: SyncStatus::Running,
            rows: None,
            error: None,
        };
        assert!(running.validate().is_err());
    }
}
