//! Operational endpoints: health, readiness, metrics, OpenAPI, request ids.

use crate::helpers::*;
use serde_json::{json, Value};

api_test!(health_and_ready, |app| {
    let health = app.get("/health").await;
    assert_eq!(health.status(), 200);
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    let expected = match app.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(body["store"], expected);
});

api_test!(metrics_count_requests_by_route_and_status, |app| {
    app.register("metered", json!({})).await;
    app.get(&format!("/api/v1/clusters/{}", uuid::Uuid::now_v7()))
        .await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("fleetreg_http_requests_total{")
                && l.contains("route=\"/api/v1/clusters\"")
                && l.contains("method=\"POST\"")
                && l.contains("status=\"201\"")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("fleetreg_http_requests_total{")
                && l.contains("route=\"/api/v1/clusters/{id}\"")
                && l.contains("status=\"404\"")),
        "{text}"
    );
    assert!(
        text.contains("fleetreg_http_request_duration_seconds_bucket{"),
        "latency is a histogram"
    );
    let durability = match app.backend {
        Backend::Sqlite => "synchronous=FULL",
        Backend::Postgres => "synchronous_commit=on",
    };
    assert!(
        text.lines()
            .any(|l| l.starts_with("fleetreg_store_info{") && l.contains(durability)),
        "{text}"
    );
});

api_test!(request_ids_are_returned_and_propagated, |app| {
    let generated = app.get("/health").await;
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    let given = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-me-42");
});

api_test!(openapi_document_lists_every_route, |app| {
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut paths: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/api/v1/audit",
            "/api/v1/clients",
            "/api/v1/clients/export",
            "/api/v1/clients/import",
            "/api/v1/clients/summary",
            "/api/v1/clients/{name}",
            "/api/v1/clients/{name}/deploy",
            "/api/v1/clients/{name}/destroy",
            "/api/v1/clients/{name}/health",
            "/api/v1/clients/{name}/history",
            "/api/v1/clients/{name}/maintenance",
            "/api/v1/clients/{name}/notes",
            "/api/v1/clients/{name}/rebuild",
            "/api/v1/clients/{name}/status",
            "/api/v1/clients/{name}/versions",
            "/api/v1/clusters",
            "/api/v1/clusters/by-name/{name}",
            "/api/v1/clusters/{id}",
            "/api/v1/clusters/{id}/credentials",
            "/api/v1/clusters/{id}/credentials/rebind",
            "/api/v1/clusters/{id}/credentials/rotate",
            "/api/v1/clusters/{id}/credentials/validate",
            "/api/v1/clusters/{id}/health/history",
            "/api/v1/clusters/{id}/hosts",
            "/api/v1/clusters/{id}/leader",
            "/api/v1/clusters/{id}/refresh",
            "/api/v1/clusters/{id}/status",
            "/api/v1/clusters/{id}/sync-status",
            "/api/v1/credentials/expiring",
            "/api/v1/deployments/{deployment_id}",
            "/api/v1/deployments/{deployment_id}/conflicts",
            "/api/v1/deployments/{deployment_id}/enable",
            "/api/v1/deployments/{deployment_id}/move",
            "/api/v1/deployments/{deployment_id}/pause",
            "/api/v1/deployments/{deployment_id}/sync",
            "/api/v1/domains",
            "/api/v1/domains/{name}",
            "/api/v1/events",
            "/api/v1/events/stream",
            "/api/v1/fleet/capabilities",
            "/api/v1/fleet/health",
            "/api/v1/fleet/summary",
            "/api/v1/hosts/orphaned",
            "/api/v1/hosts/{host_id}/deployments",
            "/api/v1/hosts/{host_id}/heartbeat",
            "/api/v1/nodes",
            "/api/v1/nodes/{name}",
            "/api/v1/nodes/{name}/ack",
            "/api/v1/nodes/{name}/config",
            "/api/v1/nodes/{name}/config/stream",
            "/api/v1/nodes/{name}/token",
            "/api/v1/openapi.json",
            "/api/v1/rollouts",
            "/api/v1/rollouts/{rollout_id}",
            "/api/v1/rollouts/{rollout_id}/abort",
            "/api/v1/rollouts/{rollout_id}/pause",
            "/api/v1/rollouts/{rollout_id}/promote",
            "/api/v1/rollouts/{rollout_id}/resume",
            "/api/v1/routes",
            "/api/v1/routing",
            "/api/v1/routing/{service}",
            "/api/v1/services",
            "/api/v1/services/sync",
            "/api/v1/services/{name}",
            "/api/v1/sync-jobs/{job_id}/finish",
            "/api/v1/sync/health",
            "/api/v1/sync/push",
            "/api/v1/sync/reconcile",
            "/api/v1/tokens",
            "/api/v1/tokens/{id}",
            "/health",
            "/metrics",
            "/ready",
        ]
    );
    for schema in [
        "Cluster",
        "ClusterCreateRequest",
        "ClusterUpdateRequest",
        "ClusterStatus",
        "Event",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    // Every route the router serves is documented, and vice versa.
    for path in &paths {
        let concrete = path
            .replace("{id}", &uuid::Uuid::now_v7().to_string())
            .replace("{name}", "x");
        // GET where documented, else POST (e.g. `/clusters/{id}/refresh`), else DELETE.
        let response = if doc["paths"][path]["get"].is_object() {
            app.get(&concrete).await
        } else if doc["paths"][path]["delete"].is_object()
            && !doc["paths"][path]["post"].is_object()
        {
            app.client.delete(app.url(&concrete)).send().await.unwrap()
        } else {
            app.client.post(app.url(&concrete)).send().await.unwrap()
        };
        assert_ne!(
            response.status(),
            405,
            "{path} answers its documented method"
        );
        if response.status() == 404 {
            let body: Value = response.json().await.unwrap();
            assert_ne!(
                body["error"]["code"], "NOT_FOUND",
                "{path} is documented but not routed"
            );
        }
    }
});

api_test!(observations_do_not_bump_revisions_or_audit, |app| {
    let created = app.register("observed", json!({})).await;
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let latest_before = app.store.latest_revision().await.unwrap();
    let audit_before = app
        .store
        .list_audit(&fleetreg_store::AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len();
    let online = fleetreg_model::ClusterStatus {
        state: fleetreg_model::ClusterState::Online,
        health_score: 100,
        connectivity: fleetreg_model::Connectivity::Connected,
        api_server_healthy: Some(true),
        ..Default::default()
    };
    let seen = fleetreg_model::now();
    let transition = app
        .store
        .record_status(id, online.clone(), Some(seen))
        .await
        .unwrap();
    assert!(transition.is_some(), "UNKNOWN -> ONLINE is a transition");
    let again = app
        .store
        .record_status(
            id,
            fleetreg_model::ClusterStatus {
                health_score: 95,
                ..online
            },
            Some(seen),
        )
        .await
        .unwrap();
    assert!(again.is_none(), "same state: an observation, not an event");
    let after: Value = app
        .get(&format!("/api/v1/clusters/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        after["revision"], created["revision"],
        "observations do not bump the cluster revision"
    );
    assert_eq!(after["status"]["health_score"], 95);
    assert_eq!(after["status"]["state"], "ONLINE");
    assert!(after["last_seen_at"].is_string());
    assert_eq!(
        app.store.latest_revision().await.unwrap(),
        latest_before + 1,
        "only the transition took a revision"
    );
    let audit_after = app
        .store
        .list_audit(&fleetreg_store::AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len();
    assert_eq!(audit_after, audit_before, "observations are not audited");
    let missing = app
        .store
        .record_status(uuid::Uuid::now_v7(), Default::default(), None)
        .await;
    assert!(matches!(
        missing,
        Err(fleetreg_store::StoreError::NotFound(_))
    ));
});

api_test!(graceful_restart_keeps_every_write, |app| {
    let created = app
        .register("survivor", json!({ "labels": { "keep": "yes" } }))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let app = app.restart().await;
    let after: Value = app
        .get(&format!("/api/v1/clusters/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after, created);
    let events: Value = app
        .get("/api/v1/events?after=0")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events["latest_revision"], created["revision"]);
    let next = app.register("after-restart", json!({})).await;
    assert_eq!(
        next["revision"].as_i64().unwrap(),
        created["revision"].as_i64().unwrap() + 1,
        "revisions continue"
    );
});
