//! The credentials API against simulated clusters that require credentials:
//! upload (validated first, nothing stored on failure), rotate (old ones stay in
//! force when the new fail), validate, delete; kubeconfig safety; checks use the
//! stored credentials; secrets never come back and never reach the database in
//! plain form.

use crate::helpers::{assert_error, TestApp};
use fleetreg_server::settings::Settings;
use fleetreg_sim::{AddToken, AuthSpec, ClusterSpec, ClusterView, KubeconfigAuth, SpawnedSim};
use serde_json::{json, Value};

fn manual(settings: &mut Settings) {
    settings.health_check.enabled = false;
    settings.health_check.timeout_seconds = Some(3);
}

/// A sim cluster that refuses anonymous API requests; Prometheus wants its own token.
async fn locked_cluster(sim: &SpawnedSim, name: &str) -> ClusterView {
    sim.admin()
        .create_cluster_with_auth(
            name,
            ClusterSpec::default(),
            AuthSpec {
                required: true,
                prometheus_tokens: vec![format!("prom-{name}")],
                ..AuthSpec::default()
            },
        )
        .await
        .unwrap()
}

async fn register(app: &TestApp, view: &ClusterView) -> String {
    let body = app
        .register(
            &view.name,
            json!({
                "api_server_url": view.api_server_url,
                "endpoints": { "prometheus_url": view.prometheus_url },
            }),
        )
        .await;
    body["id"].as_str().unwrap().to_owned()
}

async fn post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn add_token(sim: &SpawnedSim, cluster: &str, token: &str) {
    sim.admin()
        .add_token(
            cluster,
            &AddToken {
                token: Some(token.into()),
                ..AddToken::default()
            },
        )
        .await
        .unwrap();
}

async fn refresh_state(app: &TestApp, id: &str) -> Value {
    let response = app
        .client
        .post(app.url(&format!("/api/v1/clusters/{id}/refresh")))
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

/// Every `bearer_token` the API server of `cluster` saw after `after`.
async fn api_tokens_seen(sim: &SpawnedSim, cluster: &str, after: u64) -> Vec<Option<String>> {
    let log = sim.admin().requests(after, Some(cluster)).await.unwrap();
    log.items
        .iter()
        .filter(|r| r.service == fleetreg_sim::Service::ApiServer)
        .map(|r| r.bearer_token.clone())
        .collect()
}

mod store_validate_rotate_delete {
    use super::*;

    async fn body(app: TestApp) {
        let sim = SpawnedSim::start().await.unwrap();
        let view = locked_cluster(&sim, "vaulted").await;
        let id = register(&app, &view).await;
        let base = format!("/api/v1/clusters/{id}/credentials");

        // Without credentials the API server refuses the check.
        let refreshed = refresh_state(&app, &id).await;
        assert_eq!(
            refreshed["error"]["code"], "CLUSTER_UNREACHABLE",
            "{refreshed}"
        );

        // No credentials yet.
        assert_error(
            post(&app, &format!("{base}/validate"), &json!({})).await,
            404,
            "CREDENTIALS_NOT_FOUND",
        )
        .await;
        assert_error(
            app.client.delete(app.url(&base)).send().await.unwrap(),
            404,
            "CREDENTIALS_NOT_FOUND",
        )
        .await;
        let rotate = json!({ "auth_type": "TOKEN", "token": "whatever" });
        assert_error(
            post(&app, &format!("{base}/rotate"), &rotate).await,
            404,
            "CREDENTIALS_NOT_FOUND",
        )
        .await;

        // A token the cluster does not accept: CREDENTIALS_INVALID, nothing stored.
        let bad = json!({ "auth_type": "TOKEN", "token": "not-accepted-token",
                          "prometheus_token": "prom-vaulted" });
        let error = assert_error(post(&app, &base, &bad).await, 400, "CREDENTIALS_INVALID").await;
        assert_eq!(
            error["error"]["details"]["validation"]["api_server"],
            "failed"
        );
        assert!(app
            .store
            .get_credentials(id.parse().unwrap())
            .await
            .unwrap()
            .is_none());

        // An accepted token: stored, validated per component, version 1.
        add_token(&sim, "vaulted", "first-token-marker").await;
        let good = json!({ "auth_type": "TOKEN", "token": "first-token-marker",
                           "prometheus_token": "prom-vaulted" });
        let response = post(&app, &base, &good).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert!(
            !text.contains("first-token-marker") && !text.contains("prom-vaulted"),
            "{text}"
        );
        let status: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(status["status"], "stored");
        assert_eq!(status["version"], 1);
        assert_eq!(
            status["validation"],
            json!({ "api_server": "success", "prometheus": "success" })
        );

        // Checks now present the stored token (and Prometheus its own).
        let after = sim.admin().log_end().await.unwrap();
        let cluster = refresh_state(&app, &id).await;
        assert_eq!(cluster["status"]["state"], "ONLINE", "{cluster}");
        let seen = api_tokens_seen(&sim, "vaulted", after).await;
        assert!(!seen.is_empty());
        assert!(
            seen.iter()
                .all(|t| t.as_deref() == Some("first-token-marker")),
            "{seen:?}"
        );

        // Validate the stored ones.
        let response = post(&app, &format!("{base}/validate"), &json!({})).await;
        assert_eq!(response.status(), 200);
        let valid: Value = response.json().await.unwrap();
        assert_eq!(valid["status"], "valid");

        // A failed rotation leaves the old credentials in force.
        let wrong = json!({ "auth_type": "TOKEN", "token": "never-accepted",
                            "prometheus_token": "prom-vaulted" });
        assert_error(
            post(&app, &format!("{base}/rotate"), &wrong).await,
            400,
            "CREDENTIALS_INVALID",
        )
        .await;
        let after = sim.admin().log_end().await.unwrap();
        refresh_state(&app, &id).await;
        let seen = api_tokens_seen(&sim, "vaulted", after).await;
        assert!(
            seen.iter()
                .all(|t| t.as_deref() == Some("first-token-marker")),
            "{seen:?}"
        );

        // A good rotation replaces them: version 2, and checks use the new token.
        add_token(&sim, "vaulted", "second-token-marker").await;
        let next = json!({ "auth_type": "TOKEN", "token": "second-token-marker",
                           "prometheus_token": "prom-vaulted" });
        let response = post(&app, &format!("{base}/rotate"), &next).await;
        assert_eq!(response.status(), 200);
        let rotated: Value = response.json().await.unwrap();
        assert_eq!(rotated["status"], "rotated");
        assert_eq!(rotated["version"], 2);
        let after = sim.admin().log_end().await.unwrap();
        refresh_state(&app, &id).await;
        let seen = api_tokens_seen(&sim, "vaulted", after).await;
        assert!(!seen.is_empty());
        assert!(
            seen.iter()
                .all(|t| t.as_deref() == Some("second-token-marker")),
            "{seen:?}"
        );

        // Stored sealed: no marker in the row the store holds.
        let stored = app
            .store
            .get_credentials(id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        let row = format!("{stored:?}");
        for marker in ["first-token-marker", "second-token-marker", "prom-vaulted"] {
            assert!(!row.contains(marker), "{marker} stored in plain: {row}");
        }

        // Events: one CLUSTER_CREDENTIALS_UPDATED per store, rotate, delete, payload {cluster_id}.
        let response = app.client.delete(app.url(&base)).send().await.unwrap();
        assert_eq!(response.status(), 204);
        let events: Value = app
            .get("/api/v1/events?after=0&limit=1000")
            .await
            .json()
            .await
            .unwrap();
        let updates: Vec<&Value> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "CLUSTER_CREDENTIALS_UPDATED")
            .collect();
        assert_eq!(updates.len(), 3, "{updates:?}");
        for event in updates {
            assert_eq!(event["payload"], json!({ "cluster_id": id }));
        }

        // Deleted: checks go back to anonymous and fail.
        let refreshed = refresh_state(&app, &id).await;
        assert_eq!(
            refreshed["error"]["code"], "CLUSTER_UNREACHABLE",
            "{refreshed}"
        );

        // Every credential access is in the audit log.
        let audit = app
            .store
            .list_audit(&fleetreg_store::AuditQuery {
                resource_id: Some(id.parse().unwrap()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        let actions: Vec<(&str, &str)> = audit
            .iter()
            .filter(|e| e.action.starts_with("credentials."))
            .map(|e| {
                let result = match e.result {
                    fleetreg_model::AuditResult::Success => "success",
                    fleetreg_model::AuditResult::Failure => "failure",
                };
                (e.action.as_str(), result)
            })
            .collect();
        for expected in [
            ("credentials.store", "failure"),
            ("credentials.store", "success"),
            ("credentials.validate", "success"),
            ("credentials.rotate", "failure"),
            ("credentials.rotate", "success"),
            ("credentials.delete", "success"),
        ] {
            assert!(
                actions.contains(&expected),
                "{expected:?} missing from {actions:?}"
            );
        }
        assert!(audit
            .iter()
            .all(|e| e.resource == "credentials" || e.resource == "cluster"));
    }

    on_both_stores!(manual);
}

mod kubeconfig_upload_over_tls {
    use super::*;

    async fn body(app: TestApp) {
        let sim = SpawnedSim::start_tls().await.unwrap();
        let view = sim
            .admin()
            .create_cluster_with_auth(
                "certified",
                ClusterSpec::default(),
                AuthSpec {
                    required: true,
                    ..AuthSpec::default()
                },
            )
            .await
            .unwrap();
        let id = register(&app, &view).await;
        let kubeconfig = sim
            .admin()
            .kubeconfig("certified", "fleetreg", KubeconfigAuth::Cert)
            .await
            .unwrap();
        let base = format!("/api/v1/clusters/{id}/credentials");
        let response = post(
            &app,
            &base,
            &json!({ "auth_type": "KUBECONFIG", "kubeconfig": kubeconfig }),
        )
        .await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["validation"]["api_server"], "success");
        assert!(
            body["expires_at"].is_string(),
            "the certificate's NotAfter: {body}"
        );

        let cluster = refresh_state(&app, &id).await;
        assert_eq!(cluster["status"]["state"], "ONLINE", "{cluster}");
        let log = sim.admin().requests(0, Some("certified")).await.unwrap();
        assert!(log
            .items
            .iter()
            .any(|r| r.client_cert_subject.as_deref() == Some("fleetreg")));

        // The certificate's NotAfter is what the store reports as expiry.
        let now = fleetreg_model::now();
        let later = now + chrono::Duration::days(3650);
        let expiring = app.store.expiring_credentials(later, 10).await.unwrap();
        assert_eq!(expiring.len(), 1, "{expiring:?}");
        assert_eq!(expiring[0].cluster_name, "certified");
        assert!(!expiring[0].expired);
        assert_eq!(
            Some(expiring[0].expires_at.timestamp()),
            body["expires_at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp())
        );
        assert_eq!(
            app.store.count_expiring_credentials(later).await.unwrap(),
            1
        );
        assert_eq!(app.store.count_expiring_credentials(now).await.unwrap(), 0);
    }

    on_both_stores!(manual);
}

api_test!(unsafe_kubeconfigs_are_refused_with_the_field_named, |app| {
    let created = app
        .register(
            "unsafe-kc",
            json!({ "api_server_url": "https://127.0.0.1:1" }),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/api/v1/clusters/{id}/credentials");
    let cluster = "clusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n";
    let context =
        "contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n";
    let cases = [
        (
            "users:\n- name: u\n  user:\n    exec:\n      command: /bin/sh\n      apiVersion: client.authentication.k8s.io/v1\n",
            "exec",
        ),
        ("users:\n- name: u\n  user:\n    auth-provider:\n      name: gcp\n", "auth-provider"),
        ("users:\n- name: u\n  user:\n    tokenFile: /etc/shadow\n", "tokenFile"),
        ("users:\n- name: u\n  user:\n    client-certificate: /etc/ssl/cert.pem\n", "client-certificate"),
        ("users:\n- name: u\n  user:\n    client-key: /etc/ssl/key.pem\n", "client-key"),
    ];
    for (user, field) in cases {
        let kubeconfig = format!("apiVersion: v1\nkind: Config\n{cluster}{context}{user}");
        let response = post(
            &app,
            &path,
            &json!({ "auth_type": "KUBECONFIG", "kubeconfig": kubeconfig }),
        )
        .await;
        let error = assert_error(response, 400, "CREDENTIALS_INVALID").await;
        let named = error["error"]["details"]["field"]
            .as_str()
            .unwrap_or_default();
        assert!(named.contains(field), "{field}: {error}");
    }
    // A cluster CA given as a file path.
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    certificate-authority: /etc/ssl/ca.pem\n{context}users:\n- name: u\n  user:\n    token: t\n"
    );
    let response = post(
        &app,
        &path,
        &json!({ "auth_type": "KUBECONFIG", "kubeconfig": kubeconfig }),
    )
    .await;
    let error = assert_error(response, 400, "CREDENTIALS_INVALID").await;
    assert!(error["error"]["details"]["field"]
        .as_str()
        .unwrap_or_default()
        .contains("certificate-authority"));
    assert!(app
        .store
        .get_credentials(id.parse().unwrap())
        .await
        .unwrap()
        .is_none());

    // Shape errors are VALIDATION_ERROR; unknown clusters 404.
    let response = post(&app, &path, &json!({ "auth_type": "KUBECONFIG" })).await;
    assert_error(response, 400, "VALIDATION_ERROR").await;
    let response = post(
        &app,
        &format!("/api/v1/clusters/{}/credentials", uuid::Uuid::now_v7()),
        &json!({ "auth_type": "TOKEN", "token": "t" }),
    )
    .await;
    assert_error(response, 404, "CLUSTER_NOT_FOUND").await;
});

#[tokio::test]
async fn a_master_key_that_cannot_open_the_stored_data_is_refused() {
    use fleetreg_server::Application;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fleetreg.db").display());
    let first = Application::build(crate::helpers::test_settings(&url))
        .await
        .expect("first start seals the canary");
    first.store().close().await;
    drop(first);

    let mut other = crate::helpers::test_settings(&url);
    other.credentials.master_key = Some("HxwdHhsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=".into());
    let error = Application::build(other).await.err().expect("refused");
    let text = error.to_string();
    assert!(text.contains("cannot decrypt"), "{text}");

    // Without FLEETREG_MASTER_KEY a key file is created with mode 0600, and reused.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("fresh.key");
    let fresh_url = format!("sqlite://{}", dir.path().join("fresh.db").display());
    let mut settings = crate::helpers::test_settings(&fresh_url);
    settings.credentials.master_key = None;
    settings.credentials.master_key_file = key_file.clone();
    let app = Application::build(settings.clone())
        .await
        .expect("creates the key");
    app.store().close().await;
    drop(app);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = Application::build(settings).await.expect("reuses the key");
    again.store().close().await;
}
