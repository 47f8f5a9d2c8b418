//! Listing: every filter, combinations, paging and order, checked against an
//! independent count over the data the test wrote; and the query plans.

use crate::helpers::*;
use fleetreg_model::{Capabilities, ClusterFilter, ClusterState, ClusterStatus, Connectivity};
use serde_json::{json, Value};
use std::collections::BTreeSet;

const TYPES: [&str; 4] = ["HUB", "SPOKE", "EDGE", "FAR_EDGE"];
const ENVS: [&str; 4] = ["PRODUCTION", "STAGING", "DEVELOPMENT", "LAB"];
const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-south-1"];
const TEAMS: [&str; 3] = ["platform", "data", "edge"];
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
    cluster_type: &'static str,
    environment: &'static str,
    region: &'static str,
    team: &'static str,
    tier: Option<&'static str>,
    state: ClusterState,
    gpu: Option<bool>,
    cnf: Option<bool>,
}

fn seeded(i: usize) -> Seeded {
    Seeded {
        name: format!("{}-{i:02}", ["alpha", "beta", "gamma"][i % 3]),
        cluster_type: TYPES[i % 4],
        environment: ENVS[(i / 2) % 4],
        region: REGIONS[i % 3],
        team: TEAMS[(i / 3) % 3],
        tier: i.is_multiple_of(5).then_some("gold"),
        state: STATES[(i / 4) % 4],
        gpu: match i % 7 {
            0 | 1 => Some(true),
            2 | 3 => Some(false),
            _ => None, // never discovered
        },
        cnf: match i % 6 {
            0 => Some(true),
            1 => Some(false),
            _ => None,
        },
    }
}

async fn seed(app: &TestApp, n: usize) -> Vec<Seeded> {
    let mut all = Vec::new();
    for i in 0..n {
        let s = seeded(i);
        let mut labels = json!({ "team": s.team });
        if let Some(tier) = s.tier {
            labels["tier"] = json!(tier);
        }
        let created = app
            .register(&s.name, json!({ "cluster_type": s.cluster_type, "environment": s.environment, "region": s.region, "labels": labels }))
            .await;
        let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
        if s.state != ClusterState::Unknown {
            let status = ClusterStatus {
                state: s.state,
                health_score: if s.state == ClusterState::Online {
                    100
                } else {
                    30
                },
                connectivity: if s.state == ClusterState::Offline {
                    Connectivity::Disconnected
                } else {
                    Connectivity::Connected
                },
                ..ClusterStatus::default()
            };
            app.store
                .record_status(id, status, Some(fleetreg_model::now()))
                .await
                .unwrap();
        }
        if s.gpu.is_some() || s.cnf.is_some() {
            let capabilities = Capabilities {
                has_gpu_nodes: s.gpu.unwrap_or(false),
                gpu_count: if s.gpu == Some(true) { 8 } else { 0 },
                has_cnf: s.cnf.unwrap_or(false),
                ..Capabilities::default()
            };
            app.store
                .set_capabilities(id, capabilities, None)
                .await
                .unwrap();
        }
        all.push(s);
    }
    all
}

async fn names(app: &TestApp, query: &str) -> (BTreeSet<String>, u64) {
    let response = app
        .list(&format!(
            "{query}{}page_size=100",
            if query.is_empty() { "?" } else { "&" }
        ))
        .await;
    assert_eq!(response.status(), 200, "{query}");
    assert!(response.headers().contains_key("x-fleetreg-revision"));
    let body: Value = response.json().await.unwrap();
    let names = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    (names, body["total"].as_u64().unwrap())
}

fn expect(all: &[Seeded], keep: impl Fn(&Seeded) -> bool) -> BTreeSet<String> {
    all.iter()
        .filter(|s| keep(s))
        .map(|s| s.name.clone())
        .collect()
}

api_test!(every_filter_matches_an_independent_count, |app| {
    let all = seed(&app, 48).await;
    type Case = (&'static str, Box<dyn Fn(&Seeded) -> bool>);
    let cases: Vec<Case> = vec![
        ("", Box::new(|_| true)),
        ("?name=beta", Box::new(|s| s.name.contains("beta"))),
        ("?name=BETA-1", Box::new(|s| s.name.contains("beta-1"))),
        ("?name=a-0", Box::new(|s| s.name.contains("a-0"))),
        ("?name=zzz", Box::new(|_| false)),
        ("?name=%25", Box::new(|_| false)),
        ("?name=_", Box::new(|_| false)),
        ("?cluster_type=EDGE", Box::new(|s| s.cluster_type == "EDGE")),
        (
            "?cluster_type=FAR_EDGE",
            Box::new(|s| s.cluster_type == "FAR_EDGE"),
        ),
        (
            "?environment=PRODUCTION",
            Box::new(|s| s.environment == "PRODUCTION"),
        ),
        ("?environment=LAB", Box::new(|s| s.environment == "LAB")),
        ("?region=eu-west-1", Box::new(|s| s.region == "eu-west-1")),
        ("?region=nowhere", Box::new(|_| false)),
        (
            "?state=UNKNOWN",
            Box::new(|s| s.state == ClusterState::Unknown),
        ),
        (
            "?state=ONLINE",
            Box::new(|s| s.state == ClusterState::Online),
        ),
        (
            "?state=DEGRADED",
            Box::new(|s| s.state == ClusterState::Degraded),
        ),
        (
            "?state=OFFLINE",
            Box::new(|s| s.state == ClusterState::Offline),
        ),
        ("?has_gpu=true", Box::new(|s| s.gpu == Some(true))),
        ("?has_gpu=false", Box::new(|s| s.gpu != Some(true))),
        ("?has_cnf=true", Box::new(|s| s.cnf == Some(true))),
        ("?has_cnf=false", Box::new(|s| s.cnf != Some(true))),
        ("?label=team=data", Box::new(|s| s.team == "data")),
        ("?label=tier=gold", Box::new(|s| s.tier == Some("gold"))),
        (
            "?label=team=data&label=tier=gold",
            Box::new(|s| s.team == "data" && s.tier == Some("gold")),
        ),
        ("?label=team=data&label=team=edge", Box::new(|_| false)),
        ("?label=team=nobody", Box::new(|_| false)),
        ("?label=owner=x", Box::new(|_| false)),
        (
            "?environment=PRODUCTION&label=team=platform",
            Box::new(|s| s.environment == "PRODUCTION" && s.team == "platform"),
        ),
        (
            "?cluster_type=SPOKE&region=us-east-1&state=ONLINE",
            Box::new(|s| {
                s.cluster_type == "SPOKE"
                    && s.region == "us-east-1"
                    && s.state == ClusterState::Online
            }),
        ),
        (
            "?environment=STAGING&has_gpu=true&label=team=platform",
            Box::new(|s| s.environment == "STAGING" && s.gpu == Some(true) && s.team == "platform"),
        ),
        (
            "?has_gpu=true&has_cnf=true",
            Box::new(|s| s.gpu == Some(true) && s.cnf == Some(true)),
        ),
    ];
    let mut non_empty = 0;
    for (query, keep) in &cases {
        let expected = expect(&all, keep);
        let (actual, total) = names(&app, query).await;
        assert_eq!(actual, expected, "{query}");
        assert_eq!(total, expected.len() as u64, "total for {query}");
        non_empty += usize::from(!expected.is_empty());
    }
    assert!(
        non_empty >= 20,
        "the cases exercise matches, not just empty lists"
    );
});

api_test!(filters_follow_updates_and_deletes, |app| {
    let a = app
        .register(
            "mover",
            json!({ "environment": "LAB", "labels": { "team": "a" } }),
        )
        .await;
    let id = a["id"].as_str().unwrap();
    assert_eq!(names(&app, "?environment=LAB&label=team=a").await.1, 1);
    app.put_cluster(
        id,
        &json!({ "environment": "STAGING", "labels": { "team": "b" } }),
    )
    .await;
    assert_eq!(
        names(&app, "?environment=LAB").await.1,
        0,
        "cached totals follow writes"
    );
    assert_eq!(names(&app, "?label=team=a").await.1, 0);
    assert_eq!(names(&app, "?environment=STAGING&label=team=b").await.1, 1);
    let online = ClusterStatus {
        state: ClusterState::Online,
        health_score: 100,
        connectivity: Connectivity::Connected,
        ..Default::default()
    };
    app.store
        .record_status(id.parse().unwrap(), online, None)
        .await
        .unwrap();
    assert_eq!(
        names(&app, "?state=ONLINE").await.1,
        1,
        "state transitions show in filters"
    );
    app.delete_cluster(id).await;
    assert_eq!(names(&app, "?label=team=b").await.1, 0);
    assert_eq!(names(&app, "?state=ONLINE").await.1, 0);
});

api_test!(paging_and_order, |app| {
    for i in (0..25).rev() {
        app.register(&format!("page-{i:02}"), json!({})).await;
    }
    let first: Value = app.list("").await.json().await.unwrap();
    assert_eq!(first["page"], 1);
    assert_eq!(first["page_size"], 20, "default page size");
    assert_eq!(first["total"], 25);
    assert_eq!(first["total_pages"], 2);
    assert_eq!(first["items"].as_array().unwrap().len(), 20);
    assert_eq!(first["items"][0]["name"], "page-00");
    let second: Value = app.list("?page=2").await.json().await.unwrap();
    let items = second["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(items[0]["name"], "page-20");
    assert_eq!(items[4]["name"], "page-24");
    let small: Value = app.list("?page=3&page_size=7").await.json().await.unwrap();
    assert_eq!(small["total_pages"], 4);
    let small_names: Vec<&str> = small["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        small_names,
        ["page-14", "page-15", "page-16", "page-17", "page-18", "page-19", "page-20"]
    );
    let beyond: Value = app.list("?page=9").await.json().await.unwrap();
    assert_eq!(beyond["items"], json!([]));
    assert_eq!(beyond["total"], 25);
    let max: Value = app.list("?page_size=100").await.json().await.unwrap();
    assert_eq!(max["items"].as_array().unwrap().len(), 25);
    let empty: Value = app.list("?region=none").await.json().await.unwrap();
    assert_eq!(
        (empty["total"].as_u64(), empty["total_pages"].as_u64()),
        (Some(0), Some(0))
    );
});

// Plans must reach clusters through an index for every indexed filter.
api_test!(filters_use_indexes, |app| {
    seed(&app, 12).await;
    let filters = [
        "cluster_type=EDGE",
        "environment=PRODUCTION",
        "region=us-east-1",
        "state=ONLINE",
        "has_gpu=true",
        "has_cnf=true",
        "label=team=data",
        "environment=PRODUCTION&label=team=platform",
    ];
    for query in filters {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let (filter, _) = ClusterFilter::from_query(pairs).unwrap();
        let plan = app.store.explain_list_clusters(&filter).await.unwrap();
        match app.backend {
            Backend::Sqlite => {
                // SEARCH lines are index lookups; a SCAN must at least walk an index.
                for line in plan.lines().filter(|l| l.starts_with("SCAN")) {
                    assert!(
                        line.contains("USING") && line.contains("INDEX"),
                        "{query}: full scan in plan:\n{plan}"
                    );
                }
                let label_index = plan.contains("SEARCH l USING PRIMARY KEY (key=? AND value=?");
                assert!(
                    plan.contains("idx_") || label_index,
                    "{query}: no filter index in plan:\n{plan}"
                );
                if query.contains("label=") {
                    assert!(label_index, "label filters search the label index:\n{plan}");
                }
            }
            Backend::Postgres => {
                assert!(
                    !plan.contains("Seq Scan on clusters"),
                    "{query}: sequential scan in plan:\n{plan}"
                );
                assert!(
                    plan.contains("idx_clusters"),
                    "{query}: no filter index in plan:\n{plan}"
                );
            }
        }
        if query.starts_with("label=") && app.backend == Backend::Postgres {
            assert!(
                plan.contains("idx_clusters_labels"),
                "label filter uses the GIN index:\n{plan}"
            );
        }
    }
});
