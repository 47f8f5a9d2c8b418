//! Services from clusters (issue 13, "app installed → service registry
//! updated"): a cluster's Kubernetes `Service`s annotated
//! `fleetreg.io/expose: "true"` are read with its stored credentials
//! ([`fleetreg_probe::Prober::discover_services`]) and brought into the
//! registry by [`EdgeStore::sync_cluster_services`](fleetreg_store::EdgeStore::sync_cluster_services):
//! new ones registered, changed ones updated, vanished ones marked `gone`.
//!
//! A cluster that cannot be read is left as it is: the store is only told
//! about a complete listing, so an outage never marks services gone.
//! [`ServiceSync`] does one cluster or all of them, for
//! `POST /api/v1/services/sync` and for the periodic job (`edge.service_sync_seconds`).

use crate::credentials::Presentation;
use crate::health::HealthContext;
use fleetreg_model::{Audit, Cluster, ServiceSyncReport};
use fleetreg_probe::{ServiceProblem, Target};
use fleetreg_store::{Store, StoreError};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Clusters read at once by a sync of every cluster.
pub const MAX_CONCURRENT_SYNCS: usize = 16;

/// The audit actor of the periodic job (`system:service-sync`).
pub const WORKER: &str = "service-sync";

/// What one cluster's sync did.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterServiceSync {
    /// What changed in the registry.
    pub report: ServiceSyncReport,
    /// Annotated Services that were not taken, each with why (escaped
    /// cluster text).
    pub problems: Vec<ServiceProblem>,
}

/// Why a cluster's services could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum ServiceSyncError {
    /// The cluster's Services could not be listed (sanitised: never a
    /// credential); the registry was not touched.
    #[error("cannot list the cluster's services: {0}")]
    Probe(#[from] fleetreg_probe::Error),
    /// The store refused the sync (e.g. the cluster was deleted meanwhile).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The outcome of one cluster within a sync of several.
#[derive(Debug)]
pub struct ClusterOutcome {
    /// The cluster.
    pub cluster: Cluster,
    /// What its sync did, or why it failed.
    pub result: Result<ClusterServiceSync, ServiceSyncError>,
}

/// Reads clusters' annotated Services and syncs them into the registry.
/// Cheap to clone.
#[derive(Clone)]
pub struct ServiceSync {
    store: Arc<dyn Store>,
    health: HealthContext,
}

impl ServiceSync {
    /// A syncer over `store`, probing with `health`'s prober, credentials,
    /// per-cluster locks and timeouts.
    pub fn new(store: Arc<dyn Store>, health: HealthContext) -> ServiceSync {
        ServiceSync { store, health }
    }

    /// Lists `cluster`'s annotated Services with its stored credentials
    /// (presented as for capability discovery: only while bound to the
    /// cluster's origins), within its type's check timeout and while no other
    /// probe of it runs, then syncs them into the registry under `audit`.
    pub async fn sync_cluster(
        &self,
        cluster: &Cluster,
        audit: &Audit,
    ) -> Result<ClusterServiceSync, ServiceSyncError> {
        let found = {
            let _probing = self.health.locks.lock(cluster.id).await;
            let timeout = self.health.timing(cluster.cluster_type).timeout;
            let target = self.target(cluster).await;
            self.health
                .prober
                .discover_services(&target, timeout)
                .await?
        };
        for problem in &found.problems {
            tracing::debug!(cluster = %cluster.id, service = %problem.service,
                reason = %problem.reason, "annotated service not taken");
        }
        let report = self
            .store
            .sync_cluster_services(cluster.id, found.services, audit)
            .await?;
        if changed(&report) {
            tracing::info!(cluster = %cluster.id, registered = report.registered.len(),
                updated = report.updated.len(), gone = report.gone.len(), "services synced from cluster");
        }
        Ok(ClusterServiceSync {
            report,
            problems: found.problems,
        })
    }

    /// Syncs every registered cluster (at most [`MAX_CONCURRENT_SYNCS`] at
    /// once); the outcomes in cluster-name order. Fails only when the
    /// clusters cannot be loaded.
    pub async fn sync_all(&self, audit: &Audit) -> Result<Vec<ClusterOutcome>, StoreError> {
        let clusters = crate::health::all_clusters(self.store.as_ref()).await?;
        let outcomes = futures::stream::iter(clusters)
            .map(|cluster| async move {
                let result = self.sync_cluster(&cluster, audit).await;
                ClusterOutcome { cluster, result }
            })
            .buffered(MAX_CONCURRENT_SYNCS)
            .collect()
            .await;
        Ok(outcomes)
    }

    /// One round of the periodic job: [`ServiceSync::sync_all`] as
    /// `system:service-sync`; failures logged.
    pub async fn tick(&self) -> Result<Vec<ClusterOutcome>, StoreError> {
        let outcomes = self.sync_all(&Audit::system(WORKER)).await?;
        for outcome in &outcomes {
            match &outcome.result {
                Ok(_) => {}
                Err(error @ ServiceSyncError::Probe(_)) => {
                    tracing::debug!(cluster = %outcome.cluster.id, %error, "service sync skipped");
                }
                Err(ServiceSyncError::Store(StoreError::NotFound(_))) => {}
                Err(error) => {
                    tracing::warn!(cluster = %outcome.cluster.id, %error, "service sync failed");
                }
            }
        }
        Ok(outcomes)
    }

    /// Runs [`ServiceSync::tick`] every `interval` (the first round one
    /// interval after the start) until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let start = tokio::time::Instant::now() + interval;
        let mut ticker = tokio::time::interval_at(start, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {
                    let round = self.tick();
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        result = round => {
                            if let Err(error) = result {
                                tracing::warn!(%error, "service sync round failed");
                            }
                        }
                    }
                }
            }
        }
    }

    /// The probe's target for `cluster`, with its stored credentials when
    /// they may be presented (none otherwise: the listing then fails on a
    /// cluster that requires them, and the registry is left alone).
    async fn target(&self, cluster: &Cluster) -> Target {
        let target = Target::from_cluster(cluster);
        match self.health.credentials.for_cluster(cluster).await {
            Ok(Presentation::Present(credential)) => target.with_credential(credential),
            Ok(Presentation::Nothing) => target,
            Ok(Presentation::Withheld) => {
                tracing::debug!(cluster = %cluster.id,
                    "credentials not bound to the cluster's origins: listing services without them");
                target
            }
            Err(error) => {
                tracing::debug!(cluster = %cluster.id, %error, "listing services without credentials");
                target
            }
        }
    }
}

/// Whether the sync changed anything in the registry.
fn changed(report: &ServiceSyncReport) -> bool {
    !(report.registered.is_empty() && report.updated.is_empty() && report.gone.is_empty())
}
