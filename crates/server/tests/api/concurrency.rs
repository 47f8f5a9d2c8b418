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
