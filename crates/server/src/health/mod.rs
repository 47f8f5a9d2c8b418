//! Health checking (seed 8): the background [`HealthScheduler`] and the single
//! check both it and `POST /api/v1/clusters/{id}/refresh` run ([`check_and_record`]).
//!
//! Invariant: the probe only observes; every observation reaches the store through
//! `Store::record_status` / `Store::set_capabilities`, which decide what becomes an
//! event.

mod check;
mod locks;
mod scheduler;

pub use check::{
    check_and_record, discover_and_record, CheckOutcome, CredentialsLookup, DiscoverError,
};
pub use locks::{ClusterGuard, ClusterLocks};
pub use scheduler::{all_clusters, HealthScheduler, Tick, MAX_CONCURRENT_CHECKS};

use crate::settings::{DiscoveryConfig, HealthCheckConfig};
use fleetreg_model::{CheckTiming, ClusterType};
use fleetreg_probe::Prober;
use std::time::Duration;

/// What checks need besides the store: the shared prober and the configuration.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct HealthContext {
    /// The process's prober (pooled clients).
    pub prober: Prober,
    /// The `health_check:` settings.
    pub config: HealthCheckConfig,
    /// The `discovery:` settings.
    pub discovery: DiscoveryConfig,
    /// One probe per cluster at a time, across the scheduler and the API.
    pub locks: ClusterLocks,
    /// Stored credentials, opened for the probe.
    pub credentials: crate::credentials::Credentials,
    /// Checks started by a request that outlive its answer.
    pub background: Background,
}

/// Work a request starts and does not wait for (the check and discovery after
/// a credential change): cancelled at shutdown, which waits until it has
/// ended, so nothing of a stopped server still talks to clusters. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Background {
    tracker: tokio_util::task::TaskTracker,
    cancel: tokio_util::sync::CancellationToken,
}

impl Background {
    /// Runs `work` until it ends or [`Background::stop`] is called.
    pub fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = work => {}
            }
        });
    }

    /// Cancels the work running and waits until it has ended (work spawned
    /// afterwards ends at once).
    pub async fn stop(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl HealthContext {
    /// How often capabilities are rediscovered (`periodic_refresh_hours`; `None`
    /// when 0, i.e. only on registration and refresh).
    pub fn rediscovery_period(&self) -> Option<Duration> {
        let hours = self.discovery.periodic_refresh_hours;
        (hours > 0).then(|| Duration::from_secs(hours.saturating_mul(3600)))
    }

    /// The interval and timeout for clusters of `cluster_type`: the interval from
    /// the settings (at least one second), the timeout from `timeout_seconds` or
    /// else seed 8.3's default for the type.
    pub fn timing(&self, cluster_type: ClusterType) -> CheckTiming {
        let defaults = CheckTiming::default_for(cluster_type);
        let interval = match cluster_type {
            ClusterType::Hub => self.config.hub_interval_seconds,
            ClusterType::Spoke => self.config.spoke_interval_seconds,
            ClusterType::Edge => self.config.edge_interval_seconds,
            ClusterType::FarEdge => self.config.far_edge_interval_seconds,
        };
        CheckTiming {
            interval: Duration::from_secs(interval.max(1)),
            timeout: self
                .config
                .timeout_seconds
                .map_or(defaults.timeout, |s| Duration::from_secs(s.max(1))),
        }
    }
}
