//! Hosts, deployments, sync and safe deregistration over HTTP (seed
//! cluster-lifecycle-deregistration.md): the seed's blocked and allowed
//! flows, the cascade exactly as previewed, the leader lease, orphans.

use crate::helpers::*;
use reqwest::Response;
use serde_json::{json, Value};
use std::time::Duration;

async fn send(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> Response {
    let url = app.url(path);
    let request = match method {
        "POST" => app
            .client
            .post(url)
            .json(&body.unwrap_or_else(|| json!({}))),
        "DELETE" => app.client.delete(url),
        _ => app.client.get(url),
    };
    request.send().await.unwrap()
}

/// A cluster, a host, clients acme (sync on) and beta (sync off) on it.
async fn seed_fleet(app: &TestApp) -> (String, String, String, String) {
    let cluster = app.register("prod-host-1", json!({})).await;
    let cluster_id = cluster["id"].as_str().unwrap().to_owned();
    let host = ok_json(
        send(
            app,
            "POST",
            &format!("/api/v1/clusters/{cluster_id}/hosts"),
            Some(json!({"hostname": "node-a", "address": "10.0.0.5"})),
        )
        .await,
    )
    .await;
    let host_id = host["id"].as_str().unwrap().to_owned();
    let mut deployments = Vec::new();
    for (client, sync) in [("acme", true), ("beta", false)] {
        ok_json(
            send(
                app,
                "POST",
                "/api/v1/clients",
                Some(json!({ "name": client })),
            )
            .await,
        )
        .await;
        let d = ok_json(send(
            app,
            "POST",
            &format!("/api/v1/hosts/{host_id}/deployments"),
            Some(json!({"client": client, "container_name": format!("openwebui-{client}"), "sync_enabled": sync})),
        )
        .await)
        .await;
        deployments.push(d["id"].as_str().unwrap().to_owned());
    }
    (
        cluster_id,
        host_id,
        deployments[0].clone(),
        deployments[1].clone(),
    )
}

api_test!(deregistration_is_blocked_then_allowed_as_previewed, |app| {
    let (cluster_id, host_id, acme, _beta) = seed_fleet(&app).await;
    let job = ok_json(
        send(
            &app,
            "POST",
            &format!("/api/v1/deployments/{acme}/sync"),
            Some(json!({"kind": "full"})),
        )
        .await,
    )
    .await;
    assert_eq!(job["status"], "running");
    let finished = send(
        &app,
        "POST",
        &format!("/api/v1/sync-jobs/{}/finish", job["id"].as_str().unwrap()),
        Some(json!({"status": "success", "rows": 120})),
    )
    .await;
    assert_eq!(ok_json(finished).await["rows"], 120);

    // Blocked: the error names each sync client and the three remediations.
    let blocked = send(
        &app,
        "DELETE",
        &format!("/api/v1/clusters/{cluster_id}"),
        None,
    )
    .await;
    let body = assert_error(blocked, 409, "CLUSTER_HAS_SYNC_CLIENTS").await;
    let clients = body["error"]["details"]["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0]["client"], "acme");
    assert_eq!(clients[0]["container_name"], "openwebui-acme");
    assert_eq!(clients[0]["last_sync_status"], "success");
    assert!(clients[0]["last_sync_at"].is_string());
    assert_eq!(
        body["error"]["details"]["remediations"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let preview_blocked = send(
        &app,
        "DELETE",
        &format!("/api/v1/clusters/{cluster_id}?dry_run=true"),
        None,
    )
    .await;
    assert_error(preview_blocked, 409, "CLUSTER_HAS_SYNC_CLIENTS").await;

    // Disable sync; the preview lists exactly what goes.
    let paused = ok_json(
        send(
            &app,
            "POST",
            &format!("/api/v1/deployments/{acme}/pause"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(
        (
            paused["sync_enabled"].clone(),
            paused["last_sync_status"].clone()
        ),
        (json!(false), json!("stopped"))
    );
    let preview = ok_json(
        send(
            &app,
            "DELETE",
            &format!("/api/v1/clusters/{cluster_id}?dry_run=true"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(preview["dry_run"], true);
    assert_eq!(preview["hosts"][0]["id"], host_id.as_str());
    assert_eq!(preview["deployments"].as_array().unwrap().len(), 2);
    assert_eq!(preview["sync_jobs"], 1);
    let unconfirmed = send(
        &app,
        "DELETE",
        &format!("/api/v1/clusters/{cluster_id}"),
        None,
    )
    .await;
    let body = assert_error(unconfirmed, 409, "CONFIRMATION_REQUIRED").await;
    assert_eq!(
        body["error"]["details"]["preview"]["hosts"],
        preview["hosts"]
    );
    assert_eq!(app.get_cluster(&cluster_id).await.status(), 200);

    let deleted = send(
        &app,
        "DELETE",
        &format!("/api/v1/clusters/{cluster_id}?confirm=true"),
        None,
    )
    .await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(app.get_cluster(&cluster_id).await.status(), 404);
    let gone = app.get(&format!("/api/v1/deployments/{acme}")).await;
    assert_error(gone, 404, "DEPLOYMENT_NOT_FOUND").await;
    assert_eq!(
        app.get("/api/v1/clients/acme").await.status(),
        200,
        "the client stays"
    );
    let audit = ok_json(app.get("/api/v1/audit?action=cluster.delete").await).await;
    let codes: Vec<Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["error_code"].clone())
        .collect();
    assert!(
        codes.contains(&json!("CLUSTER_HAS_SYNC_CLIENTS")),
        "{codes:?}"
    );
    assert!(codes.contains(&json!("CONFIRMATION_REQUIRED")), "{codes:?}");
    assert!(codes.contains(&Value::Null), "{codes:?}");
});

api_test!(a_cluster_without_hosts_deletes_as_before, |app| {
    let cluster = app.register("plain", json!({})).await;
    let id = cluster["id"].as_str().unwrap();
    let preview = ok_json(
        send(
            &app,
            "DELETE",
            &format!("/api/v1/clusters/{id}?dry_run=true"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(preview["hosts"], json!([]));
    assert_eq!(app.delete_cluster(id).await.status(), 204);
    let bad = send(
        &app,
        "DELETE",
        &format!("/api/v1/clusters/{id}?confirm=maybe"),
        None,
    )
    .await;
    assert_error(bad, 400, "VALIDATION_ERROR").await;
});

api_test!(migrating_and_decommissioning_clear_the_way, |app| {
    let (cluster_id, _host, acme, beta) = seed_fleet(&app).await;
    let other = app.register("prod-host-2", json!({})).await;
    let other_id = other["id"].as_str().unwrap();
    let target = ok_json(
        send(
            &app,
            "POST",
            &format!("/api/v1/clusters/{other_id}/hosts"),
            Some(json!({"hostname": "node-b"})),
        )
        .await,
    )
    .await;
    let moved = ok_json(
        send(
            &app,
            "POST",
            &format!("/api/v1/deployments/{acme}/move"),
            Some(json!({"host_id": target["id"]})),
        )
        .await,
    )
    .await;
    assert_eq!(moved["cluster_id"], other["id"]);
    assert_eq!(moved["sync_enabled"], true);
    let removed = send(&app, "DELETE", &format!("/api/v1/deployments/{beta}"), None).await;
    assert_eq!(removed.status(), 204);
    let deleted = send(
        &app,
        "DELETE",
        &format!("/api/v1/clusters/{cluster_id}?confirm=true"),
        None,
    )
    .await;
    assert_eq!(deleted.status(), 204);
    let status = ok_json(
        app.get(&format!("/api/v1/clusters/{other_id}/sync-status"))
            .await,
    )
    .await;
    assert_eq!(status["deployments"][0]["client"], "acme");
    let in_use = send(&app, "DELETE", "/api/v1/clients/acme", None).await;
    let body = assert_error(in_use, 409, "CLIENT_HAS_DEPLOYMENTS").await;
    assert_eq!(
        body["error"]["details"]["deployments"][0]["container_name"],
        "openwebui-acme"
    );
    let undecodable = send(&app, "POST", "/api/v1/hosts/%ff/heartbeat", None).await;
    assert_error(undecodable, 404, "NOT_FOUND").await;
    let missing_host = send(&app, "POST", "/api/v1/hosts/not-a-uuid/heartbeat", None).await;
    assert_error(missing_host, 404, "HOST_NOT_FOUND").await;
    let missing_job = send(
        &app,
        "POST",
        &format!("/api/v1/sync-jobs/{acme}/finish"),
        Some(json!({"status": "success"})),
    )
    .await;
    assert_error(missing_job, 404, "SYNC_JOB_NOT_FOUND").await;
    let clash = send(
        &app,
        "POST",
        &format!("/api/v1/clusters/{other_id}/hosts"),
        Some(json!({"hostname": "node-b"})),
    )
    .await;
    assert_error(clash, 409, "HOST_ALREADY_EXISTS").await;
});

api_test!(the_leader_lease_and_sync_status, |app| {
    let (cluster_id, host_id, acme, _) = seed_fleet(&app).await;
    let second = ok_json(
        send(
            &app,
            "POST",
            &format!("/api/v1/clusters/{cluster_id}/hosts"),
            Some(json!({"hostname": "node-b"})),
        )
        .await,
    )
    .await;
    let leader = ok_json(
        send(
            &app,
            "POST",
            &format!("/api/v1/clusters/{cluster_id}/leader"),
            Some(json!({"host_id": host_id, "lease_seconds": 30})),
        )
        .await,
    )
    .await;
    assert_eq!(leader["term"], 1);
    let held = send(
        &app,
        "POST",
        &format!("/api/v1/clusters/{cluster_id}/leader"),
        Some(json!({"host_id": second["id"], "lease_seconds": 30})),
    )
    .await;
    let body = assert_error(held, 409, "LEADER_HELD").await;
    assert_eq!(
        body["error"]["details"]["holder"]["host_id"],
        host_id.as_str()
    );
    let too_long = send(
        &app,
        "POST",
        &format!("/api/v1/clusters/{cluster_id}/leader"),
        Some(json!({"host_id": host_id, "lease_seconds": 100000})),
    )
    .await;
    assert_error(too_long, 400, "VALIDATION_ERROR").await;
    let conflict = send(
        &app,
        "POST",
        &format!("/api/v1/deployments/{acme}/conflicts"),
        Some(json!({"table_name": "chat", "row_key": "7", "resolution": "remote_wins"})),
    )
    .await;
    assert_eq!(conflict.status(), 201);
    let conflicts = ok_json(
        app.get(&format!("/api/v1/deployments/{acme}/conflicts"))
            .await,
    )
    .await;
    assert_eq!(conflicts[0]["row_key"], "7");
    let status = ok_json(
        app.get(&format!("/api/v1/clusters/{cluster_id}/sync-status"))
            .await,
    )
    .await;
    assert_eq!(status["leader"]["host_id"], host_id.as_str());
    assert_eq!(status["hosts"].as_array().unwrap().len(), 2);
    assert_eq!(status["deployments"].as_array().unwrap().len(), 2);
    let duplicate = send(
        &app,
        "POST",
        &format!("/api/v1/hosts/{host_id}/deployments"),
        Some(json!({"client": "acme", "container_name": "openwebui-acme"})),
    )
    .await;
    assert_error(duplicate, 409, "DEPLOYMENT_ALREADY_EXISTS").await;
});

mod orphaned_hosts_are_counted_and_recover {
    use super::*;

    async fn body(app: TestApp) {
        let (_, host_id, _, _) = seed_fleet(&app).await;
        ok_json(
            send(
                &app,
                "POST",
                &format!("/api/v1/hosts/{host_id}/heartbeat"),
                None,
            )
            .await,
        )
        .await;
        app.clock.advance(chrono::Duration::minutes(6));
        let listed = wait_for(
            "the host to be orphaned",
            Duration::from_secs(10),
            || async {
                let hosts = ok_json(app.get("/api/v1/hosts/orphaned").await).await;
                (hosts.as_array().unwrap().len() == 1).then_some(hosts)
            },
        )
        .await;
        assert_eq!(listed[0]["id"], host_id.as_str());
        let health = ok_json(app.get("/api/v1/fleet/health").await).await;
        assert_eq!(health["orphaned_hosts_count"], 1);
        let metrics = app.get("/metrics").await.text().await.unwrap();
        assert!(metrics.contains("fleetreg_orphaned_hosts 1"), "{metrics}");
        let back = ok_json(
            send(
                &app,
                "POST",
                &format!("/api/v1/hosts/{host_id}/heartbeat"),
                None,
            )
            .await,
        )
        .await;
        assert_eq!(back["orphaned"], false);
        let events = ok_json(app.get("/api/v1/events?after=0").await).await;
        let types: Vec<&str> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(types.iter().filter(|t| **t == "HOST_ORPHANED").count(), 1);
        assert_eq!(types.iter().filter(|t| **t == "HOST_RECOVERED").count(), 1);
    }

    fn fast_checks(settings: &mut fleetreg_server::settings::Settings) {
        crate::rbac::manual_clock(settings);
        settings.sync.orphan_check_seconds = 1;
    }

    on_both_stores!(fast_checks);
}
