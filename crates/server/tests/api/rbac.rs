//! Every endpoint × every role, plus no token, an unknown token, a revoked token
//! and an expired token. The endpoint list comes from the generated OpenAPI
//! document, so an endpoint without a row in `MATRIX` fails the test.

use crate::helpers::{client_with_token, ok_json, TestApp};
use fleetreg_model::Clock;
use fleetreg_server::settings::Settings;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// (method, path, roles allowed). `open` = no token needed.
const MATRIX: &[(&str, &str, &str)] = &[
    ("GET", "/health", "open"),
    ("GET", "/ready", "open"),
    ("GET", "/metrics", "open"),
    (
        "GET",
        "/api/v1/openapi.json",
        "admin operator viewer auditor agent",
    ),
    ("GET", "/api/v1/clients", "admin operator viewer"),
    ("POST", "/api/v1/clients", "admin operator"),
    ("GET", "/api/v1/clients/summary", "admin operator viewer"),
    ("GET", "/api/v1/clients/export", "admin operator viewer"),
    ("POST", "/api/v1/clients/import", "admin operator"),
    ("GET", "/api/v1/clients/{name}", "admin operator viewer"),
    ("PUT", "/api/v1/clients/{name}", "admin operator"),
    ("DELETE", "/api/v1/clients/{name}", "admin operator"),
    (
        "GET",
        "/api/v1/clients/{name}/history",
        "admin operator viewer",
    ),
    (
        "GET",
        "/api/v1/clients/{name}/health",
        "admin operator viewer",
    ),
    ("POST", "/api/v1/clients/{name}/deploy", "admin operator"),
    ("POST", "/api/v1/clients/{name}/rebuild", "admin operator"),
    ("POST", "/api/v1/clients/{name}/destroy", "admin operator"),
    ("POST", "/api/v1/clients/{name}/status", "admin operator"),
    (
        "POST",
        "/api/v1/clients/{name}/maintenance",
        "admin operator",
    ),
    ("POST", "/api/v1/clients/{name}/versions", "admin operator"),
    ("POST", "/api/v1/clients/{name}/notes", "admin operator"),
    ("POST", "/api/v1/clusters/{id}/hosts", "admin operator"),
    (
        "GET",
        "/api/v1/clusters/{id}/hosts",
        "admin operator viewer",
    ),
    (
        "GET",
        "/api/v1/clusters/{id}/sync-status",
        "admin operator viewer",
    ),
    ("POST", "/api/v1/clusters/{id}/leader", "admin operator"),
    ("GET", "/api/v1/hosts/orphaned", "admin operator viewer"),
    (
        "POST",
        "/api/v1/hosts/{host_id}/heartbeat",
        "admin operator",
    ),
    (
        "POST",
        "/api/v1/hosts/{host_id}/deployments",
        "admin operator",
    ),
    (
        "GET",
        "/api/v1/deployments/{deployment_id}",
        "admin operator viewer",
    ),
    (
        "DELETE",
        "/api/v1/deployments/{deployment_id}",
        "admin operator",
    ),
    (
        "POST",
        "/api/v1/deployments/{deployment_id}/enable",
        "admin operator",
    ),
    (
        "POST",
        "/api/v1/deployments/{deployment_id}/pause",
        "admin operator",
    ),
    (
        "POST",
        "/api/v1/deployments/{deployment_id}/move",
        "admin operator",
    ),
    (
        "POST",
        "/api/v1/deployments/{deployment_id}/sync",
        "admin operator",
    ),
    (
        "POST",
        "/api/v1/deployments/{deployment_id}/conflicts",
        "admin operator",
    ),
    (
        "GET",
        "/api/v1/deployments/{deployment_id}/conflicts",
        "admin operator viewer",
    ),
    (
        "POST",
        "/api/v1/sync-jobs/{job_id}/finish",
        "admin operator",
    ),
    ("POST", "/api/v1/rollouts", "admin operator"),
    ("GET", "/api/v1/rollouts", "admin operator viewer"),
    (
        "GET",
        "/api/v1/rollouts/{rollout_id}",
        "admin operator viewer",
    ),
    (
        "POST",
        "/api/v1/rollouts/{rollout_id}/promote",
        "admin operator",
    ),
    (
        "POST",
        "/api/v1/rollouts/{rollout_id}/pause",
        "admin operator",
    ),
    (
        "POST",
        "/api/v1/rollouts/{rollout_id}/resume",
        "admin operator",
    ),
    (
        "POST",
        "/api/v1/rollouts/{rollout_id}/abort",
        "admin operator",
    ),
    ("GET", "/api/v1/clusters", "admin operator viewer"),
    ("POST", "/api/v1/clusters", "admin operator"),
    (
        "GET",
        "/api/v1/clusters/by-name/{name}",
        "admin operator viewer",
    ),
    ("GET", "/api/v1/clusters/{id}", "admin operator viewer"),
    ("PUT", "/api/v1/clusters/{id}", "admin operator"),
    ("DELETE", "/api/v1/clusters/{id}", "admin operator"),
    (
        "GET",
        "/api/v1/clusters/{id}/status",
        "admin operator viewer",
    ),
    (
        "GET",
        "/api/v1/clusters/{id}/health/history",
        "admin operator viewer",
    ),
    ("POST", "/api/v1/clusters/{id}/refresh", "admin operator"),
    (
        "POST",
        "/api/v1/clusters/{id}/credentials",
        "admin operator",
    ),
    (
        "DELETE",
        "/api/v1/clusters/{id}/credentials",
        "admin operator",
    ),
    (
        "POST",
        "/api/v1/clusters/{id}/credentials/rotate",
        "admin operator",
    ),
    (
        "POST",
        "/api/v1/clusters/{id}/credentials/validate",
        "admin operator",
    ),
    ("POST", "/api/v1/clusters/{id}/credentials/rebind", "admin"),
    ("GET", "/api/v1/events", "admin operator viewer"),
    ("GET", "/api/v1/events/stream", "admin operator viewer"),
    ("GET", "/api/v1/fleet/summary", "admin operator viewer"),
    ("GET", "/api/v1/fleet/health", "admin operator viewer"),
    ("GET", "/api/v1/fleet/capabilities", "admin operator viewer"),
    ("GET", "/api/v1/audit", "admin auditor"),
    (
        "GET",
        "/api/v1/credentials/expiring",
        "admin operator viewer",
    ),
    ("GET", "/api/v1/domains", "admin operator viewer"),
    ("POST", "/api/v1/domains", "admin operator"),
    ("GET", "/api/v1/domains/{name}", "admin operator viewer"),
    ("PUT", "/api/v1/domains/{name}", "admin operator"),
    ("DELETE", "/api/v1/domains/{name}", "admin operator"),
    ("GET", "/api/v1/nodes", "admin operator viewer"),
    ("POST", "/api/v1/nodes", "admin operator"),
    ("GET", "/api/v1/nodes/{name}", "admin operator viewer"),
    ("PUT", "/api/v1/nodes/{name}", "admin operator"),
    ("DELETE", "/api/v1/nodes/{name}", "admin operator"),
    (
        "GET",
        "/api/v1/nodes/{name}/config",
        "admin operator viewer agent",
    ),
    (
        "GET",
        "/api/v1/nodes/{name}/config/stream",
        "admin operator viewer agent",
    ),
    ("POST", "/api/v1/nodes/{name}/ack", "admin operator agent"),
    ("POST", "/api/v1/nodes/{name}/token", "admin"),
    ("GET", "/api/v1/services", "admin operator viewer"),
    ("POST", "/api/v1/services", "admin operator"),
    ("GET", "/api/v1/services/{name}", "admin operator viewer"),
    ("PUT", "/api/v1/services/{name}", "admin operator"),
    ("DELETE", "/api/v1/services/{name}", "admin operator"),
    ("POST", "/api/v1/services/sync", "admin operator"),
    ("GET", "/api/v1/routing", "admin operator viewer"),
    ("GET", "/api/v1/routing/{service}", "admin operator viewer"),
    ("PUT", "/api/v1/routing/{service}", "admin operator"),
    ("DELETE", "/api/v1/routing/{service}", "admin operator"),
    ("GET", "/api/v1/routes", "admin operator viewer"),
    ("GET", "/api/v1/sync/health", "admin operator viewer"),
    ("POST", "/api/v1/sync/push", "admin operator"),
    ("POST", "/api/v1/sync/reconcile", "admin operator"),
    ("POST", "/api/v1/tokens", "admin"),
    ("GET", "/api/v1/tokens", "admin"),
    ("DELETE", "/api/v1/tokens/{id}", "admin"),
];

const ROLES: [&str; 4] = ["admin", "operator", "viewer", "auditor"];

/// Settings adjustment: the server's clock is a manual one starting now, which
/// the test moves with `app.clock` instead of sleeping.
pub fn manual_clock(settings: &mut Settings) {
    settings.clock = Clock::manual(fleetreg_model::now());
}

/// `POST /api/v1/tokens` as the bootstrap admin (asserting 201); the answer.
pub async fn create_token(app: &TestApp, name: &str, role: &str, expires: Option<u64>) -> Value {
    let mut body = json!({ "name": name, "role": role });
    if let Some(seconds) = expires {
        body["expires_in_seconds"] = json!(seconds);
    }
    let response = app
        .client
        .post(app.url("/api/v1/tokens"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// The status of one call; streams are dropped after the headers.
async fn call(app: &TestApp, client: &reqwest::Client, method: &str, path: &str) -> u16 {
    let url = app.url(path);
    let request = match method {
        "GET" => client.get(url),
        "POST" => client.post(url).json(&json!({})),
        "PUT" => client.put(url).json(&json!({})),
        "DELETE" => client.delete(url),
        other => panic!("method {other}"),
    };
    request.send().await.unwrap().status().as_u16()
}

// On a manual clock: the expired token is accepted until the clock passes its
// expiry, refused after.
mod every_endpoint_every_role {
    use super::*;

    async fn body(app: TestApp) {
        // The endpoint list of the OpenAPI document must match the matrix exactly.
        let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
        let listed: BTreeSet<(String, String)> = MATRIX
            .iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(
            documented, listed,
            "every documented endpoint needs a row in MATRIX"
        );

        let cluster = app.register("rbac-target", json!({})).await;
        let id = cluster["id"].as_str().unwrap().to_owned();
        let concrete = |path: &str| {
            // `/tokens/{id}` gets the cluster's id: no such token, 404 once allowed.
            path.replace("{id}", &id)
                .replace("{name}", "rbac-target")
                .replace("{service}", "rbac-target")
        };

        let mut clients = Vec::new();
        for role in ROLES {
            let created = create_token(&app, &format!("rbac-{role}"), role, None).await;
            clients.push((role, client_with_token(created["token"].as_str().unwrap())));
        }
        // An agent token is bound to the node the paths name.
        let node =
            json!({"name": "rbac-target", "kind": "laptop", "overlay_address": "100.64.0.1"});
        ok_json(app.post_json("/api/v1/nodes", node).await).await;
        let agent = ok_json(
            app.post_json("/api/v1/nodes/rbac-target/token", json!({}))
                .await,
        )
        .await;
        // First among the roles, and its node's token row last of all: an
        // admin's call there replaces (revokes) this token.
        clients.insert(
            0,
            ("agent", client_with_token(agent["token"].as_str().unwrap())),
        );
        let revoked = create_token(&app, "rbac-revoked", "admin", None).await;
        let response = app
            .client
            .delete(app.url(&format!(
                "/api/v1/tokens/{}",
                revoked["id"].as_str().unwrap()
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
        let expired = create_token(&app, "rbac-expired", "admin", Some(60)).await;
        let expiring = client_with_token(expired["token"].as_str().unwrap());
        let status = call(&app, &expiring, "GET", "/api/v1/clusters").await;
        assert_eq!(status, 200, "valid until the clock reaches its expiry");
        app.clock.advance(chrono::Duration::seconds(59));
        let status = call(&app, &expiring, "GET", "/api/v1/clusters").await;
        assert_eq!(status, 200, "valid a second before its expiry");
        app.clock.advance(chrono::Duration::seconds(1));
        let refused = [
            ("no token", reqwest::Client::new()),
            (
                "unknown token",
                client_with_token("frg_not-a-real-token-at-all-000000"),
            ),
            (
                "revoked token",
                client_with_token(revoked["token"].as_str().unwrap()),
            ),
            (
                "expired token",
                client_with_token(expired["token"].as_str().unwrap()),
            ),
        ];

        // Deletions last, so the cluster exists for every other call.
        let mut rows: Vec<&(&str, &str, &str)> = MATRIX.iter().collect();
        rows.sort_by_key(|(method, path, _)| (path.ends_with("/token"), *method == "DELETE"));
        for (method, path, allowed) in rows {
            let target = concrete(path);
            for (what, client) in &refused {
                let status = call(&app, client, method, &target).await;
                if *allowed == "open" {
                    assert_ne!(status, 401, "{what}: {method} {path}");
                } else {
                    assert_eq!(status, 401, "{what}: {method} {path}");
                }
            }
            for (role, client) in &clients {
                let status = call(&app, client, method, &target).await;
                if *allowed == "open" || allowed.split(' ').any(|r| r == *role) {
                    assert!(
                        status != 401 && status != 403,
                        "{role} may {method} {path}, got {status}"
                    );
                } else {
                    assert_eq!(status, 403, "{role} may not {method} {path}");
                }
            }
        }
    }

    on_both_stores!(manual_clock);
}

api_test!(forbidden_and_unauthenticated_bodies, |app| {
    let viewer = create_token(&app, "plain-viewer", "viewer", None).await;
    let client = client_with_token(viewer["token"].as_str().unwrap());
    let response = client
        .post(app.url("/api/v1/clusters"))
        .json(&json!({ "name": "nope", "api_server_url": "https://x" }))
        .send()
        .await
        .unwrap();
    let error = crate::helpers::assert_error(response, 403, "FORBIDDEN").await;
    assert_eq!(error["error"]["details"]["role"], "viewer");
    let response = reqwest::Client::new()
        .get(app.url("/api/v1/clusters"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    crate::helpers::assert_error(response, 401, "UNAUTHENTICATED").await;

    // Token listing never shows a token; names are unique.
    let list: Value = app.get("/api/v1/tokens").await.json().await.unwrap();
    let text = list.to_string();
    assert!(!text.contains(viewer["token"].as_str().unwrap()));
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "plain-viewer"));
    let response = app
        .client
        .post(app.url("/api/v1/tokens"))
        .json(&json!({ "name": "plain-viewer", "role": "admin" }))
        .send()
        .await
        .unwrap();
    crate::helpers::assert_error(response, 400, "VALIDATION_ERROR").await;

    // Revoking an unknown or already revoked token is TOKEN_NOT_FOUND.
    let response = app
        .client
        .delete(app.url(&format!("/api/v1/tokens/{}", uuid::Uuid::now_v7())))
        .send()
        .await
        .unwrap();
    crate::helpers::assert_error(response, 404, "TOKEN_NOT_FOUND").await;

    // The audit log names the token that acted.
    let created = app.register("audited-by-token", json!({})).await;
    assert_eq!(created["name"], "audited-by-token");
});
