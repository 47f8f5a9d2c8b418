//! Opening a store per engine, and the fixtures the contract tests share.

use chrono::{DateTime, Utc};
use fleetreg_model::{
    Audit, AuditEntry, AuthType, Cluster, ClusterCreateRequest, ClusterPatch, ClusterState,
    ClusterStatus, ClusterUpdateRequest, Connectivity, CredentialWrite, Event, NewCluster,
};
use fleetreg_store::{AuditKey, AuditKeys, AuditQuery, PutCredentials, Store, StoreOptions};
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;

/// A store as the tests hold it.
pub type StoreRef = Arc<dyn Store>;

/// The id of the master key the test audit keyring names.
pub const AUDIT_KEY_ID: &str = "test-master-1";

/// A fixed audit MAC key (the server derives it from the master key).
pub fn audit_keys() -> Arc<AuditKeys> {
    Arc::new(AuditKeys::new(AuditKey::new(AUDIT_KEY_ID, [7; 32]), vec![]))
}

/// The options of most tests: defaults plus the audit keyring.
pub fn test_options() -> StoreOptions {
    StoreOptions {
        audit_keys: Some(audit_keys()),
        ..StoreOptions::default()
    }
}

/// Opens (creating) the SQLite store in file `path`.
pub async fn open_sqlite(path: &std::path::Path, options: StoreOptions) -> StoreRef {
    let url = format!("sqlite://{}", path.display());
    fleetreg_store::connect_with(&url, options)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"))
}

/// Runs `body` on a fresh SQLite store in a temporary directory.
pub async fn run_sqlite<F, Fut>(options: StoreOptions, body: F)
where
    F: FnOnce(StoreRef) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open_sqlite(&dir.path().join("t.db"), options).await;
    body(store.clone()).await;
    store.close().await;
}

/// Runs `body` on a fresh PostgreSQL store in a database of its own; returns
/// after the testkit's skip line when no server answers (unless required).
pub async fn run_postgres<F, Fut>(options: StoreOptions, body: F)
where
    F: FnOnce(StoreRef) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = fleetreg_testkit::postgres_database().await else {
        return;
    };
    let store = fleetreg_store::connect_with(&db.url, options)
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", db.name()));
    body(store.clone()).await;
    store.close().await;
    db.drop_database().await.expect("drop the test database");
}

/// An operator acting through the API, with every audit field set.
pub fn operator() -> Audit {
    actor("alice")
}

/// An actor named `name`, with role, source and request id.
pub fn actor(name: &str) -> Audit {
    Audit {
        actor: name.to_owned(),
        role: Some("operator".into()),
        source: Some("127.0.0.1".into()),
        request_id: Some(format!("req-{name}")),
    }
}

/// A validated registration from a JSON body (`api_server_url` defaulted).
pub fn registration(body: Value) -> NewCluster {
    let mut body = body;
    let name = body["name"].as_str().expect("a name").to_owned();
    if body.get("api_server_url").is_none() {
        body["api_server_url"] = Value::String(format!("https://10.0.{}.1:6443", name.len() % 250));
    }
    serde_json::from_value::<ClusterCreateRequest>(body)
        .expect("a create request")
        .validate()
        .expect("a valid create request")
}

/// A minimal registration named `name`.
pub fn named(name: &str) -> NewCluster {
    registration(serde_json::json!({ "name": name }))
}

/// A validated patch from a JSON update body.
pub fn patch(body: Value) -> ClusterPatch {
    serde_json::from_value::<ClusterUpdateRequest>(body)
        .expect("an update request")
        .validate()
        .expect("a valid update request")
}

/// Registers a minimal cluster named `name`.
pub async fn insert(store: &StoreRef, name: &str) -> Cluster {
    store
        .insert_cluster(named(name), &operator())
        .await
        .unwrap_or_else(|e| panic!("insert {name}: {e}"))
}

/// A status in `state` with `score`, checked at `checked_at`.
pub fn status(state: ClusterState, score: i32, checked_at: DateTime<Utc>) -> ClusterStatus {
    ClusterStatus {
        state,
        health_score: score,
        connectivity: if state == ClusterState::Offline {
            Connectivity::Disconnected
        } else {
            Connectivity::Connected
        },
        api_server_healthy: Some(state != ClusterState::Offline),
        checked_at: Some(checked_at),
        reason: Some(format!("test says {state}")),
        ..ClusterStatus::default()
    }
}

/// An unconditional credential write of one sealed token wrapped by `k1`,
/// bound to no origin (stored `ORIGIN_CHANGED`; `origins.rs` binds its own).
pub fn sealed_token(cluster_id: uuid::Uuid, write: CredentialWrite) -> PutCredentials {
    PutCredentials {
        cluster_id,
        write,
        auth_type: AuthType::Token,
        sealed: [("token".to_owned(), format!("v1:k1:sealed-{cluster_id}"))].into(),
        key_id: "k1".into(),
        expires_at: None,
        expected_version: None,
        origins: fleetreg_model::CredentialOrigins::default(),
    }
}

/// Every event after `after`, read in pages of 7.
pub async fn events_from(store: &StoreRef, after: i64) -> Vec<Event> {
    let mut events = Vec::new();
    let mut cursor = after;
    loop {
        let page = store.events_after(cursor, 7).await.expect("events");
        let Some(last) = page.items.last() else {
            return events;
        };
        cursor = last.revision;
        events.extend(page.items);
    }
}

/// Every audit entry, oldest first.
pub async fn audit_log(store: &StoreRef) -> Vec<AuditEntry> {
    audit_where(store, AuditQuery::default()).await
}

/// The audit entries matching `query` (limit 1000 unless set).
pub async fn audit_where(store: &StoreRef, query: AuditQuery) -> Vec<AuditEntry> {
    let query = AuditQuery {
        limit: if query.limit == 0 { 1000 } else { query.limit },
        ..query
    };
    store.list_audit(&query).await.expect("audit log")
}

/// Fails unless `result` is the `$pattern` error.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            Err(other) => panic!(
                "expected {}, got the error {other:?}",
                stringify!($pattern)
            ),
            Ok(value) => panic!(
                "expected {}, got Ok({value:?})",
                stringify!($pattern)
            ),
        }
    };
}
pub(crate) use assert_err;
