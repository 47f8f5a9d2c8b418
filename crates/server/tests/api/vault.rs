//! Master-key rotation (`fleetreg vault rotate-master-key`) against servers
//! reading the key file: credentials stored through the API are re-wrapped
//! under the new key (version kept, no event, audited), running servers keep
//! authenticating (one with the credentials opened, one opening them after the
//! rotation), uploads by a server still sealing with the old key are picked up
//! by `--rewrap-only`, a restarted server uses both keys, a server with only the
//! old key refuses to start and one with only the new key works.

use crate::helpers::{
    add_token, put_token, register_with_prometheus, spawn_app_with, target, Backend, TestApp,
};
use fleetreg_server::credentials::rotate::{rotate_master_key, vault_status, VaultOptions};
use fleetreg_server::credentials::KeyError;
use fleetreg_server::settings::Settings;
use fleetreg_server::{Application, StartError};
use fleetreg_sim::SpawnedSim;
use fleetreg_store::{AuditQuery, RewrapCredentials};
use fleetreg_vault::Sealed;
use serde_json::Value;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Settings reading the master key from `file` (not `FLEETREG_MASTER_KEY`).
fn key_file(file: &Path) -> impl FnOnce(&mut Settings) {
    let file = file.to_path_buf();
    move |settings: &mut Settings| {
        settings.credentials.master_key = None;
        settings.credentials.master_key_file = file;
        settings.health_check.timeout_seconds = Some(3);
    }
}

/// Writes `lines` as a new key file (mode 0600).
fn write_key_file(path: &Path, lines: &[&str]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
}

fn key_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Refreshes `id` on `app` and returns the bearer tokens its API server saw.
async fn check(app: &TestApp, sim: &SpawnedSim, id: &str, name: &str) -> Vec<Option<String>> {
    let after = sim.admin().log_end().await.unwrap();
    let response = app
        .client
        .post(app.url(&format!("/api/v1/clusters/{id}/refresh")))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"]["state"], "ONLINE", "{body}");
    let log = sim.admin().requests(after, Some(name)).await.unwrap();
    let seen: Vec<Option<String>> = log
        .items
        .iter()
        .filter(|r| r.service == fleetreg_sim::Service::ApiServer)
        .map(|r| r.bearer_token.clone())
        .collect();
    assert!(!seen.is_empty());
    seen
}

/// The key ids of a cluster's stored envelopes, its row's key id and version.
async fn stored_keys(app: &TestApp, id: &str) -> (Vec<String>, String, i64) {
    let stored = app
        .store
        .get_credentials(id.parse().unwrap())
        .await
        .unwrap()
        .expect("stored credentials");
    let envelopes = stored
        .sealed
        .values()
        .map(|text| text.parse::<Sealed>().unwrap().key_id().to_string())
        .collect();
    (envelopes, stored.key_id, stored.version)
}

fn options(app: &TestApp, file: &Path) -> VaultOptions {
    VaultOptions {
        database_url: app.database_url.clone(),
        master_key_file: file.to_path_buf(),
        master_key: None,
        kubernetes: None,
    }
}

mod rotation {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        body(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        body(Backend::Postgres).await;
    }
}

async fn body(backend: Backend) {
    let keys = tempfile::tempdir().unwrap();
    let file: PathBuf = keys.path().join("fleetreg-master.key");
    let Some(app) = spawn_app_with(backend, key_file(&file)).await else {
        return;
    };
    let old_key = key_lines(&file).remove(0);
    let sim = SpawnedSim::start().await.unwrap();
    let a = target(&sim, "rot-a", "token-a-marker", "prom-rot-a").await;
    let b = target(&sim, "rot-b", "token-b-marker", "prom-rot-b").await;
    let id_a = register_with_prometheus(&app, &a).await;
    let id_b = register_with_prometheus(&app, &b).await;
    put_token(&app, &id_a, "token-a-marker", "prom-rot-a", "").await;
    put_token(&app, &id_b, "token-b-marker", "prom-rot-b", "").await;
    let old_id = stored_keys(&app, &id_a).await.1;

    // A replica that has not opened any credentials yet.
    let replica = app.spawn_replica_with(key_file(&file)).await;

    // Rotate: a new active key first in the file, the old one kept.
    let revision = app.store.latest_revision().await.unwrap();
    let outcome = rotate_master_key(&options(&app, &file), false)
        .await
        .expect("rotation");
    let new_id = outcome.new_key.expect("new key").to_string();
    assert_ne!(new_id, old_id);
    let lines = key_lines(&file);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1], old_key);
    let report = &outcome.report;
    assert_eq!(report.clusters, 2, "{report:?}");
    assert_eq!(report.clusters_rewrapped, 2, "{report:?}");
    assert_eq!(report.envelopes_rewrapped, 4, "{report:?}");
    assert_eq!(report.retried, 0, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.envelopes_remaining(), 0, "{report:?}");
    assert!(outcome.canary_replaced);

    // Only the wraps changed: version kept, no event, each re-wrap audited.
    for id in [&id_a, &id_b] {
        let (envelopes, row_key, version) = stored_keys(&app, id).await;
        assert!(envelopes.iter().all(|k| *k == new_id), "{envelopes:?}");
        assert_eq!(row_key, new_id);
        assert_eq!(version, 1);
    }
    // (The checks that follow an upload may still append status events.)
    let events = app.store.events_after(revision, 1000).await.unwrap().items;
    assert!(
        events
            .iter()
            .all(|e| e.event_type != fleetreg_model::EventType::ClusterCredentialsUpdated),
        "{events:?}"
    );
    let audit = app
        .store
        .list_audit(&AuditQuery {
            action: Some("vault.rewrap".into()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(audit
        .iter()
        .all(|e| e.resource == "credentials" && e.actor == "system:vault-rotation"));

    // A re-wrap read at a version that moved is not written.
    let id: Uuid = id_a.parse().unwrap();
    let current = app.store.get_credentials(id).await.unwrap().unwrap();
    let stale = RewrapCredentials {
        cluster_id: id,
        expected_version: current.version + 1,
        sealed: Default::default(),
        key_id: "stale".into(),
    };
    let audit_as = fleetreg_model::Audit::system("test");
    assert!(!app
        .store
        .rewrap_credentials(stale, &audit_as)
        .await
        .unwrap());
    assert_eq!(app.store.get_credentials(id).await.unwrap(), Some(current));

    // Running servers keep authenticating: the first with the credentials it
    // opened, the replica opening re-wrapped ones (it re-reads the key file).
    let seen = check(&app, &sim, &id_a, "rot-a").await;
    assert!(
        seen.iter().all(|t| t.as_deref() == Some("token-a-marker")),
        "{seen:?}"
    );
    let seen = check(&replica, &sim, &id_b, "rot-b").await;
    assert!(
        seen.iter().all(|t| t.as_deref() == Some("token-b-marker")),
        "{seen:?}"
    );

    // The first server still seals with the old key; --rewrap-only catches up.
    add_token(&sim, "rot-a", "token-a2-marker").await;
    put_token(&app, &id_a, "token-a2-marker", "prom-rot-a", "/rotate").await;
    let (envelopes, _, version) = stored_keys(&app, &id_a).await;
    assert!(envelopes.iter().all(|k| *k == old_id), "{envelopes:?}");
    assert_eq!(version, 2);
    let status = vault_status(&options(&app, &file)).await.unwrap();
    let under_old = status.usage.iter().find(|u| u.key_id == old_id).unwrap();
    assert_eq!((under_old.clusters, under_old.envelopes), (1, 2));
    let outcome = rotate_master_key(&options(&app, &file), true)
        .await
        .expect("rewrap only");
    assert_eq!(outcome.new_key, None);
    assert_eq!(outcome.report.clusters_rewrapped, 1, "{:?}", outcome.report);
    assert_eq!(outcome.report.already_current, 1, "{:?}", outcome.report);
    assert_eq!(outcome.report.envelopes_remaining(), 0);
    assert!(!outcome.canary_replaced);
    assert_eq!(key_lines(&file).len(), 2);
    let status = vault_status(&options(&app, &file)).await.unwrap();
    assert_eq!(status.usage.len(), 1, "{:?}", status.usage);
    assert_eq!(status.usage[0].key_id, new_id);
    assert_eq!(status.canary_key.as_deref(), Some(new_id.as_str()));
    drop(replica);

    // Restarted with the rotated file (both keys): the stored credentials open.
    let app = app.restart_with(key_file(&file)).await;
    let seen = check(&app, &sim, &id_a, "rot-a").await;
    assert!(
        seen.iter().all(|t| t.as_deref() == Some("token-a2-marker")),
        "{seen:?}"
    );

    // Only the old key: refused at start (the canary is under the new key).
    let old_only = keys.path().join("old-only.key");
    write_key_file(&old_only, &[&old_key]);
    let mut settings = crate::helpers::test_settings(&app.database_url);
    key_file(&old_only)(&mut settings);
    match Application::build(settings).await {
        Err(StartError::Vault(KeyError::Canary(_))) => {}
        Err(other) => panic!("expected the canary refusal, got {other}"),
        Ok(_) => panic!("a server with only the old key started"),
    }

    // Only the new key: starts and authenticates.
    let new_only = keys.path().join("new-only.key");
    write_key_file(&new_only, &[&key_lines(&file)[0]]);
    let app = app.restart_with(key_file(&new_only)).await;
    let seen = check(&app, &sim, &id_b, "rot-b").await;
    assert!(
        seen.iter().all(|t| t.as_deref() == Some("token-b-marker")),
        "{seen:?}"
    );
}
