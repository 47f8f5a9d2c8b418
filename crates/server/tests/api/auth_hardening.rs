//! Issue 11, items 6, 7, 10, 12 and 14: a revoked bootstrap token stays
//! revoked, event streams end with their token, refusals by role are audited,
//! tokens are stored keyed and listed without admin-chosen characters, and one
//! answer for every unusable token.

use crate::helpers::{
    assert_error, client_with_token, test_settings, Backend, TestApp, TEST_ADMIN_TOKEN,
};
use crate::rbac::{create_token, manual_clock};
use fleetreg_server::auth::BootstrapError;
use fleetreg_server::{Application, StartError};
use futures::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::time::Instant;

/// Generous for a loaded 2-core machine; the server needs far less.
const PATIENCE: Duration = Duration::from_secs(30);

/// The id of the token named `name` in `GET /api/v1/tokens`.
async fn token_record(app: &TestApp, client: &reqwest::Client, name: &str) -> Value {
    let list: Value = client
        .get(app.url("/api/v1/tokens"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no token {name} in {list}"))
        .clone()
}

async fn revoke(app: &TestApp, client: &reqwest::Client, id: &str) {
    let response = client
        .delete(app.url(&format!("/api/v1/tokens/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

/// The audit entries matching `query`, read with `client` (admin).
async fn audit(app: &TestApp, client: &reqwest::Client, query: &[(&str, &str)]) -> Vec<Value> {
    let page: Value = client
        .get(app.url("/api/v1/audit"))
        .query(query)
        .query(&[("limit", "1000")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["items"].as_array().unwrap().clone()
}

/// An open event stream, read as raw text.
struct Stream {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    text: String,
}

impl Stream {
    async fn open(app: &TestApp, token: &str) -> Stream {
        let response = client_with_token(token)
            .get(app.url("/api/v1/events/stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut stream = Stream {
            body: Box::pin(response.bytes_stream()),
            text: String::new(),
        };
        // Subscribed once the first comment arrived.
        assert!(stream.read_until(": connected").await, "stream opened");
        stream
    }

    /// Reads until the text holds `needle` (true) or the stream ends (false).
    async fn read_until(&mut self, needle: &str) -> bool {
        let read = async {
            while !self.text.contains(needle) {
                match self.body.next().await {
                    Some(Ok(chunk)) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                    Some(Err(_)) | None => return false,
                }
            }
            true
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .expect("the stream neither delivered nor ended in time")
    }

    /// Waits until the server ends the stream; panics after `limit`.
    async fn ended_within(&mut self, limit: Duration) {
        let end = async {
            loop {
                match self.body.next().await {
                    Some(Ok(chunk)) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                    Some(Err(_)) | None => return,
                }
            }
        };
        tokio::time::timeout(limit, end)
            .await
            .unwrap_or_else(|_| panic!("the stream was still open after {limit:?}: {}", self.text));
    }
}

// Item 6. Fails before: the refused start-up succeeded and re-created the
// token (a second `token.create` by `system:bootstrap`).
api_test!(a_revoked_bootstrap_token_stays_revoked, |app| {
    let other = create_token(&app, "second-admin", "admin", None).await;
    let admin = client_with_token(other["token"].as_str().unwrap());
    let bootstrap = token_record(&app, &admin, "bootstrap-admin").await;
    revoke(&app, &app.client, bootstrap["id"].as_str().unwrap()).await;
    assert_error(app.get("/api/v1/clusters").await, 401, "UNAUTHENTICATED").await;

    // Starting again with the same FLEETREG_ADMIN_TOKEN is refused, clearly.
    let refused = Application::build(test_settings(&app.database_url)).await;
    let Err(error) = refused else {
        panic!("started with a revoked FLEETREG_ADMIN_TOKEN");
    };
    assert!(
        matches!(error, StartError::Auth(BootstrapError::Revoked { .. })),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("FLEETREG_ADMIN_TOKEN") && message.contains("revoked"),
        "{message}"
    );
    assert!(message.contains("new value"), "names the remedy: {message}");
    assert_error(app.get("/api/v1/clusters").await, 401, "UNAUTHENTICATED").await;
    let created = audit(
        &app,
        &admin,
        &[("action", "token.create"), ("actor", "system:bootstrap")],
    )
    .await;
    assert_eq!(created.len(), 1, "created once, never again: {created:?}");

    // A new value is the remedy: it works, the revoked one still does not.
    let new_value = "frg_a-new-bootstrap-admin-value-42";
    let app = app
        .restart_with(|s| s.auth.admin_token = Some(new_value.into()))
        .await;
    let response = client_with_token(new_value)
        .get(app.url("/api/v1/clusters"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_error(app.get("/api/v1/clusters").await, 401, "UNAUTHENTICATED").await;
    // Going back to the revoked value after the remedy is still refused: the
    // replaced row is kept (revoked), not deleted.
    let refused = Application::build(test_settings(&app.database_url)).await;
    assert!(
        matches!(
            refused,
            Err(StartError::Auth(BootstrapError::Revoked { .. }))
        ),
        "the revoked value came back after a replacement"
    );
});

// Item 7. Fails before: the stream stayed open (keep-alives) after revocation.
api_test!(a_stream_ends_when_its_token_is_revoked, |app| {
    let viewer = create_token(&app, "stream-viewer", "viewer", None).await;
    let token = viewer["token"].as_str().unwrap();
    let mut stream = Stream::open(&app, token).await;
    app.register("streamed-1", json!({})).await;
    assert!(
        stream.read_until("streamed-1").await,
        "delivers while valid"
    );

    revoke(&app, &app.client, viewer["id"].as_str().unwrap()).await;
    // Revoked through this server: the stream is told at once.
    stream.ended_within(Duration::from_secs(10)).await;
    let response = client_with_token(token)
        .get(app.url("/api/v1/events/stream"))
        .send()
        .await
        .unwrap();
    assert_error(response, 401, "UNAUTHENTICATED").await;
});

// Item 7, across replicas: the replica learns of the revocation from the
// shared store by re-checking (every 2 s, through its 5 s token cache).
api_test!(
    a_stream_on_a_replica_ends_when_the_token_is_revoked_elsewhere,
    |app| {
        let replica = app.spawn_replica().await;
        let viewer = create_token(&app, "replica-viewer", "viewer", None).await;
        let mut stream = Stream::open(&replica, viewer["token"].as_str().unwrap()).await;
        app.register("replicated-1", json!({})).await;
        assert!(
            stream.read_until("replicated-1").await,
            "delivers while valid"
        );
        revoke(&app, &app.client, viewer["id"].as_str().unwrap()).await;
        stream.ended_within(PATIENCE).await;
    }
);

// Item 7, expiry. Fails before: the stream outlived its token. On a manual
// clock: the stream stays open until the clock passes the token's expiry.
mod a_stream_ends_when_its_token_expires {
    use super::*;

    async fn body(app: TestApp) {
        let viewer = create_token(&app, "short-lived", "viewer", Some(3600)).await;
        let token = viewer["token"].as_str().unwrap();
        let mut stream = Stream::open(&app, token).await;
        // A second before the expiry, and long enough for the stream's
        // periodic re-check (every 2 s) to have judged the token at that time.
        app.clock.advance(chrono::Duration::seconds(3599));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        app.register("before-expiry", json!({})).await;
        assert!(
            stream.read_until("before-expiry").await,
            "still delivering a second before the token expires: {}",
            stream.text
        );
        let started = Instant::now();
        app.clock.advance(chrono::Duration::seconds(1));
        stream.ended_within(PATIENCE).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "ended at the next re-check: {:?}",
            started.elapsed()
        );
        assert!(
            stream.text.contains("revoked or has expired"),
            "{}",
            stream.text
        );
        let response = client_with_token(token)
            .get(app.url("/api/v1/events/stream"))
            .send()
            .await
            .unwrap();
        assert_error(response, 401, "UNAUTHENTICATED").await;
    }

    on_both_stores!(manual_clock);
}

// Item 10. Fails before: 403s wrote no audit entry.
api_test!(refusals_by_role_are_audited_unknown_tokens_are_not, |app| {
    let cluster = app.register("guarded", json!({})).await;
    let id = cluster["id"].as_str().unwrap();
    let viewer = create_token(&app, "curious-viewer", "viewer", None).await;
    let client = client_with_token(viewer["token"].as_str().unwrap());
    let response = client
        .delete(app.url(&format!("/api/v1/clusters/{id}")))
        .send()
        .await
        .unwrap();
    assert_error(response, 403, "FORBIDDEN").await;
    let response = client.get(app.url("/api/v1/audit")).send().await.unwrap();
    assert_error(response, 403, "FORBIDDEN").await;

    let refused = audit(&app, &app.client, &[("actor", "curious-viewer")]).await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    let delete = &refused[0];
    assert_eq!(delete["action"], "cluster.delete");
    assert_eq!(delete["resource"], "cluster");
    assert_eq!(delete["resource_id"], id);
    assert_eq!(delete["role"], "viewer");
    assert_eq!(delete["result"], "failure");
    assert_eq!(delete["error_code"], "FORBIDDEN");
    assert!(delete["request_id"].is_string() && delete["source"].is_string());
    assert_eq!(refused[1]["action"], "audit.read");
    assert_eq!(refused[1]["resource_id"], Value::Null);

    // Unauthenticated traffic writes nothing (the README promises no such entry).
    let before = audit(&app, &app.client, &[]).await.len();
    let stranger = client_with_token("frg_someone-guessing-tokens-000000");
    for _ in 0..20 {
        let response = stranger
            .delete(app.url(&format!("/api/v1/clusters/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    assert_eq!(audit(&app, &app.client, &[]).await.len(), before);
});

// Item 14. Fails before: "unknown token" vs "the token is revoked or expired".
mod one_answer_for_unknown_revoked_and_expired_tokens {
    use super::*;

    async fn body(app: TestApp) {
        let revoked = create_token(&app, "to-revoke", "viewer", None).await;
        revoke(&app, &app.client, revoked["id"].as_str().unwrap()).await;
        let expired = create_token(&app, "to-expire", "viewer", Some(60)).await;
        let response = client_with_token(expired["token"].as_str().unwrap())
            .get(app.url("/api/v1/clusters"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "valid until the clock passes its expiry"
        );
        app.clock.advance(chrono::Duration::seconds(61));
        let mut answers = Vec::new();
        for token in [
            "frg_never-issued-by-this-server-0000",
            revoked["token"].as_str().unwrap(),
            expired["token"].as_str().unwrap(),
        ] {
            let response = client_with_token(token)
                .get(app.url("/api/v1/clusters"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let body = assert_error(response, 401, "UNAUTHENTICATED").await;
            answers.push(body["error"].clone());
        }
        assert_eq!(answers[0], answers[1]);
        assert_eq!(answers[0], answers[2]);
    }

    on_both_stores!(manual_clock);
}

fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// Item 12. Fails before: the bootstrap token listed as `frg_test-a`, stored
// hashes were the bare SHA-256.
api_test!(
    tokens_are_stored_keyed_and_listed_without_chosen_characters,
    |app| {
        let bootstrap = token_record(&app, &app.client, "bootstrap-admin").await;
        assert_eq!(
            bootstrap["prefix"], "",
            "an admin-chosen token shows nothing"
        );
        let created = create_token(&app, "generated", "viewer", None).await;
        let token = created["token"].as_str().unwrap();
        assert_eq!(created["prefix"], token[..10]);
        assert_eq!(
            token_record(&app, &app.client, "generated").await["prefix"],
            token[..10]
        );

        let stored = app.store.token_hashes().await.unwrap();
        assert_eq!(stored.len(), 2);
        for plain in [sha256_hex(TEST_ADMIN_TOKEN), sha256_hex(token)] {
            assert!(stored
                .iter()
                .all(|(_, h)| *h != plain && !h.contains(&plain)));
        }
        assert!(
            stored.iter().all(|(_, h)| h.starts_with("hmac:")),
            "{stored:?}"
        );
    }
);

// Item 12, migration: a database from before keyed hashes (bare SHA-256) is
// re-keyed at start-up, and its tokens keep working.
api_test!(plain_token_hashes_are_rekeyed_at_start_up, |app| {
    let legacy = "frg_legacy-token-from-an-old-database-0";
    let record = fleetreg_model::ApiToken {
        id: uuid::Uuid::now_v7(),
        name: "legacy".into(),
        role: fleetreg_model::Role::Viewer,
        prefix: legacy[..10].into(),
        created_at: fleetreg_model::now(),
        expires_at: None,
        revoked_at: None,
        node: None,
    };
    app.store
        .create_token(
            record.clone(),
            sha256_hex(legacy),
            false,
            &fleetreg_model::Audit::system("test"),
        )
        .await
        .unwrap();
    let app = app.restart().await;
    let response = client_with_token(legacy)
        .get(app.url("/api/v1/clusters"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let stored = app.store.token_hashes().await.unwrap();
    let (_, hash) = stored.iter().find(|(id, _)| *id == record.id).unwrap();
    assert!(hash.starts_with("hmac:"), "{hash}");
    let rekeyed = audit(&app, &app.client, &[("action", "token.rekey")]).await;
    assert_eq!(rekeyed.len(), 1);
    assert_eq!(rekeyed[0]["resource_id"], record.id.to_string());
});

// After a master-key rotation a token hashed under the previous key moves to
// the active key at its first use, so the previous key can be retired.
api_test!(
    a_token_under_a_previous_master_key_is_rekeyed_at_first_use,
    |app| {
        let viewer = create_token(&app, "before-rotation", "viewer", None).await;
        let id = viewer["id"].as_str().unwrap().to_owned();
        let hash_of = |app: &TestApp| {
            let store = app.store.clone();
            let id = id.clone();
            async move {
                let hashes = store.token_hashes().await.unwrap();
                hashes
                    .into_iter()
                    .find(|(token, _)| token.to_string() == id)
                    .unwrap()
                    .1
            }
        };
        let before = hash_of(&app).await;
        // Bytes 32..63, base64: a new active key first, the test key kept after it.
        let new_key = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
        let app = app
            .restart_with(|s| {
                s.credentials.master_key =
                    Some(format!("{new_key},{}", crate::helpers::TEST_MASTER_KEY))
            })
            .await;
        let response = client_with_token(viewer["token"].as_str().unwrap())
            .get(app.url("/api/v1/clusters"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "found under the previous key");
        let after = hash_of(&app).await;
        assert_ne!(after, before, "re-keyed under the active key");
        assert!(after.starts_with("hmac:"), "{after}");
        let rekeyed = audit(&app, &app.client, &[("action", "token.rekey")]).await;
        assert!(
            rekeyed.iter().any(|e| e["resource_id"] == id.as_str()),
            "{rekeyed:?}"
        );
    }
);

// Item 12: the SQLite files are private. Fails before (under the usual umask
// 022): the database was created 0644.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_are_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = crate::helpers::spawn_app(Backend::Sqlite).await.unwrap();
    app.register("written", json!({})).await;
    let db = app
        .database_url
        .strip_prefix("sqlite://")
        .unwrap()
        .to_owned();
    for file in [db.clone(), format!("{db}-wal"), format!("{db}-shm")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} is {mode:o}");
    }
}
