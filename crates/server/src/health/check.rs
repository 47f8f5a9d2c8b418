//! One check of one cluster, and one discovery, each recorded in the store.

use super::HealthContext;
use crate::credentials::Presentation;
use crate::metrics;
use fleetreg_model::{Cluster, ClusterStatus, Component, Event};
use fleetreg_probe::{ClusterCredential, Discovery, HealthReport, Target};
use fleetreg_store::{Store, StoreError};
use std::sync::Arc;
use tracing::instrument;

/// What one recorded check produced.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// The probe's report (results, causes, elapsed time).
    pub report: HealthReport,
    /// The status that was stored.
    pub status: ClusterStatus,
    /// The `last_seen_at` that was stored.
    pub last_seen_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `CLUSTER_STATUS_CHANGED`, when the state changed.
    pub event: Option<Event>,
    /// The store held no credentials for the cluster when the check began
    /// (read, or known from the caller's [`CredentialsLookup::KnownNone`]).
    pub none_stored: bool,
}

/// How a check learns the cluster's stored credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialsLookup {
    /// Read them from the store (opened once per stored version).
    Read,
    /// The caller knows the store holds none for the cluster: check without
    /// reading. The scheduler knows it from the change log it follows: a
    /// cluster registered (never with credentials), or found with none,
    /// since its last `CLUSTER_CREDENTIALS_UPDATED` (docs/BENCHMARKS.md,
    /// issue 10).
    KnownNone,
}

impl CheckOutcome {
    /// The sanitised cause of an unreachable API server, if it was.
    pub fn api_server_cause(&self) -> Option<&str> {
        self.report
            .failures
            .iter()
            .find(|f| f.component == Component::ApiServer)
            .map(|f| f.cause.as_str())
    }
}

/// Checks `cluster` (seed 8.1) within its type's timeout and records the status;
/// `last_seen_at` moves only when the API server answered. Waits while another
/// probe of the same cluster runs (never two at once). `credentials`: whether
/// the stored credentials are read first or known to be none.
#[instrument(skip_all, fields(cluster = %cluster.id))]
pub async fn check_and_record(
    store: &dyn Store,
    health: &HealthContext,
    cluster: &Cluster,
    credentials: CredentialsLookup,
) -> Result<CheckOutcome, StoreError> {
    let _probing = health.locks.lock(cluster.id).await;
    let timeout = health.timing(cluster.cluster_type).timeout;
    let presented = match credentials {
        CredentialsLookup::Read => presented(health, cluster).await,
        CredentialsLookup::KnownNone => Presented::NoneStored,
    };
    let (target, withheld) = presented.target(cluster);
    let report = health.prober.check(&target, timeout).await;
    let checked_at = store.clock().now();
    let mut status = report.status(cluster.status.state, checked_at);
    if withheld {
        let note = WITHHELD;
        status.reason = Some(match status.reason.take() {
            Some(reason) => format!("{reason}; {note}"),
            None => note.to_owned(),
        });
    }
    let last_seen_at = if report.results.api_server {
        Some(checked_at)
    } else {
        cluster.last_seen_at
    };
    ::metrics::counter!(metrics::HEALTH_CHECKS, "result" => status.state.as_str()).increment(1);
    ::metrics::histogram!(metrics::HEALTH_CHECK_DURATION).record(report.elapsed.as_secs_f64());
    let event = store
        .record_status(cluster.id, status.clone(), last_seen_at)
        .await?;
    if let Some(event) = &event {
        tracing::info!(
            revision = event.revision,
            state = status.state.as_str(),
            score = status.health_score,
            reason = status.reason.as_deref().unwrap_or_default(),
            "cluster state changed"
        );
    } else {
        tracing::debug!(
            state = status.state.as_str(),
            score = status.health_score,
            "cluster checked"
        );
    }
    Ok(CheckOutcome {
        report,
        status,
        last_seen_at,
        event,
        none_stored: matches!(presented, Presented::NoneStored),
    })
}

/// The note a check's status reason carries while stored credentials are
/// withheld because the cluster's URLs left the origins they were bound to.
pub const WITHHELD: &str = "stored credentials not presented: the cluster's URLs moved to \
     another origin since they were validated (credentials ORIGIN_CHANGED; upload them again \
     or an admin POSTs /api/v1/clusters/{id}/credentials/rebind)";

/// What a probe of a cluster presents, from its stored credentials.
enum Presented {
    /// None are stored.
    NoneStored,
    /// These, opened.
    Credential(Arc<ClusterCredential>),
    /// Stored, but not bound to the cluster's origins: withheld.
    Withheld,
    /// Stored, but unreadable now (a store error, or they cannot be
    /// opened): logged, and the probe goes without.
    Unusable,
}

impl Presented {
    /// The probe's target for `cluster`, and whether stored credentials were
    /// withheld because they are not bound to the cluster's origins.
    fn target(&self, cluster: &Cluster) -> (Target, bool) {
        let target = Target::from_cluster(cluster);
        match self {
            Presented::Credential(credential) => {
                (target.with_credential(credential.clone()), false)
            }
            Presented::Withheld => (target, true),
            Presented::NoneStored | Presented::Unusable => (target, false),
        }
    }
}

/// What the probe may present to `cluster` from its stored credentials (none
/// when there are none, or when they cannot be opened — logged).
async fn presented(health: &HealthContext, cluster: &Cluster) -> Presented {
    match health.credentials.for_cluster(cluster).await {
        Ok(Presentation::Present(credential)) => Presented::Credential(credential),
        Ok(Presentation::Nothing) => Presented::NoneStored,
        Ok(Presentation::Withheld) => {
            tracing::debug!(cluster = %cluster.id, "credentials not bound to the cluster's origins: checking without them");
            Presented::Withheld
        }
        Err(error @ crate::credentials::CredentialsError::Store(_)) => {
            tracing::warn!(cluster = %cluster.id, %error, "checking without credentials");
            Presented::Unusable
        }
        Err(error) => {
            // Logged (and audited) by `for_cluster` once per stored version.
            tracing::debug!(cluster = %cluster.id, %error, "checking without credentials");
            Presented::Unusable
        }
    }
}

/// Why a discovery could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// The probe failed (sanitised cause: never a credential).
    #[error("discovery failed: {0}")]
    Probe(#[from] fleetreg_probe::Error),
    /// The store refused the capabilities.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Discovers `cluster`'s capabilities (seed 9) within its type's timeout and
/// records them with the discovered `platform_version` (an event only when the
/// capabilities changed). Waits while another probe of the cluster runs.
#[instrument(skip_all, fields(cluster = %cluster.id))]
pub async fn discover_and_record(
    store: &dyn Store,
    health: &HealthContext,
    cluster: &Cluster,
) -> Result<Discovery, DiscoverError> {
    let _probing = health.locks.lock(cluster.id).await;
    let timeout = health.timing(cluster.cluster_type).timeout;
    let mut discovery = health
        .prober
        .discover(&presented(health, cluster).await.target(cluster).0, timeout)
        .await?;
    // Discovered now by the store's clock (the probe stamps the system clock).
    discovery.capabilities.discovered_at = Some(store.clock().now());
    let event = store
        .set_capabilities(
            cluster.id,
            discovery.capabilities.clone(),
            discovery.platform_version.clone(),
        )
        .await?;
    if let Some(event) = event {
        tracing::info!(revision = event.revision, "cluster capabilities changed");
    }
    Ok(discovery)
}
