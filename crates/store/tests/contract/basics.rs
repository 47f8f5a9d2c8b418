//! `ping`, `backend`, `durability`, and a fresh store's starting point.

use crate::harness::*;
use fleetreg_model::ClusterFilter;
use fleetreg_store::{AuditQuery, Backend, StoreOptions};

/// The backend a URL opens is the one it names, and says how it is durable.
mod backend_identity {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        run_sqlite(StoreOptions::default(), |store| async move {
            assert_eq!(store.backend(), Backend::Sqlite);
            assert_eq!(store.backend().as_str(), "sqlite");
            let durability = store.durability();
            assert!(durability.starts_with("sqlite"), "{durability}");
            assert!(durability.contains("synchronous=FULL"), "{durability}");
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        run_postgres(StoreOptions::default(), |store| async move {
            assert_eq!(store.backend(), Backend::Postgres);
            assert_eq!(store.backend().as_str(), "postgres");
            let durability = store.durability();
            assert!(durability.starts_with("postgres"), "{durability}");
            assert!(durability.contains("synchronous_commit=on"), "{durability}");
        })
        .await;
    }
}

store_test!(ping_answers, |store| async move {
    store.ping().await.expect("ping");
    assert!(!store.durability().is_empty());
});

store_test!(a_fresh_store_is_empty, |store| async move {
    assert_eq!(store.latest_revision().await.unwrap(), 0);
    assert_eq!(*store.watch_revision().borrow(), 0);
    assert_eq!(store.outbox_cursor().await.unwrap(), 0);
    let page = store.events_after(0, 10).await.unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.latest_revision, 0);
    let list = store
        .list_clusters(&ClusterFilter::default(), Default::default())
        .await
        .unwrap();
    assert_eq!((list.items.len(), list.total, list.revision), (0, 0, 0));
    let query = AuditQuery {
        limit: 10,
        ..AuditQuery::default()
    };
    assert!(store.list_audit(&query).await.unwrap().is_empty());
    assert!(store.list_audit_chain(0, 10).await.unwrap().is_empty());
    assert!(store.watch_audit_head().borrow().is_none());
    assert!(store.list_tokens().await.unwrap().is_empty());
    assert!(store.vault_canary().await.unwrap().is_none());
    assert!(store.credential_key_usage().await.unwrap().is_empty());
    assert!(store
        .list_sealed_credentials(None, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .find_cluster_by_name("nothing")
        .await
        .unwrap()
        .is_none());
});

store_test!(outbox_cursor_only_moves_forward, |store| async move {
    assert_eq!(store.outbox_cursor().await.unwrap(), 0);
    store.set_outbox_cursor(5).await.unwrap();
    assert_eq!(store.outbox_cursor().await.unwrap(), 5);
    store.set_outbox_cursor(3).await.unwrap();
    assert_eq!(
        store.outbox_cursor().await.unwrap(),
        5,
        "a lower cursor keeps the higher one"
    );
    store.set_outbox_cursor(5).await.unwrap();
    assert_eq!(store.outbox_cursor().await.unwrap(), 5);
    store.set_outbox_cursor(9).await.unwrap();
    assert_eq!(store.outbox_cursor().await.unwrap(), 9);
});

/// On SQLite the group-commit writer has a thread of its own: a write that
/// waits for another process's write lock (or, as a rule, on its `fsync`)
/// holds up no read on the caller's runtime, here a single-threaded one.
#[tokio::test]
async fn a_waiting_write_holds_up_no_read_sqlite() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("t.db");
    let store = open_sqlite(&path, test_options()).await;
    let other = rusqlite::Connection::open(&path).expect("another connection");
    other
        .execute_batch("BEGIN IMMEDIATE")
        .expect("the write lock");
    let writing = tokio::spawn({
        let store = store.clone();
        async move { store.insert_cluster(named("waits"), &operator()).await }
    });
    let started = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let list = store
        .list_clusters(&ClusterFilter::default(), Default::default())
        .await
        .expect("a read while the write waits");
    assert_eq!(list.total, 0);
    // The lock is waited for up to 10 s (the busy timeout), on the writer's
    // thread: not on this one.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "the read waited {:?}",
        started.elapsed()
    );
    assert!(
        !writing.is_finished(),
        "the write did not wait for the lock"
    );
    other.execute_batch("COMMIT").expect("the lock given back");
    let cluster = writing.await.expect("the write task").expect("the write");
    assert_eq!(cluster.name.as_str(), "waits");
    store.close().await;
}
