//! Fleet views (seed 4.1 "Fleet Operations", 4.2 "Fleet Summary"): the result
//! types of `/api/v1/fleet/{summary,health,capabilities}` and the pure folds
//! that turn the store's aggregate rows into them.
//!
//! Every map of counts keyed by an enum holds every value of the enum, with 0
//! where no cluster has it, so clients never have to treat a missing key as 0.

use crate::{ClusterState, ClusterType, Environment};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

/// The health-score buckets of the fleet health view, inclusive bounds, in order.
pub const SCORE_BUCKETS: [(i32, i32); 5] = [(0, 24), (25, 49), (50, 74), (75, 89), (90, 100)];

/// `GET /api/v1/fleet/summary`, exactly the shape of seed 4.2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FleetSummary {
    /// All registered clusters.
    pub total_clusters: u64,
    /// Clusters per state; every state present, 0 when none.
    pub by_state: BTreeMap<String, u64>,
    /// Clusters per type; every type present, 0 when none.
    pub by_type: BTreeMap<String, u64>,
    /// Clusters per environment; every environment present, 0 when none.
    pub by_environment: BTreeMap<String, u64>,
    /// Sum of discovered `gpu_count` over all clusters.
    pub total_gpu_count: i64,
    /// Clusters whose discovered capabilities report CNF workloads.
    pub clusters_with_cnf: u64,
    /// Mean `health_score` over all clusters (UNKNOWN ones count with their 0),
    /// rounded to one decimal; 0 for an empty fleet.
    pub avg_health_score: f64,
}

/// One row of the store's summary aggregate: the clusters of one
/// (state, type, environment) combination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryGroup {
    /// The state (wire form).
    pub state: String,
    /// The cluster type (wire form).
    pub cluster_type: String,
    /// The environment (wire form).
    pub environment: String,
    /// How many clusters.
    pub clusters: i64,
    /// Sum of their `gpu_count`.
    pub gpu_count: i64,
    /// How many of them have CNF.
    pub with_cnf: i64,
    /// Sum of their `health_score`.
    pub health_score_sum: i64,
}

fn zeroes<'a>(keys: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, u64> {
    keys.into_iter().map(|k| (k.to_owned(), 0)).collect()
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

/// Rounds to one decimal.
fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

impl FleetSummary {
    /// Folds the per-(state, type, environment) groups into the summary.
    pub fn from_groups(groups: &[SummaryGroup]) -> FleetSummary {
        let mut summary = FleetSummary {
            total_clusters: 0,
            by_state: zeroes(ClusterState::ALL.iter().map(|s| s.as_str())),
            by_type: zeroes(ClusterType::ALL.iter().map(|t| t.as_str())),
            by_environment: zeroes(Environment::ALL.iter().map(|e| e.as_str())),
            total_gpu_count: 0,
            clusters_with_cnf: 0,
            avg_health_score: 0.0,
        };
        let mut score_sum: i64 = 0;
        for g in groups {
            let n = count(g.clusters);
            summary.total_clusters += n;
            *summary.by_state.entry(g.state.clone()).or_default() += n;
            *summary.by_type.entry(g.cluster_type.clone()).or_default() += n;
            *summary
                .by_environment
                .entry(g.environment.clone())
                .or_default() += n;
            summary.total_gpu_count += g.gpu_count;
            summary.clusters_with_cnf += count(g.with_cnf);
            score_sum += g.health_score_sum;
        }
        if summary.total_clusters > 0 {
            summary.avg_health_score = round1(score_sum as f64 / summary.total_clusters as f64);
        }
        summary
    }
}

/// `GET /api/v1/fleet/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FleetHealth {
    /// All registered clusters.
    pub total_clusters: u64,
    /// Clusters per state; every state present, 0 when none.
    pub by_state: BTreeMap<String, u64>,
    /// Clusters per health-score bucket ([`SCORE_BUCKETS`]), over assessed
    /// clusters (state not UNKNOWN), lowest bucket first; every bucket present.
    pub score_distribution: Vec<ScoreBucket>,
    /// The assessed clusters (state not UNKNOWN) with the lowest health score,
    /// lowest first (ties by name), at most `limit`.
    pub least_healthy: Vec<FleetClusterHealth>,
    /// How many clusters were last seen longer ago than twice the check
    /// interval of their type (seed 8.3).
    pub stale_count: u64,
    /// The stale clusters, longest unseen first, at most `limit`.
    pub stale: Vec<FleetClusterHealth>,
    /// Clusters no check has ever reached (`last_seen_at` null), including
    /// clusters not checked yet; these are not counted as stale.
    pub never_seen: u64,
    /// Clusters whose credentials expire within `credentials.rotation_warning_days`
    /// and have not expired yet.
    #[serde(default)]
    pub credentials_expiring_count: u64,
    /// Clusters whose credentials have expired.
    #[serde(default)]
    pub credentials_expired_count: u64,
    /// The credentials of both counts, soonest expiry first (expired ones
    /// first), at most `limit`.
    #[serde(default)]
    pub credentials_expiring: Vec<crate::ExpiringCredentials>,
    /// Hosts without a heartbeat for longer than `sync.orphan_after_seconds`.
    #[serde(default)]
    pub orphaned_hosts_count: u64,
}

/// The clusters whose health score falls in `[min, max]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScoreBucket {
    /// The range as text, e.g. `75-89`.
    pub range: String,
    /// Lowest score of the bucket.
    pub min: i32,
    /// Highest score of the bucket.
    pub max: i32,
    /// How many clusters.
    pub clusters: u64,
}

/// One cluster in a fleet health list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FleetClusterHealth {
    /// The cluster's id.
    pub id: Uuid,
    /// The cluster's name.
    pub name: String,
    /// Its type (which sets its check interval).
    pub cluster_type: ClusterType,
    /// Its state.
    pub state: ClusterState,
    /// Its health score.
    pub health_score: i32,
    /// When a check last reached its API server.
    pub last_seen_at: Option<DateTime<Utc>>,
}

impl FleetHealth {
    /// Builds the health view from the store's aggregates: `(state, bucket
    /// index or None for UNKNOWN, clusters)` rows, the two lists, the stale and
    /// never-seen counts. The credential expiry fields start empty; the server
    /// fills them with its warning window.
    pub fn from_parts(
        groups: &[(String, Option<usize>, i64)],
        least_healthy: Vec<FleetClusterHealth>,
        stale_count: i64,
        stale: Vec<FleetClusterHealth>,
        never_seen: i64,
    ) -> FleetHealth {
        let mut by_state = zeroes(ClusterState::ALL.iter().map(|s| s.as_str()));
        let mut score_distribution: Vec<ScoreBucket> = SCORE_BUCKETS
            .iter()
            .map(|&(min, max)| ScoreBucket {
                range: format!("{min}-{max}"),
                min,
                max,
                clusters: 0,
            })
            .collect();
        let mut total_clusters = 0;
        for (state, bucket, n) in groups {
            let n = count(*n);
            total_clusters += n;
            *by_state.entry(state.clone()).or_default() += n;
            if let Some(b) = bucket.and_then(|i| score_distribution.get_mut(i)) {
                b.clusters += n;
            }
        }
        FleetHealth {
            total_clusters,
            by_state,
            score_distribution,
            least_healthy,
            stale_count: count(stale_count),
            stale,
            never_seen: count(never_seen),
            credentials_expiring_count: 0,
            credentials_expired_count: 0,
            credentials_expiring: Vec::new(),
            orphaned_hosts_count: 0,
        }
    }
}

/// `GET /api/v1/fleet/capabilities`: discovered capabilities across the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FleetCapabilities {
    /// All registered clusters.
    pub total_clusters: u64,
    /// Clusters on which discovery has run (`capabilities` not null).
    pub clusters_discovered: u64,
    /// Clusters with GPU nodes.
    pub clusters_with_gpu: u64,
    /// Sum of `gpu_count` over all clusters.
    pub total_gpu_count: i64,
    /// Per GPU product name (from `gpu_types`): how many clusters list it and
    /// the sum of those clusters' `gpu_count`. A cluster listing several types
    /// counts its whole `gpu_count` under each (discovery records one count
    /// per cluster, not per type), so these sums can exceed `total_gpu_count`.
    pub gpu_types: BTreeMap<String, GpuTypeTotals>,
    /// Clusters with CNF workloads.
    pub clusters_with_cnf: u64,
    /// Per CNF kind (from `cnf_types`): how many clusters list it.
    pub cnf_types: BTreeMap<String, u64>,
    /// Clusters with SR-IOV network node policies.
    pub clusters_with_sriov: u64,
    /// Clusters with the PTP operator.
    pub clusters_with_ptp: u64,
    /// How many clusters have each observability component discovered.
    pub observability: ObservabilityCoverage,
}

/// Totals of one GPU product name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GpuTypeTotals {
    /// Clusters listing the type.
    pub clusters: u64,
    /// Sum of those clusters' `gpu_count`.
    pub gpu_count: i64,
}

/// How many clusters have each observability component discovered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ObservabilityCoverage {
    /// Prometheus found.
    pub prometheus: u64,
    /// Thanos querier found.
    pub thanos: u64,
    /// Tempo found.
    pub tempo: u64,
    /// Loki found.
    pub loki: u64,
}

/// The scalar aggregates of the capabilities view, as the store reads them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapabilityCounts {
    /// All clusters.
    pub total: i64,
    /// Clusters with capabilities.
    pub discovered: i64,
    /// Clusters with GPU.
    pub with_gpu: i64,
    /// Sum of `gpu_count`.
    pub gpu_count: i64,
    /// Clusters with CNF.
    pub with_cnf: i64,
    /// Clusters with SR-IOV.
    pub with_sriov: i64,
    /// Clusters with PTP.
    pub with_ptp: i64,
    /// Clusters with Prometheus.
    pub prometheus: i64,
    /// Clusters with Thanos.
    pub thanos: i64,
    /// Clusters with Tempo.
    pub tempo: i64,
    /// Clusters with Loki.
    pub loki: i64,
}

impl FleetCapabilities {
    /// Builds the view from the scalar counts, `(gpu type, clusters, gpus)` rows
    /// and `(cnf type, clusters)` rows.
    pub fn from_parts(
        c: CapabilityCounts,
        gpu_types: &[(String, i64, i64)],
        cnf_types: &[(String, i64)],
    ) -> FleetCapabilities {
        FleetCapabilities {
            total_clusters: count(c.total),
            clusters_discovered: count(c.discovered),
            clusters_with_gpu: count(c.with_gpu),
            total_gpu_count: c.gpu_count,
            gpu_types: gpu_types
                .iter()
                .map(|(t, clusters, gpus)| {
                    (
                        t.clone(),
                        GpuTypeTotals {
                            clusters: count(*clusters),
                            gpu_count: *gpus,
                        },
                    )
                })
                .collect(),
            clusters_with_cnf: count(c.with_cnf),
            cnf_types: cnf_types
                .iter()
                .map(|(t, n)| (t.clone(), count(*n)))
                .collect(),
            clusters_with_sriov: count(c.with_sriov),
            clusters_with_ptp: count(c.with_ptp),
            observability: ObservabilityCoverage {
                prometheus: count(c.prometheus),
                thanos: count(c.thanos),
                tempo: count(c.tempo),
                loki: count(c.loki),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(
        state: &str,
        t: &str,
        e: &str,
        n: i64,
        gpus: i64,
        cnf: i64,
        score: i64,
    ) -> SummaryGroup {
        SummaryGroup {
            state: state.into(),
            cluster_type: t.into(),
            environment: e.into(),
            clusters: n,
            gpu_count: gpus,
            with_cnf: cnf,
            health_score_sum: score,
        }
    }

    #[test]
    fn empty_fleet_has_every_key_at_zero() {
        let s = FleetSummary::from_groups(&[]);
        assert_eq!(s.total_clusters, 0);
        assert_eq!(s.by_state.len(), ClusterState::ALL.len());
        assert_eq!(s.by_type.len(), ClusterType::ALL.len());
        assert_eq!(s.by_environment.len(), Environment::ALL.len());
        assert!(s.by_state.values().all(|&n| n == 0));
        assert_eq!(s.avg_health_score, 0.0);
    }

    #[test]
    fn groups_fold_into_totals_and_a_rounded_average() {
        let s = FleetSummary::from_groups(&[
            group("ONLINE", "SPOKE", "PRODUCTION", 2, 16, 1, 200),
            group("DEGRADED", "HUB", "LAB", 1, 0, 0, 50),
        ]);
        assert_eq!(s.total_clusters, 3);
        assert_eq!(s.by_state["ONLINE"], 2);
        assert_eq!(s.by_state["OFFLINE"], 0);
        assert_eq!(s.by_type["HUB"], 1);
        assert_eq!(s.by_environment["PRODUCTION"], 2);
        assert_eq!(s.total_gpu_count, 16);
        assert_eq!(s.clusters_with_cnf, 1);
        assert_eq!(s.avg_health_score, 83.3);
    }

    #[test]
    fn health_buckets_are_all_present() {
        let h = FleetHealth::from_parts(
            &[("ONLINE".into(), Some(4), 3), ("UNKNOWN".into(), None, 2)],
            vec![],
            0,
            vec![],
            2,
        );
        assert_eq!(h.total_clusters, 5);
        assert_eq!(h.score_distribution.len(), SCORE_BUCKETS.len());
        assert_eq!(h.score_distribution[4].clusters, 3);
        assert_eq!(h.score_distribution[4].range, "90-100");
        assert_eq!(h.by_state["UNKNOWN"], 2);
    }
}
