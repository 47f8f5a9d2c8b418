//! Cluster CRUD as a user sees it: bodies, defaults, status codes, headers.

use crate::helpers::*;
use serde_json::{json, Value};

fn seed_request() -> Value {
    json!({
      "name": "prod-east-1",
      "display_name": "Production East 1",
      "api_server_url": "https://api.prod-east-1.example.com:6443",
      "cluster_type": "SPOKE",
      "platform": "OPENSHIFT",
      "region": "us-east-1",
      "environment": "PRODUCTION",
      "labels": { "team": "platform", "cost-center": "eng-001" },
      "endpoints": { "prometheus_url": "https://thanos-querier.openshift-monitoring.svc:9091" }
    })
}

api_test!(register_returns_the_seed_response, |app| {
    let response = app.post_cluster(&seed_request()).await;
    assert_eq!(response.status(), 201);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    assert_eq!(location, format!("/api/v1/clusters/{id}"));
    assert_eq!(etag, format!("\"{}\"", body["revision"]));
    for field in [
        "name",
        "display_name",
        "api_server_url",
        "cluster_type",
        "platform",
        "region",
        "environment",
        "labels",
        "endpoints",
    ] {
        assert_eq!(body[field], seed_request()[field], "{field}");
    }
    assert_eq!(body["platform_version"], Value::Null);
    assert_eq!(body["capabilities"], Value::Null);
    assert_eq!(body["status"]["state"], "UNKNOWN");
    assert_eq!(body["status"]["health_score"], 0);
    assert_eq!(body["status"]["connectivity"], "DISCONNECTED");
    assert_eq!(body["last_seen_at"], Value::Null);
    assert_eq!(body["created_at"], body["updated_at"]);
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap()).unwrap();

    let fetched: Value = app.get_cluster(id).await.json().await.unwrap();
    assert_eq!(fetched, body);
    let by_name = app.get("/api/v1/clusters/by-name/prod-east-1").await;
    assert_eq!(by_name.status(), 200);
    assert_eq!(by_name.json::<Value>().await.unwrap(), body);
});

api_test!(defaults_follow_the_schema, |app| {
    let body = app.register("minimal", json!({})).await;
    assert_eq!(body["cluster_type"], "SPOKE");
    assert_eq!(body["platform"], "OPENSHIFT");
    assert_eq!(body["environment"], "DEVELOPMENT");
    assert_eq!(body["labels"], json!({}));
    assert_eq!(body["endpoints"], json!({}));
    assert_eq!(body["display_name"], Value::Null);
    assert_eq!(body["region"], Value::Null);
});

api_test!(update_changes_only_given_fields, |app| {
    let created = app
        .post_cluster(&seed_request())
        .await
        .json::<Value>()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let response = app
        .put_cluster(
            id,
            &json!({ "region": "us-east-2", "labels": { "team": "sre" } }),
        )
        .await;
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["region"], "us-east-2");
    assert_eq!(
        updated["labels"],
        json!({ "team": "sre" }),
        "labels are replaced whole"
    );
    assert_eq!(updated["display_name"], created["display_name"]);
    assert_eq!(updated["endpoints"], created["endpoints"]);
    assert_eq!(updated["created_at"], created["created_at"]);
    assert!(updated["revision"].as_i64() > created["revision"].as_i64());
    assert_eq!(etag, format!("\"{}\"", updated["revision"]));
    assert_ne!(updated["updated_at"], created["updated_at"]);

    // null clears nullable fields; labels null clears labels.
    let cleared: Value = app
        .put_cluster(id, &json!({ "display_name": null, "labels": null }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["display_name"], Value::Null);
    assert_eq!(cleared["labels"], json!({}));

    // The GET body can be sent back unchanged: read-only fields are ignored, nothing changes.
    let current: Value = app.get_cluster(id).await.json().await.unwrap();
    let echoed = app.put_cluster(id, &current).await;
    assert_eq!(echoed.status(), 200);
    assert_eq!(
        echoed.json::<Value>().await.unwrap()["revision"],
        current["revision"]
    );

    // A status in the body does not change the status.
    let ignored: Value = app
        .put_cluster(
            id,
            &json!({ "status": { "state": "ONLINE" }, "region": "eu-1" }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ignored["status"]["state"], "UNKNOWN");
    assert_eq!(ignored["region"], "eu-1");
});

api_test!(name_is_immutable, |app| {
    let created = app.register("keep-name", json!({})).await;
    let id = created["id"].as_str().unwrap();
    let body = assert_error(
        app.put_cluster(id, &json!({ "name": "new-name" })).await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "name");
    let same = app
        .put_cluster(id, &json!({ "name": "keep-name", "region": "r" }))
        .await;
    assert_eq!(same.status(), 200);
    let after: Value = app.get_cluster(id).await.json().await.unwrap();
    assert_eq!(after["name"], "keep-name");
});

api_test!(if_match_guards_updates_and_deletes, |app| {
    let created = app.register("guarded", json!({})).await;
    let id = created["id"].as_str().unwrap();
    let rev = created["revision"].as_i64().unwrap();
    let put = |if_match: String, region: &'static str| {
        let request = app
            .client
            .put(app.url(&format!("/api/v1/clusters/{id}")))
            .header("If-Match", if_match)
            .json(&json!({ "region": region }));
        async move { request.send().await.unwrap() }
    };
    let ok = put(format!("\"{rev}\""), "a").await;
    assert_eq!(ok.status(), 200);
    let body = assert_error(
        put(format!("\"{rev}\""), "b").await,
        412,
        "PRECONDITION_FAILED",
    )
    .await;
    assert_eq!(
        body["error"]["details"]["current_revision"]
            .as_i64()
            .unwrap(),
        rev + 1
    );
    assert_error(
        put("\"garbage\"".into(), "b").await,
        412,
        "PRECONDITION_FAILED",
    )
    .await;
    let region: Value = app.get_cluster(id).await.json().await.unwrap();
    assert_eq!(region["region"], "a", "the stale write changed nothing");
    let stale_delete = app
        .client
        .delete(app.url(&format!("/api/v1/clusters/{id}")))
        .header("If-Match", format!("\"{rev}\""))
        .send()
        .await
        .unwrap();
    assert_error(stale_delete, 412, "PRECONDITION_FAILED").await;
    let delete = app
        .client
        .delete(app.url(&format!("/api/v1/clusters/{id}")))
        .header("If-Match", format!("\"{}\"", rev + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 204);
});

api_test!(delete_removes_the_cluster, |app| {
    let created = app
        .register("doomed", json!({ "labels": { "a": "b" } }))
        .await;
    let id = created["id"].as_str().unwrap();
    let response = app.delete_cluster(id).await;
    assert_eq!(response.status(), 204);
    assert!(response.text().await.unwrap().is_empty());
    assert_error(app.get_cluster(id).await, 404, "CLUSTER_NOT_FOUND").await;
    assert_error(
        app.get("/api/v1/clusters/by-name/doomed").await,
        404,
        "CLUSTER_NOT_FOUND",
    )
    .await;
    assert_error(app.delete_cluster(id).await, 404, "CLUSTER_NOT_FOUND").await;
    let list: Value = app.list("?label=a=b").await.json().await.unwrap();
    assert_eq!(list["total"], 0);
    // The name is free again.
    app.register("doomed", json!({})).await;
});

api_test!(status_endpoint_returns_the_status, |app| {
    let created = app.register("with-status", json!({})).await;
    let id = created["id"].as_str().unwrap();
    let response = app.get(&format!("/api/v1/clusters/{id}/status")).await;
    assert_eq!(response.status(), 200);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["state"], "UNKNOWN");
    assert_eq!(status["health_score"], 0);
    assert_eq!(status["connectivity"], "DISCONNECTED");
    assert_error(
        app.get(&format!("/api/v1/clusters/{}/status", uuid::Uuid::now_v7()))
            .await,
        404,
        "CLUSTER_NOT_FOUND",
    )
    .await;
});

api_test!(every_mutation_is_audited, |app| {
    let created = app.register("audited", json!({})).await;
    let id = created["id"].as_str().unwrap();
    app.put_cluster(id, &json!({ "region": "r" })).await;
    app.post_cluster(&json!({ "name": "audited", "api_server_url": "https://x" }))
        .await;
    app.delete_cluster(id).await;
    let entries = app
        .store
        .list_audit(&fleetreg_store::AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    // The bootstrap admin token's creation comes first, by the system.
    assert_eq!(entries[0].action, "token.create");
    assert_eq!(entries[0].actor, "system:bootstrap");
    let entries = &entries[1..];
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e.action.as_str(),
                if e.result == fleetreg_model::AuditResult::Success {
                    "ok"
                } else {
                    "fail"
                },
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("cluster.create", "ok"),
            ("cluster.update", "ok"),
            ("cluster.create", "fail"),
            ("cluster.delete", "ok")
        ]
    );
    assert!(entries.iter().all(|e| e.actor == "bootstrap-admin"));
    assert!(entries.iter().all(|e| e.role.as_deref() == Some("admin")));
    assert!(entries
        .iter()
        .all(|e| e.source.as_deref() == Some("127.0.0.1")));
    assert!(entries.iter().all(|e| e.request_id.is_some()));
    assert_eq!(
        entries[2].error_code.as_deref(),
        Some("CLUSTER_ALREADY_EXISTS")
    );
    assert_eq!(entries[0].revision, created["revision"].as_i64());
});
