//! One check of one cluster, and one discovery, each recorded in the store.

use super::HealthContext;
use crate::credentials::Presentation;
use crate::metrics;
use fleetreg_model::{Cluster, ClusterState, ClusterStatus, Component, Event};
use fleetreg_probe::{Discovery, HealthReport, Target};
use fleetreg_store::{Store, StoreError};
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
    let presentation = match credentials {
        CredentialsLookup::Read => presentation(health, cluster).await,
        CredentialsLookup::KnownNone => Some(Presentation::Nothing),
    };
    let (target, withheld) = target_of(cluster, presentation.as_ref());
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
    match &event {
        // A new cluster's first state: one line per cluster of an import
        // would bury the changes an operator looks for (the event has it).
        Some(event) if cluster.status.state == ClusterState::Unknown => tracing::debug!(
            revision = event.revision,
            state = status.state.as_str(),
            score = status.health_score,
            reason = status.reason.as_deref().unwrap_or_default(),
            "cluster's first state"
        ),
        Some(event) => tracing::info!(
            revision = event.revision,
            state = status.state.as_str(),
            score = status.health_score,
            reason = status.reason.as_deref().unwrap_or_default(),
            "cluster state changed"
        ),
        None => tracing::debug!(
            state = status.state.as_str(),
            score = status.health_score,
            "cluster checked"
        ),
    }
    Ok(CheckOutcome {
        report,
        status,
        last_seen_at,
        event,
        none_stored: matches!(presentation, Some(Presentation::Nothing)),
    })
}

/// The note a check's status reason carries while stored credentials are
/// withheld because the cluster's URLs left the origins they were bound to.
pub const WITHHELD: &str = "stored credentials not presented: the cluster's URLs moved to \
     another origin since they were validated (credentials ORIGIN_CHANGED; upload them again \
     or an admin POSTs /api/v1/clusters/{id}/credentials/rebind)";

/// The probe's target for `cluster`, presenting `presentation`'s credential
/// (none when there is none, or none could be read), and whether stored
/// credentials were withheld because they are not bound to the cluster's
/// origins.
fn target_of(cluster: &Cluster, presentation: Option<&Presentation>) -> (Target, bool) {
    let target = Target::from_cluster(cluster);
    match presentation {
        Some(Presentation::Present(credential)) => {
            (target.with_credential(credential.clone()), false)
        }
        Some(Presentation::Withheld) => (target, true),
        Some(Presentation::Nothing) | None => (target, false),
    }
}

/// What the probe may present to `cluster` from its stored credentials;
/// `None` when they cannot be read or opened now (logged): the probe goes
/// without them, and nothing is concluded about what is stored.
async fn presentation(health: &HealthContext, cluster: &Cluster) -> Option<Presentation> {
    match health.credentials.for_cluster(cluster).await {
        Ok(Presentation::Withheld) => {
            tracing::debug!(cluster = %cluster.id, "credentials not bound to the cluster's origins: checking without them");
            Some(Presentation::Withheld)
        }
        Ok(presentation) => Some(presentation),
        Err(error @ crate::credentials::CredentialsError::Store(_)) => {
            tracing::warn!(cluster = %cluster.id, %error, "checking without credentials");
            None
        }
        Err(error) => {
            // Logged (and audited) by `for_cluster` once per stored version.
            tracing::debug!(cluster = %cluster.id, %error, "checking without credentials");
            None
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
    let presentation = presentation(health, cluster).await;
    let mut discovery = health
        .prober
        .discover(&target_of(cluster, presentation.as_ref()).0, timeout)
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
