//! Concurrent writers: exactly one of many creates of one name wins; no write is lost.

use serde_json::{json, Value};

api_test!(twenty_concurrent_creates_of_one_name, |app| {
    let requests = (0..20).map(|i| {
        let request = app.client.post(app.url("/api/v1/clusters")).json(&json!({
            "name": "contested", "api_server_url": format!("https://api{i}.example.com")
        }));
        async move { request.send().await.unwrap().status().as_u16() }
    });
    let mut statuses = futures::future::join_all(requests).await;
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );
    let list: Value = app.list("?name=contested").await.json().await.unwrap();
    assert_eq!(list["total"], 1);
    let events: Value = app
        .get("/api/v1/events?after=0")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        events["items"].as_array().unwrap().len(),
        1,
        "one registration, one event"
    );
});

api_test!(
    concurrent_registrations_are_all_stored_with_distinct_revisions,
    |app| {
        let requests = (0..100).map(|i| {
            let request = app.client.post(app.url("/api/v1/clusters")).json(&json!({
                "name": format!("c-{i:03}"), "api_server_url": "https://x.example.com"
            }));
            async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
        });
        let created = futures::future::join_all(requests).await;
        let mut revisions: Vec<i64> = created
            .iter()
            .map(|c| c["revision"].as_i64().unwrap())
            .collect();
        revisions.sort();
        revisions.dedup();
        assert_eq!(revisions.len(), 100);
        assert_eq!(
            revisions,
            (1..=100).collect::<Vec<_>>(),
            "revisions are dense and unique"
        );
        let list: Value = app.list("?page_size=100").await.json().await.unwrap();
        assert_eq!(list["total"], 100);
        let names: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "lists sort by name");
    }
);

api_test!(concurrent_updates_with_if_match_let_one_win, |app| {
    let created = app.register("race", json!({})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let revision = created["revision"].as_i64().unwrap();
    let requests = (0..10).map(|i| {
        let request = app
            .client
            .put(app.url(&format!("/api/v1/clusters/{id}")))
            .header("If-Match", format!("\"{revision}\""))
            .json(&json!({ "region": format!("region-{i}") }));
        async move { request.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures::future::join_all(requests).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        9,
        "{statuses:?}"
    );
});

/// Two servers on one PostgreSQL database: revisions stay dense and become
/// visible in order, so a reader following the change log never finds a gap
/// that is filled later.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_one_ordered_change_log() {
    let Some(a) = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await else {
        return;
    };
    let b = a.spawn_replica().await;
    let writers = [&a, &b].into_iter().enumerate().flat_map(|(r, app)| {
        (0..4).map(move |w| {
            let client = app.client.clone();
            let url = app.url("/api/v1/clusters");
            async move {
                let mut ids = Vec::new();
                for i in 0..25 {
                    let response = client
                        .post(&url)
                        .json(&json!({ "name": format!("r{r}-w{w}-{i:02}"), "api_server_url": "https://x.example.com" }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 201);
                    ids.push(response.json::<Value>().await.unwrap()["revision"].as_i64().unwrap());
                }
                ids
            }
        })
    });
    let poller = async {
        let mut cursor = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while cursor < 200 && std::time::Instant::now() < deadline {
            let page: Value = a
                .get(&format!("/api/v1/events?after={cursor}&limit=1000"))
                .await
                .json()
                .await
                .unwrap();
            for event in page["items"].as_array().unwrap() {
                let revision = event["revision"].as_i64().unwrap();
                assert_eq!(
                    revision,
                    cursor + 1,
                    "a revision became visible before an earlier one"
                );
                cursor = revision;
            }
        }
        cursor
    };
    let (revisions, seen) = tokio::join!(futures::future::join_all(writers), poller);
    let mut all: Vec<i64> = revisions.into_iter().flatten().collect();
    all.sort();
    assert_eq!(all, (1..=200).collect::<Vec<_>>());
    assert_eq!(seen, 200);
    let from_b: Value = b.list("?page_size=1").await.json().await.unwrap();
    assert_eq!(from_b["total"], 200);
    drop(b);
}
