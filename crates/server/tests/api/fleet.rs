//! Fleet views: summary, health and capabilities, checked against counts done
//! independently over the data the test wrote; and the empty fleet.

use crate::helpers::*;
use chrono::{DateTime, Duration, Utc};
use fleetreg_model::{
    Capabilities, CheckTiming, ClusterState, ClusterStatus, ClusterType, Connectivity,
    ObservabilityCapabilities,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const TYPES: [ClusterType; 4] = [
    ClusterType::Hub,
    ClusterType::Spoke,
    ClusterType::Edge,
    ClusterType::FarEdge,
];
const ENVS: [&str; 4] = ["PRODUCTION", "STAGING", "DEVELOPMENT", "LAB"];
const STATES: [ClusterState; 4] = [
    ClusterState::Unknown,
    ClusterState::Online,
    ClusterState::Degraded,
    ClusterState::Offline,
];

/// What the test wrote for one cluster, to count against.
#[derive(Debug, Clone)]
struct Seeded {
    name: String,
    cluster_type: ClusterType,
    environment: &'static str,
    state: ClusterState,
    score: i32,
    /// Seconds before the seeding time the cluster was last seen; None = never.
    seen_ago: Option<i64>,
    capabilities: Option<Capabilities>,
}

fn seeded(i: usize) -> Seeded {
    let state = STATES[(i / 2) % 4];
    let score = match state {
        ClusterState::Unknown => 0,
        ClusterState::Online => 80 + (i % 21) as i32,
        ClusterState::Degraded => 25 + ((i * 7) % 50) as i32,
        ClusterState::Offline => (i % 3) as i32 * 10,
    };
    let seen_ago = match (state, i % 5) {
        (ClusterState::Unknown, _) => None,
        (ClusterState::Offline, _) if i.is_multiple_of(3) => None,
        (_, 0) => Some(3600), // stale for every type
        (_, 1) => Some(45),   // stale only for HUB (2 × 15 s)
        _ => Some(0),
    };
    let gpu = i.is_multiple_of(3);
    let cnf = i % 4 == 1;
    let capabilities = (gpu || cnf).then(|| Capabilities {
        has_gpu_nodes: gpu,
        gpu_count: if gpu { i as i64 + 1 } else { 0 },
        gpu_types: match (gpu, i % 2) {
            (false, _) => vec![],
            (true, 0) => vec!["A100".into()],
            // A type listed twice counts once.
            (true, _) => vec!["A100".into(), "H100".into(), "A100".into()],
        },
        has_cnf: cnf,
        cnf_types: match (cnf, i % 8) {
            (false, _) => vec![],
            (true, 1) => vec!["vDU".into()],
            (true, _) => vec!["vDU".into(), "UPF".into()],
        },
        has_sriov: i.is_multiple_of(2),
        has_ptp: i.is_multiple_of(5),
        observability: ObservabilityCapabilities {
            prometheus: i.is_multiple_of(2),
            thanos: i.is_multiple_of(3),
            tempo: i.is_multiple_of(4),
            loki: i.is_multiple_of(6),
        },
        discovered_at: Some(fleetreg_model::now()),
    });
    Seeded {
        name: format!("fleet-{i:02}"),
        cluster_type: TYPES[i % 4],
        environment: ENVS[(i / 3) % 4],
        state,
        score,
        seen_ago,
        capabilities,
    }
}

async fn seed(app: &TestApp, n: usize, at: DateTime<Utc>) -> Vec<Seeded> {
    let mut all = Vec::new();
    for i in 0..n {
        let s = seeded(i);
        let created = app
            .register(
                &s.name,
                json!({ "cluster_type": s.cluster_type.as_str(), "environment": s.environment }),
            )
            .await;
        let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
        if s.state != ClusterState::Unknown {
            let status = ClusterStatus {
                state: s.state,
                health_score: s.score,
                connectivity: if s.state == ClusterState::Offline {
                    Connectivity::Disconnected
                } else {
                    Connectivity::Connected
                },
                ..ClusterStatus::default()
            };
            let seen = s.seen_ago.map(|ago| at - Duration::seconds(ago));
            app.store.record_status(id, status, seen).await.unwrap();
        }
        if let Some(caps) = &s.capabilities {
            app.store
                .set_capabilities(id, caps.clone(), None)
                .await
                .unwrap();
        }
        all.push(s);
    }
    all
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

fn tally<'a>(keys: impl IntoIterator<Item = &'a str>, all: impl Iterator<Item = String>) -> Value {
    let mut counts: BTreeMap<String, u64> = keys.into_iter().map(|k| (k.to_owned(), 0)).collect();
    for k in all {
        *counts.entry(k).or_default() += 1;
    }
    json!(counts)
}

fn is_stale(s: &Seeded) -> bool {
    let twice = CheckTiming::default_for(s.cluster_type).interval.as_secs() as i64 * 2;
    s.seen_ago.is_some_and(|ago| ago > twice)
}

api_test!(summary_matches_an_independent_count, |app| {
    let all = seed(&app, 40, fleetreg_model::now()).await;
    let body = get_json(&app, "/api/v1/fleet/summary").await;
    let total = all.len() as f64;
    let score_sum: i32 = all.iter().map(|s| s.score).sum();
    let expected = json!({
        "total_clusters": all.len(),
        "by_state": tally(["UNKNOWN", "ONLINE", "DEGRADED", "OFFLINE"], all.iter().map(|s| s.state.as_str().to_owned())),
        "by_type": tally(["HUB", "SPOKE", "EDGE", "FAR_EDGE"], all.iter().map(|s| s.cluster_type.as_str().to_owned())),
        "by_environment": tally(ENVS, all.iter().map(|s| s.environment.to_owned())),
        "total_gpu_count": all.iter().filter_map(|s| s.capabilities.as_ref()).map(|c| c.gpu_count).sum::<i64>(),
        "clusters_with_cnf": all.iter().filter(|s| s.capabilities.as_ref().is_some_and(|c| c.has_cnf)).count(),
        "avg_health_score": (f64::from(score_sum) / total * 10.0).round() / 10.0,
    });
    assert_eq!(body, expected);
});

api_test!(health_lists_buckets_least_healthy_and_stale, |app| {
    let all = seed(&app, 40, fleetreg_model::now()).await;
    let body = get_json(&app, "/api/v1/fleet/health?limit=5").await;
    assert_eq!(body["total_clusters"], all.len());
    assert_eq!(
        body["by_state"],
        tally(
            ["UNKNOWN", "ONLINE", "DEGRADED", "OFFLINE"],
            all.iter().map(|s| s.state.as_str().to_owned())
        )
    );

    let assessed: Vec<&Seeded> = all
        .iter()
        .filter(|s| s.state != ClusterState::Unknown)
        .collect();
    let buckets = [(0, 24), (25, 49), (50, 74), (75, 89), (90, 100)];
    let expected_buckets: Vec<Value> = buckets
        .iter()
        .map(|&(min, max)| {
            let n = assessed
                .iter()
                .filter(|s| (min..=max).contains(&s.score))
                .count();
            json!({ "range": format!("{min}-{max}"), "min": min, "max": max, "clusters": n })
        })
        .collect();
    assert_eq!(body["score_distribution"], json!(expected_buckets));

    let mut least = assessed.clone();
    least.sort_by(|a, b| a.score.cmp(&b.score).then(a.name.cmp(&b.name)));
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&body["least_healthy"]),
        least
            .iter()
            .take(5)
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    );
    let first = &body["least_healthy"][0];
    assert_eq!(first["health_score"], least[0].score);
    assert_eq!(first["state"], least[0].state.as_str());
    assert!(first["id"].is_string());

    let stale: Vec<&Seeded> = all.iter().filter(|s| is_stale(s)).collect();
    assert!(stale
        .iter()
        .any(|s| s.cluster_type == ClusterType::Hub && s.seen_ago == Some(45)));
    assert!(all
        .iter()
        .any(|s| s.cluster_type != ClusterType::Hub && s.seen_ago == Some(45)));
    assert_eq!(body["stale_count"], stale.len());
    let stale_names = names(&body["stale"]);
    assert_eq!(stale_names.len(), stale.len().min(5));
    for name in &stale_names {
        assert!(stale.iter().any(|s| &s.name == name), "{name} is not stale");
    }
    // Longest unseen first: the hour-old ones lead.
    let first_stale = all.iter().find(|s| s.name == stale_names[0]).unwrap();
    assert_eq!(first_stale.seen_ago, Some(3600));
    assert_eq!(
        body["never_seen"],
        all.iter().filter(|s| s.seen_ago.is_none()).count()
    );

    // The default list length is 10.
    let body = get_json(&app, "/api/v1/fleet/health").await;
    assert_eq!(
        body["least_healthy"].as_array().unwrap().len(),
        10.min(assessed.len())
    );
    assert_error(
        app.get("/api/v1/fleet/health?limit=0").await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
    assert_error(
        app.get("/api/v1/fleet/health?limt=3").await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
});

api_test!(capabilities_total_what_discovery_recorded, |app| {
    let all = seed(&app, 40, fleetreg_model::now()).await;
    let body = get_json(&app, "/api/v1/fleet/capabilities").await;
    let caps: Vec<&Capabilities> = all.iter().filter_map(|s| s.capabilities.as_ref()).collect();
    let count = |f: &dyn Fn(&Capabilities) -> bool| caps.iter().filter(|c| f(c)).count();
    let mut gpu_types: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    let mut cnf_types: BTreeMap<String, u64> = BTreeMap::new();
    for c in &caps {
        if c.has_gpu_nodes {
            for t in c
                .gpu_types
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
            {
                let e = gpu_types.entry(t.clone()).or_default();
                e.0 += 1;
                e.1 += c.gpu_count;
            }
        }
        if c.has_cnf {
            for t in &c.cnf_types {
                *cnf_types.entry(t.clone()).or_default() += 1;
            }
        }
    }
    let gpu_types: BTreeMap<String, Value> = gpu_types
        .into_iter()
        .map(|(t, (n, g))| (t, json!({ "clusters": n, "gpu_count": g })))
        .collect();
    let expected = json!({
        "total_clusters": all.len(),
        "clusters_discovered": caps.len(),
        "clusters_with_gpu": count(&|c| c.has_gpu_nodes),
        "total_gpu_count": caps.iter().map(|c| c.gpu_count).sum::<i64>(),
        "gpu_types": gpu_types,
        "clusters_with_cnf": count(&|c| c.has_cnf),
        "cnf_types": cnf_types,
        "clusters_with_sriov": count(&|c| c.has_sriov),
        "clusters_with_ptp": count(&|c| c.has_ptp),
        "observability": {
            "prometheus": count(&|c| c.observability.prometheus),
            "thanos": count(&|c| c.observability.thanos),
            "tempo": count(&|c| c.observability.tempo),
            "loki": count(&|c| c.observability.loki),
        },
    });
    assert_eq!(body, expected);
    assert!(body["gpu_types"]["H100"]["clusters"].as_u64().unwrap() > 0);
    assert!(body["cnf_types"]["UPF"].as_u64().unwrap() > 0);
});

api_test!(an_empty_fleet_reports_zeroes_with_every_key, |app| {
    let body = get_json(&app, "/api/v1/fleet/summary").await;
    assert_eq!(
        body,
        json!({
            "total_clusters": 0,
            "by_state": { "UNKNOWN": 0, "ONLINE": 0, "DEGRADED": 0, "OFFLINE": 0 },
            "by_type": { "HUB": 0, "SPOKE": 0, "EDGE": 0, "FAR_EDGE": 0 },
            "by_environment": { "PRODUCTION": 0, "STAGING": 0, "DEVELOPMENT": 0, "LAB": 0 },
            "total_gpu_count": 0,
            "clusters_with_cnf": 0,
            "avg_health_score": 0.0,
        })
    );
    let health = get_json(&app, "/api/v1/fleet/health").await;
    assert_eq!(health["total_clusters"], 0);
    assert_eq!(health["score_distribution"].as_array().unwrap().len(), 5);
    assert!(health["score_distribution"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["clusters"] == 0));
    assert_eq!(health["least_healthy"], json!([]));
    assert_eq!(health["stale"], json!([]));
    assert_eq!(health["stale_count"], 0);
    assert_eq!(health["never_seen"], 0);
    let caps = get_json(&app, "/api/v1/fleet/capabilities").await;
    assert_eq!(caps["total_clusters"], 0);
    assert_eq!(caps["total_gpu_count"], 0);
    assert_eq!(caps["gpu_types"], json!({}));
    assert_eq!(caps["observability"]["loki"], 0);
});
