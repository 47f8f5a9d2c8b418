//! The fleet views: summary, health and capabilities, aggregated by the store.

use crate::harness::*;
use chrono::Duration;
use fleetreg_model::{
    Capabilities, ClusterState, ClusterType, GpuTypeTotals, ObservabilityCapabilities,
    ObservabilityCoverage,
};
use serde_json::json;
use std::collections::BTreeMap;

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

/// Five clusters with known states, scores, sightings and capabilities.
async fn seed(store: &StoreRef) {
    let now = fleetreg_model::now();
    let register = |name: &str, cluster_type: &str, environment: &str| {
        registration(json!({
            "name": name,
            "cluster_type": cluster_type,
            "environment": environment,
        }))
    };
    let a = store
        .insert_cluster(register("fleet-a", "HUB", "PRODUCTION"), &operator())
        .await
        .unwrap();
    let b = store
        .insert_cluster(register("fleet-b", "SPOKE", "PRODUCTION"), &operator())
        .await
        .unwrap();
    let c = store
        .insert_cluster(register("fleet-c", "EDGE", "LAB"), &operator())
        .await
        .unwrap();
    store
        .insert_cluster(register("fleet-d", "EDGE", "DEVELOPMENT"), &operator())
        .await
        .unwrap();
    let e = store
        .insert_cluster(register("fleet-e", "HUB", "STAGING"), &operator())
        .await
        .unwrap();

    let two_hours_ago = now - Duration::hours(2);
    for (id, state, score, seen) in [
        (a.id, ClusterState::Online, 100, Some(now)),
        (b.id, ClusterState::Degraded, 60, Some(two_hours_ago)),
        (c.id, ClusterState::Offline, 10, None),
        (e.id, ClusterState::Online, 95, Some(now)),
    ] {
        store
            .record_status(id, status(state, score, seen.unwrap_or(now)), seen)
            .await
            .unwrap();
    }
    let caps = [
        (
            a.id,
            Capabilities {
                has_gpu_nodes: true,
                gpu_count: 4,
                gpu_types: vec!["A100".into()],
                has_cnf: true,
                cnf_types: vec!["vDU".into()],
                has_sriov: true,
                has_ptp: true,
                observability: ObservabilityCapabilities {
                    prometheus: true,
                    loki: true,
                    ..Default::default()
                },
                discovered_at: Some(now),
            },
        ),
        (
            b.id,
            Capabilities {
                has_cnf: true,
                cnf_types: vec!["vDU".into(), "UPF".into()],
                observability: ObservabilityCapabilities {
                    thanos: true,
                    ..Default::default()
                },
                discovered_at: Some(now),
                ..Capabilities::default()
            },
        ),
        (
            e.id,
            Capabilities {
                has_gpu_nodes: true,
                gpu_count: 2,
                gpu_types: vec!["A100".into(), "H100".into()],
                discovered_at: Some(now),
                ..Capabilities::default()
            },
        ),
    ];
    for (id, capabilities) in caps {
        store
            .set_capabilities(id, capabilities, None)
            .await
            .unwrap();
    }
}

store_test!(an_empty_fleet_has_every_key_at_zero, |store| async move {
    let summary = store.fleet_summary().await.unwrap();
    assert_eq!(summary.total_clusters, 0);
    assert_eq!(
        summary.by_state,
        counts(&[
            ("UNKNOWN", 0),
            ("ONLINE", 0),
            ("DEGRADED", 0),
            ("OFFLINE", 0)
        ])
    );
    assert_eq!(summary.by_type.len(), 4);
    assert_eq!(summary.by_environment.len(), 4);
    assert_eq!(summary.avg_health_score, 0.0);
    let health = store.fleet_health(&[], 10).await.unwrap();
    assert_eq!(health.total_clusters, 0);
    assert_eq!(health.score_distribution.len(), 5);
    assert!(health.score_distribution.iter().all(|b| b.clusters == 0));
    assert!(health.least_healthy.is_empty() && health.stale.is_empty());
    let capabilities = store.fleet_capabilities().await.unwrap();
    assert_eq!(capabilities.total_clusters, 0);
    assert!(capabilities.gpu_types.is_empty() && capabilities.cnf_types.is_empty());
});

store_test!(the_summary_counts_the_fleet, |store| async move {
    seed(&store).await;
    let summary = store.fleet_summary().await.unwrap();
    assert_eq!(summary.total_clusters, 5);
    assert_eq!(
        summary.by_state,
        counts(&[
            ("UNKNOWN", 1),
            ("ONLINE", 2),
            ("DEGRADED", 1),
            ("OFFLINE", 1)
        ])
    );
    assert_eq!(
        summary.by_type,
        counts(&[("HUB", 2), ("SPOKE", 1), ("EDGE", 2), ("FAR_EDGE", 0)])
    );
    assert_eq!(
        summary.by_environment,
        counts(&[
            ("PRODUCTION", 2),
            ("STAGING", 1),
            ("DEVELOPMENT", 1),
            ("LAB", 1)
        ])
    );
    assert_eq!(summary.total_gpu_count, 6);
    assert_eq!(summary.clusters_with_cnf, 2);
    assert_eq!(
        summary.avg_health_score, 53.0,
        "(100 + 60 + 10 + 0 + 95) / 5"
    );
});

store_test!(
    the_health_view_ranks_and_finds_stale_clusters,
    |store| async move {
        seed(&store).await;
        let now = fleetreg_model::now();
        let cutoffs = [
            (ClusterType::Hub, now - Duration::hours(1)),
            (ClusterType::Spoke, now - Duration::hours(1)),
        ];
        let health = store.fleet_health(&cutoffs, 10).await.unwrap();
        assert_eq!(health.total_clusters, 5);
        assert_eq!(health.by_state["ONLINE"], 2);
        assert_eq!(health.by_state["UNKNOWN"], 1);
        let buckets: Vec<(&str, u64)> = health
            .score_distribution
            .iter()
            .map(|b| (b.range.as_str(), b.clusters))
            .collect();
        assert_eq!(
            buckets,
            [
                ("0-24", 1),
                ("25-49", 0),
                ("50-74", 1),
                ("75-89", 0),
                ("90-100", 2)
            ],
            "assessed clusters only"
        );
        let least: Vec<(&str, i32)> = health
            .least_healthy
            .iter()
            .map(|c| (c.name.as_str(), c.health_score))
            .collect();
        assert_eq!(
            least,
            [
                ("fleet-c", 10),
                ("fleet-b", 60),
                ("fleet-e", 95),
                ("fleet-a", 100)
            ],
            "lowest first, never-checked clusters left out"
        );
        assert_eq!(health.least_healthy[0].state, ClusterState::Offline);
        assert_eq!(health.least_healthy[0].cluster_type, ClusterType::Edge);
        let stale: Vec<&str> = health.stale.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(stale, ["fleet-b"]);
        assert_eq!(health.stale_count, 1);
        assert_eq!(
            health.never_seen, 2,
            "fleet-c and fleet-d were never reached"
        );

        let short = store.fleet_health(&cutoffs, 2).await.unwrap();
        assert_eq!(short.least_healthy.len(), 2);
        assert_eq!(short.least_healthy[0].name, "fleet-c");
        let no_cutoffs = store.fleet_health(&[], 10).await.unwrap();
        assert_eq!(
            no_cutoffs.stale_count, 0,
            "types without a cutoff are never stale"
        );
        assert!(no_cutoffs.stale.is_empty());
    }
);

store_test!(
    the_capabilities_view_counts_discoveries,
    |store| async move {
        seed(&store).await;
        let caps = store.fleet_capabilities().await.unwrap();
        assert_eq!(caps.total_clusters, 5);
        assert_eq!(caps.clusters_discovered, 3);
        assert_eq!(caps.clusters_with_gpu, 2);
        assert_eq!(caps.total_gpu_count, 6);
        let gpu_types: Vec<(&str, GpuTypeTotals)> = caps
            .gpu_types
            .iter()
            .map(|(t, totals)| (t.as_str(), totals.clone()))
            .collect();
        assert_eq!(
            gpu_types,
            [
                (
                    "A100",
                    GpuTypeTotals {
                        clusters: 2,
                        gpu_count: 6
                    }
                ),
                (
                    "H100",
                    GpuTypeTotals {
                        clusters: 1,
                        gpu_count: 2
                    }
                ),
            ]
        );
        assert_eq!(caps.clusters_with_cnf, 2);
        assert_eq!(caps.cnf_types, counts(&[("UPF", 1), ("vDU", 2)]));
        assert_eq!(caps.clusters_with_sriov, 1);
        assert_eq!(caps.clusters_with_ptp, 1);
        assert_eq!(
            caps.observability,
            ObservabilityCoverage {
                prometheus: 1,
                thanos: 1,
                tempo: 0,
                loki: 1,
            }
        );
    }
);
