//! Listing: every filter, combinations, paging and order, checked against an
//! independent count over the data the test wrote (the query plans are the
//! store contract's: `crates/store/tests/contract/listing.rs`).

use crate::helpers::*;
use fleetreg_model::{Capabilities, ClusterState, ClusterStatus, Connectivity};
use fleetreg_testkit::fleet_fixture::{expect, filter_cases, seeded, Seeded};
use serde_json::{json, Value};
use std::collections::BTreeSet;

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

api_test!(every_filter_matches_an_independent_count, |app| {
    let all = seed(&app, 48).await;
    let cases = filter_cases();
    let mut non_empty = 0;
    for (query, keep) in &cases {
        let expected = expect(&all, keep);
        let (actual, total) = names(&app, &format!("?{query}")).await;
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
