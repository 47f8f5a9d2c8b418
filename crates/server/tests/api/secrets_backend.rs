//! The Kubernetes Secrets credentials backend (`credentials.backend:
//! kubernetes`) against a simulated hub: the envelopes live in
//! `cluster-creds-{id}` (seed 7.2 layout, ciphertext only, version-annotated),
//! the row keeps none; checks use them; rotation and delete follow; a Secret
//! edited behind the server's back is not used and is reported; `serve`
//! refuses to start without a usable hub; master-key rotation re-wraps the
//! envelopes in the Secrets.

use crate::helpers::{
    add_token, assert_error, put_token, register_with_prometheus, spawn_app_with, target,
    test_settings, Backend, TestApp,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use fleetreg_server::credentials::rotate::{rotate_master_key, VaultOptions};
use fleetreg_server::credentials::{
    hub_config, KEY_ID_ANNOTATION, VERSION_ANNOTATION, WRITTEN_AT_ANNOTATION,
};
use fleetreg_server::settings::{CredentialsBackendKind, Settings};
use fleetreg_server::{Application, StartError};
use fleetreg_sim::{AuthSpec, ClusterSpec, ClusterView, SecretRecord, SpawnedSim};
use fleetreg_store::AuditQuery;
use fleetreg_vault::Sealed;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const NAMESPACE: &str = "aiops-nextgen";
const HUB_TOKEN: &str = "hub-registry-sa-token";

/// A simulated hub whose API server accepts only the registry's token.
async fn hub(sim: &SpawnedSim) -> ClusterView {
    sim.admin()
        .create_cluster_with_auth(
            "hub",
            ClusterSpec::default(),
            AuthSpec {
                required: true,
                tokens: vec![HUB_TOKEN.into()],
                ..AuthSpec::default()
            },
        )
        .await
        .unwrap()
}

/// Writes the hub token file and returns the settings change selecting the
/// Kubernetes backend on `hub`.
fn kubernetes_backend(hub: &ClusterView, dir: &Path) -> impl FnOnce(&mut Settings) + Clone {
    let token_file = dir.join("hub.token");
    std::fs::write(&token_file, format!("{HUB_TOKEN}\n")).unwrap();
    let api_url = hub.api_server_url.clone();
    move |settings: &mut Settings| {
        settings.health_check.timeout_seconds = Some(3);
        settings.credentials.backend = CredentialsBackendKind::Kubernetes;
        settings.credentials.kubernetes.api_url = Some(api_url);
        settings.credentials.kubernetes.token_file = Some(token_file);
    }
}

/// Refreshes `id` and returns the state and the bearer tokens `name`'s API server saw.
async fn check(
    app: &TestApp,
    sim: &SpawnedSim,
    id: &str,
    name: &str,
) -> (Value, Vec<Option<String>>) {
    // After the check and discovery an upload starts in the background.
    let after = sim
        .admin()
        .log_end_when_quiet(std::time::Duration::from_millis(300))
        .await
        .unwrap();
    let response = app
        .client
        .post(app.url(&format!("/api/v1/clusters/{id}/refresh")))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let log = sim.admin().requests(after, Some(name)).await.unwrap();
    let seen = log
        .items
        .iter()
        .filter(|r| r.service == fleetreg_sim::Service::ApiServer)
        .map(|r| r.bearer_token.clone())
        .collect();
    (body, seen)
}

/// The hub's Secret of cluster `id`, if any.
async fn secret_of(sim: &SpawnedSim, id: &str) -> Option<SecretRecord> {
    let name = format!("cluster-creds-{id}");
    sim.admin()
        .secrets("hub")
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.namespace == NAMESPACE && s.name == name)
}

/// Asserts the seed 7.2 layout with envelopes only, none of `markers` in
/// plain or base64 form; returns the envelopes by data key.
fn assert_layout(secret: &SecretRecord, id: &str, version: i64, markers: &[&str]) -> Value {
    let object = &secret.object;
    assert_eq!(object["type"], "Opaque", "{object}");
    let labels = &object["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/component"], "cluster-registry");
    assert_eq!(labels["aiops.io/cluster-id"], id);
    let annotations = &object["metadata"]["annotations"];
    assert_eq!(annotations[VERSION_ANNOTATION], version.to_string());
    assert!(annotations[KEY_ID_ANNOTATION].is_string(), "{object}");
    let keys: Vec<&String> = secret.decoded.keys().collect();
    assert_eq!(keys, ["prometheus-token", "token"], "{object}");
    for value in secret.decoded.values() {
        let envelope: Sealed = value.parse().expect("each value is a vault envelope");
        assert_eq!(
            envelope.key_id().to_string(),
            annotations[KEY_ID_ANNOTATION].as_str().unwrap()
        );
    }
    let text = format!("{object}{:?}", secret.decoded);
    for marker in markers {
        assert!(!text.contains(marker), "plaintext {marker} in the Secret");
        let encoded = STANDARD.encode(marker);
        assert!(
            !text.contains(encoded.trim_end_matches('=')),
            "base64 of {marker} in the Secret"
        );
    }
    json!(secret.decoded)
}

async fn assert_row_has_no_envelope(app: &TestApp, id: &str, version: i64) {
    let stored = app
        .store
        .get_credentials(id.parse().unwrap())
        .await
        .unwrap()
        .expect("credentials row");
    assert!(stored.sealed.is_empty(), "{:?}", stored.sealed.keys());
    assert_eq!(stored.version, version);
}

mod store_check_rotate_delete {
    use super::*;

    async fn body(app: TestApp, sim: SpawnedSim, backend: impl FnOnce(&mut Settings)) {
        let (api1, prom) = ("api-marker-5f1c9e", "prom-marker-7d20ab");
        let view = target(&sim, "target-a", api1, prom).await;
        let id = register_with_prometheus(&app, &view).await;

        let stored = put_token(&app, &id, api1, prom, "").await;
        assert_eq!(stored["version"], 1);
        let secret = secret_of(&sim, &id).await.expect("Secret on the hub");
        let first = assert_layout(&secret, &id, 1, &[api1, prom]);
        assert_row_has_no_envelope(&app, &id, 1).await;

        // A check presents the token (opened at upload; also after a restart,
        // read from the Secret).
        let (body, seen) = check(&app, &sim, &id, "target-a").await;
        assert_eq!(body["status"]["state"], "ONLINE", "{body}");
        assert!(seen.iter().all(|t| t.as_deref() == Some(api1)), "{seen:?}");

        // Rotate: the Secret is replaced, its version annotation moves.
        let api2 = "api-marker-93be04";
        add_token(&sim, "target-a", api2).await;
        let rotated = put_token(&app, &id, api2, prom, "/rotate").await;
        assert_eq!(rotated["version"], 2);
        let secret = secret_of(&sim, &id).await.expect("Secret on the hub");
        let second = assert_layout(&secret, &id, 2, &[api1, api2, prom]);
        assert_ne!(first["token"], second["token"]);
        assert_row_has_no_envelope(&app, &id, 2).await;

        let app = app.restart_with(backend).await;
        let (body, seen) = check(&app, &sim, &id, "target-a").await;
        assert_eq!(body["status"]["state"], "ONLINE", "{body}");
        assert!(seen.iter().all(|t| t.as_deref() == Some(api2)), "{seen:?}");

        // Delete: Secret and row gone; a second delete is CREDENTIALS_NOT_FOUND.
        let path = app.url(&format!("/api/v1/clusters/{id}/credentials"));
        let response = app.client.delete(&path).send().await.unwrap();
        assert_eq!(response.status(), 204);
        assert!(secret_of(&sim, &id).await.is_none());
        assert!(app
            .store
            .get_credentials(id.parse().unwrap())
            .await
            .unwrap()
            .is_none());
        assert_error(
            app.client.delete(&path).send().await.unwrap(),
            404,
            "CREDENTIALS_NOT_FOUND",
        )
        .await;

        // Deleting the cluster removes its Secret too.
        put_token(&app, &id, api2, prom, "").await;
        assert!(secret_of(&sim, &id).await.is_some());
        let response = app.delete_cluster(&id).await;
        assert_eq!(response.status(), 204);
        assert!(secret_of(&sim, &id).await.is_none());
    }

    async fn run(backend: Backend) {
        let sim = SpawnedSim::start().await.unwrap();
        let hub = hub(&sim).await;
        let dir = tempfile::tempdir().unwrap();
        let settings = kubernetes_backend(&hub, dir.path());
        if let Some(app) = spawn_app_with(backend, settings.clone()).await {
            body(app, sim, settings).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        run(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        run(Backend::Postgres).await;
    }
}

/// Edits the hub's Secret of `id` with a JSON merge patch, as someone with
/// access to the hub could.
async fn patch_secret(hub: &ClusterView, id: &str, patch: Value) {
    let url = format!(
        "{}/api/v1/namespaces/{NAMESPACE}/secrets/cluster-creds-{id}",
        hub.api_server_url
    );
    let response = reqwest::Client::new()
        .patch(url)
        .bearer_auth(HUB_TOKEN)
        .header("content-type", "application/merge-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn decrypt_failures(app: &TestApp) -> usize {
    app.store
        .list_audit(&AuditQuery {
            action: Some("credentials.decrypt".into()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .iter()
        .filter(|entry| entry.result == fleetreg_model::AuditResult::Failure)
        .count()
}

mod edited_secret_is_not_used {
    use super::*;

    /// After a restart (nothing cached), the check reads the Secret, refuses
    /// it, goes on without credentials and audits the failed opening;
    /// `validate` answers 500.
    async fn refused(
        app: TestApp,
        sim: &SpawnedSim,
        id: &str,
        backend: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let app = app.restart_with(backend).await;
        let failures = decrypt_failures(&app).await;
        let (_, seen) = check(&app, sim, id, "target-b").await;
        assert!(seen.iter().all(Option::is_none), "{seen:?}");
        assert!(decrypt_failures(&app).await > failures, "audited");
        let response = app
            .client
            .post(app.url(&format!("/api/v1/clusters/{id}/credentials/validate")))
            .send()
            .await
            .unwrap();
        assert_error(response, 500, "INTERNAL_ERROR").await;
        app
    }

    async fn body(
        app: TestApp,
        sim: SpawnedSim,
        hub: ClusterView,
        backend: impl FnOnce(&mut Settings) + Clone,
    ) {
        let (api, prom) = ("api-marker-b7e1", "prom-marker-b7e1");
        let view = target(&sim, "target-b", api, prom).await;
        let id = register_with_prometheus(&app, &view).await;
        put_token(&app, &id, api, prom, "").await;

        // Another version than the row's.
        patch_secret(
            &hub,
            &id,
            json!({ "metadata": { "annotations": { VERSION_ANNOTATION: "7" } } }),
        )
        .await;
        let app = refused(app, &sim, &id, backend.clone()).await;

        // The right version, but a value that is not an envelope of this cluster.
        let garbage = STANDARD.encode("v1.garbage.not.an.envelope");
        patch_secret(
            &hub,
            &id,
            json!({ "metadata": { "annotations": { VERSION_ANNOTATION: "1" } },
                    "data": { "token": garbage } }),
        )
        .await;
        let app = refused(app, &sim, &id, backend.clone()).await;

        // A new upload replaces it and works again.
        put_token(&app, &id, api, prom, "").await;
        let (body, seen) = check(&app, &sim, &id, "target-b").await;
        assert_eq!(body["status"]["state"], "ONLINE", "{body}");
        assert!(seen.iter().all(|t| t.as_deref() == Some(api)), "{seen:?}");
    }

    async fn run(backend: Backend) {
        let sim = SpawnedSim::start().await.unwrap();
        let hub = hub(&sim).await;
        let dir = tempfile::tempdir().unwrap();
        let settings = kubernetes_backend(&hub, dir.path());
        if let Some(app) = spawn_app_with(backend, settings.clone()).await {
            body(app, sim, hub, settings).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        run(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        run(Backend::Postgres).await;
    }
}

/// A change of the test settings.
type Adjust = dyn Fn(&mut Settings);

/// `serve` refuses to start with the Kubernetes backend and no `api_url`, no
/// token, an unreachable hub or a token the hub refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_to_start_without_a_usable_hub() {
    let sim = SpawnedSim::start().await.unwrap();
    let hub = hub(&sim).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fleetreg.db").display());
    let start = |adjust: &Adjust| {
        let mut settings = test_settings(&url);
        kubernetes_backend(&hub, dir.path())(&mut settings);
        adjust(&mut settings);
        async move {
            match Application::build(settings).await {
                Ok(_) => panic!("started"),
                Err(error) => error,
            }
        }
    };
    let cases: [(&Adjust, &str); 4] = [
        (
            &|s| s.credentials.kubernetes.api_url = None,
            "credentials.kubernetes.api_url is not set",
        ),
        (
            &|s| s.credentials.kubernetes.token_file = None,
            "FLEETREG_HUB_TOKEN",
        ),
        (
            &|s| s.credentials.kubernetes.api_url = Some("http://127.0.0.1:9/c/hub".into()),
            "hub unreachable",
        ),
        (
            &|s| s.credentials.kubernetes.token = Some("not-the-hub-token".into()),
            "401",
        ),
    ];
    for (adjust, expected) in cases {
        let error = start(adjust).await;
        assert!(
            matches!(error, StartError::CredentialsBackend(_)),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains(expected), "{message}");
        assert!(!message.contains(HUB_TOKEN), "{message}");
    }
}

/// `fleetreg vault rotate-master-key` with the Kubernetes backend re-wraps the
/// envelopes in the Secrets (version kept), and the row's key id follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_rotation_rewraps_secret_envelopes() {
    let sim = SpawnedSim::start().await.unwrap();
    let hub = hub(&sim).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file: PathBuf = dir.path().join("fleetreg-master.key");
    let backend = kubernetes_backend(&hub, dir.path());
    let settings = {
        let (backend, key_file) = (backend.clone(), key_file.clone());
        move |s: &mut Settings| {
            backend(s);
            s.credentials.master_key = None;
            s.credentials.master_key_file = key_file;
        }
    };
    let app = spawn_app_with(Backend::Sqlite, settings.clone())
        .await
        .unwrap();
    let (api, prom) = ("api-marker-c41d", "prom-marker-c41d");
    let view = target(&sim, "target-c", api, prom).await;
    let id = register_with_prometheus(&app, &view).await;
    put_token(&app, &id, api, prom, "").await;
    let before = secret_of(&sim, &id).await.unwrap();

    let mut config = Settings::default();
    settings.clone()(&mut config);
    let options = VaultOptions {
        database_url: app.database_url.clone(),
        master_key_file: key_file.clone(),
        master_key: None,
        kubernetes: hub_config(&config.credentials).unwrap(),
    };
    let outcome = rotate_master_key(&options, false).await.expect("rotation");
    let new_key = outcome.new_key.expect("new key").to_string();
    let report = &outcome.report;
    assert_eq!(report.clusters_rewrapped, 1, "{report:?}");
    assert_eq!(report.envelopes_rewrapped, 2, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");

    let after = secret_of(&sim, &id).await.unwrap();
    assert_layout(&after, &id, 1, &[api, prom]);
    assert_eq!(
        after.object["metadata"]["annotations"][KEY_ID_ANNOTATION],
        new_key
    );
    assert_ne!(before.decoded["token"], after.decoded["token"]);
    let row = app
        .store
        .get_credentials(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.key_id, new_key);
    assert!(row.sealed.is_empty());

    // A second pass finds nothing to do; a server started now opens them.
    let again = rotate_master_key(&options, true).await.unwrap();
    assert_eq!(again.report.already_current, 1, "{:?}", again.report);
    let app = app.restart_with(settings).await;
    let (body, seen) = check(&app, &sim, &id, "target-c").await;
    assert_eq!(body["status"]["state"], "ONLINE", "{body}");
    assert!(seen.iter().all(|t| t.as_deref() == Some(api)), "{seen:?}");

    // Without the backend's configuration the rotation refuses those rows.
    let database_only = VaultOptions {
        kubernetes: None,
        ..options
    };
    let outcome = rotate_master_key(&database_only, true).await.unwrap();
    assert_eq!(outcome.report.failed.len(), 1, "{:?}", outcome.report);
}

/// An HTTPS hub: trusted through `ca_cert_file`, refused without it, and
/// accepted unverified with `insecure_skip_tls_verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_hub_needs_its_ca_or_insecure() {
    let sim = SpawnedSim::start_tls().await.unwrap();
    let hub = hub(&sim).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("hub-ca.pem");
    std::fs::write(&ca_file, sim.ca_pem().unwrap()).unwrap();
    let url = format!("sqlite://{}", dir.path().join("fleetreg.db").display());
    let build = |adjust: &Adjust| {
        let mut settings = test_settings(&url);
        kubernetes_backend(&hub, dir.path())(&mut settings);
        adjust(&mut settings);
        Application::build(settings)
    };

    let error = match build(&|_| {}).await {
        Ok(_) => panic!("started without trusting the hub's CA"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("hub unreachable"), "{error}");
    let trusted = ca_file.clone();
    drop(
        build(&move |s| s.credentials.kubernetes.ca_cert_file = Some(trusted.clone()))
            .await
            .expect("starts with the hub's CA"),
    );
    drop(
        build(&|s| s.credentials.kubernetes.insecure_skip_tls_verify = true)
            .await
            .expect("starts unverified"),
    );
}

/// A SQLite app on the Kubernetes backend (hub: a simulated cluster) with the
/// credentials `api` / `prom` of the simulated cluster `name` stored.
struct OnHub<B> {
    sim: SpawnedSim,
    hub: ClusterView,
    dir: tempfile::TempDir,
    backend: B,
    app: TestApp,
    id: String,
}

async fn stored_on_hub(
    name: &str,
    api: &str,
    prom: &str,
) -> OnHub<impl FnOnce(&mut Settings) + Clone> {
    let sim = SpawnedSim::start().await.unwrap();
    let hub = hub(&sim).await;
    let dir = tempfile::tempdir().unwrap();
    let backend = kubernetes_backend(&hub, dir.path());
    let app = spawn_app_with(Backend::Sqlite, backend.clone())
        .await
        .unwrap();
    let view = target(&sim, name, api, prom).await;
    let id = register_with_prometheus(&app, &view).await;
    put_token(&app, &id, api, prom, "").await;
    OnHub {
        sim,
        hub,
        dir,
        backend,
        app,
        id,
    }
}

/// The Secret is written before the row; when the row's commit is refused the
/// previous Secret is put back, or the new one removed when there was none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_commit_restores_the_previous_secret() {
    use fleetreg_model::{Audit, CredentialInput, CredentialWrite};
    use fleetreg_server::credentials::{Credentials, CredentialsError, SecretsBackend};
    use fleetreg_store::StoreError;
    use std::sync::Arc;

    let (api, prom) = ("api-marker-d93a", "prom-marker-d93a");
    let OnHub {
        sim,
        hub: _,
        dir: _dir,
        backend,
        app,
        id,
    } = stored_on_hub("target-d", api, prom).await;
    let before = secret_of(&sim, &id).await.unwrap();

    // A second vault on the same store and hub, as another replica would be.
    let mut settings = Settings::default();
    backend(&mut settings);
    let hub_config = hub_config(&settings.credentials).unwrap().unwrap();
    let keyring =
        fleetreg_vault::Keyring::from_value(crate::helpers::TEST_MASTER_KEY, "test").unwrap();
    let credentials = Credentials::open(app.store.clone(), keyring)
        .await
        .unwrap()
        .with_secrets(Some(SecretsBackend::connect(&hub_config).await.unwrap()));
    let input: CredentialInput = serde_json::from_value(
        json!({ "auth_type": "TOKEN", "token": "api-marker-d93a-new", "prometheus_token": prom }),
    )
    .unwrap();
    let credential = Arc::new(Credentials::build(&input).unwrap());
    let audit = Audit::system("test");
    let cluster = app.store.get_cluster(id.parse().unwrap()).await.unwrap();

    // The row is not at the expected version: refused, the Secret put back.
    let error = credentials
        .put(
            &cluster,
            CredentialWrite::Rotate,
            &input,
            credential.clone(),
            Some(7),
            &audit,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            CredentialsError::Store(StoreError::PreconditionFailed { .. })
        ),
        "{error}"
    );
    let after = secret_of(&sim, &id).await.unwrap();
    assert_eq!(after.decoded, before.decoded);
    assert_eq!(
        after.object["metadata"]["annotations"],
        before.object["metadata"]["annotations"]
    );
    assert_row_has_no_envelope(&app, &id, 1).await;

    // The row moves on behind this vault's back (a replica with the database
    // backend) after the Secret was checked: the Secret written for version 2
    // is refused at commit and the previous one put back.
    let database_only = Credentials::open(
        app.store.clone(),
        fleetreg_vault::Keyring::from_value(crate::helpers::TEST_MASTER_KEY, "test").unwrap(),
    )
    .await
    .unwrap();
    let moved = database_only
        .put(
            &cluster,
            CredentialWrite::Rotate,
            &input,
            credential.clone(),
            Some(1),
            &audit,
        )
        .await
        .unwrap();
    assert_eq!(moved.version, 2);
    let error = credentials
        .put(
            &cluster,
            CredentialWrite::Rotate,
            &input,
            credential.clone(),
            Some(1),
            &audit,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            CredentialsError::Store(StoreError::PreconditionFailed {
                expected: 1,
                actual: 2,
                ..
            })
        ),
        "{error}"
    );
    let after = secret_of(&sim, &id).await.unwrap();
    assert_eq!(after.decoded, before.decoded);
    assert_eq!(
        after.object["metadata"]["annotations"],
        before.object["metadata"]["annotations"]
    );

    // A rotation of credentials that do not exist: refused, no Secret left.
    let other = target(&sim, "target-e", api, prom).await;
    let other_id = register_with_prometheus(&app, &other).await;
    let other_cluster = app
        .store
        .get_cluster(other_id.parse().unwrap())
        .await
        .unwrap();
    let error = credentials
        .put(
            &other_cluster,
            CredentialWrite::Rotate,
            &input,
            credential,
            None,
            &audit,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            CredentialsError::Store(StoreError::CredentialsNotFound(_))
        ),
        "{error}"
    );
    assert!(secret_of(&sim, &other_id).await.is_none());
}

/// Another replica's write between its two steps (its Secret written, its row
/// not yet committed: here a Secret annotated one version ahead): uploads and
/// rotations answer 412 and change nothing; a check meeting it goes on without
/// credentials, audited and logged once for the row's version; once the
/// Secret is back, all works again. A Secret of another version written long
/// ago is abandoned, and an upload replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_flight_elsewhere_is_refused_with_412() {
    let (api, prom) = ("api-marker-e5a0", "prom-marker-e5a0");
    let OnHub {
        sim,
        hub,
        dir: _dir,
        backend,
        app,
        id,
    } = stored_on_hub("target-f", api, prom).await;

    patch_secret(
        &hub,
        &id,
        json!({ "metadata": { "annotations": { VERSION_ANNOTATION: "2" } } }),
    )
    .await;
    let before = secret_of(&sim, &id).await.unwrap();
    for path in ["", "/rotate"] {
        let body = json!({ "auth_type": "TOKEN", "token": api, "prometheus_token": prom });
        let response = app
            .client
            .post(app.url(&format!("/api/v1/clusters/{id}/credentials{path}")))
            .json(&body)
            .send()
            .await
            .unwrap();
        let error = assert_error(response, 412, "PRECONDITION_FAILED").await;
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains("changed while this write"), "{message}");
        let after = secret_of(&sim, &id).await.unwrap();
        assert_eq!(after.decoded, before.decoded);
        assert_eq!(
            after.object["metadata"]["annotations"],
            before.object["metadata"]["annotations"]
        );
        assert_row_has_no_envelope(&app, &id, 1).await;
    }

    // Nothing cached: checks go on without credentials, audited once.
    let failures = decrypt_failures(&app).await;
    let app = app.restart_with(backend.clone()).await;
    for _ in 0..2 {
        let (_, seen) = check(&app, &sim, &id, "target-f").await;
        assert!(seen.iter().all(Option::is_none), "{seen:?}");
    }
    assert_eq!(decrypt_failures(&app).await, failures + 1);

    // The other write put the Secret back: used again, and writes go through.
    patch_secret(
        &hub,
        &id,
        json!({ "metadata": { "annotations": { VERSION_ANNOTATION: "1" } } }),
    )
    .await;
    let (body, seen) = check(&app, &sim, &id, "target-f").await;
    assert_eq!(body["status"]["state"], "ONLINE", "{body}");
    assert!(seen.iter().all(|t| t.as_deref() == Some(api)), "{seen:?}");
    let stored = put_token(&app, &id, api, prom, "").await;
    assert_eq!(stored["version"], 2);
    assert_layout(&secret_of(&sim, &id).await.unwrap(), &id, 2, &[api, prom]);

    // Another version, written long ago: abandoned, replaced.
    patch_secret(
        &hub,
        &id,
        json!({ "metadata": { "annotations": {
            VERSION_ANNOTATION: "9", WRITTEN_AT_ANNOTATION: "2020-01-01T00:00:00.000Z" } } }),
    )
    .await;
    let stored = put_token(&app, &id, api, prom, "").await;
    assert_eq!(stored["version"], 3);
    assert_layout(&secret_of(&sim, &id).await.unwrap(), &id, 3, &[api, prom]);
    assert_row_has_no_envelope(&app, &id, 3).await;
}

/// Deleting credentials removes the row first, then the Secret: when the hub
/// refuses the Secret's removal the delete still succeeds and the leftover
/// Secret is not used; an upload replaces it once it is abandoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_row_even_when_the_secret_stays() {
    let (api, prom) = ("api-marker-f6b1", "prom-marker-f6b1");
    let OnHub {
        sim,
        hub,
        dir: _dir,
        backend: _,
        app,
        id,
    } = stored_on_hub("target-g", api, prom).await;

    let hub_auth = |tokens: Vec<String>| AuthSpec {
        required: true,
        tokens,
        ..AuthSpec::default()
    };
    sim.admin()
        .set_auth("hub", &hub_auth(vec!["not-the-registry".into()]))
        .await
        .unwrap();
    let path = app.url(&format!("/api/v1/clusters/{id}/credentials"));
    let response = app.client.delete(&path).send().await.unwrap();
    assert_eq!(response.status(), 204);
    sim.admin()
        .set_auth("hub", &hub_auth(vec![HUB_TOKEN.into()]))
        .await
        .unwrap();
    assert!(app
        .store
        .get_credentials(id.parse().unwrap())
        .await
        .unwrap()
        .is_none());
    assert!(secret_of(&sim, &id).await.is_some(), "left on the hub");
    let failures = decrypt_failures(&app).await;
    let (_, seen) = check(&app, &sim, &id, "target-g").await;
    assert!(seen.iter().all(Option::is_none), "{seen:?}");
    assert_eq!(decrypt_failures(&app).await, failures);

    // Just written, it might be another replica's first upload: refused.
    let body = json!({ "auth_type": "TOKEN", "token": api, "prometheus_token": prom });
    let response = app.client.post(&path).json(&body).send().await.unwrap();
    assert_error(response, 412, "PRECONDITION_FAILED").await;
    // Abandoned: replaced by a new upload.
    patch_secret(
        &hub,
        &id,
        json!({ "metadata": { "annotations": {
            WRITTEN_AT_ANNOTATION: "2020-01-01T00:00:00.000Z" } } }),
    )
    .await;
    let stored = put_token(&app, &id, api, prom, "").await;
    assert_eq!(stored["version"], 1);
    assert_layout(&secret_of(&sim, &id).await.unwrap(), &id, 1, &[api, prom]);
    let (body, seen) = check(&app, &sim, &id, "target-g").await;
    assert_eq!(body["status"]["state"], "ONLINE", "{body}");
    assert!(seen.iter().all(|t| t.as_deref() == Some(api)), "{seen:?}");
}
