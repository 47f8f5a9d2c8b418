//! Revisions and the change log: global, dense, strictly increasing, visible
//! in order; event types and payloads; paging; retention; observations that
//! are not mutations.

use crate::harness::*;
use chrono::Duration;
use fleetreg_model::{Capabilities, ClusterState, EventType, ObservabilityCapabilities};
use fleetreg_store::{AuditOnly, StoreError};
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration as StdDuration;

fn gpu_capabilities(gpus: i64, discovered_at: chrono::DateTime<chrono::Utc>) -> Capabilities {
    Capabilities {
        has_gpu_nodes: gpus > 0,
        gpu_count: gpus,
        gpu_types: vec!["NVIDIA-A100".into()],
        has_cnf: false,
        cnf_types: vec![],
        has_sriov: true,
        has_ptp: false,
        observability: ObservabilityCapabilities {
            prometheus: true,
            ..Default::default()
        },
        discovered_at: Some(discovered_at),
    }
}

store_test!(
    revisions_are_global_dense_and_increasing,
    |store| async move {
        let now = fleetreg_model::now();
        let mut revisions = Vec::new();
        let a = insert(&store, "rev-a").await;
        revisions.push(a.revision);
        let b = insert(&store, "rev-b").await;
        revisions.push(b.revision);
        let a2 = store
            .update_cluster(a.id, None, patch(json!({ "region": "r1" })), &operator())
            .await
            .unwrap();
        revisions.push(a2.revision);
        let changed = store
            .record_status(b.id, status(ClusterState::Online, 100, now), Some(now))
            .await
            .unwrap()
            .expect("a state transition is an event");
        revisions.push(changed.revision);
        let discovered = store
            .set_capabilities(a.id, gpu_capabilities(2, now), None)
            .await
            .unwrap()
            .expect("first capabilities are an event");
        revisions.push(discovered.revision);
        store
            .put_credentials(
                sealed_token(b.id, fleetreg_model::CredentialWrite::Store),
                &operator(),
            )
            .await
            .unwrap();
        revisions.push(store.latest_revision().await.unwrap());
        store.delete_credentials(b.id, &operator()).await.unwrap();
        revisions.push(store.latest_revision().await.unwrap());
        store.delete_cluster(a.id, None, &operator()).await.unwrap();
        revisions.push(store.latest_revision().await.unwrap());
        // Writes that are not mutations of the change log take no revision.
        store
            .append_audit(
                AuditOnly {
                    action: "credentials.validate",
                    resource_id: Some(b.id),
                    result: fleetreg_model::AuditResult::Success,
                    error_code: None,
                },
                &operator(),
            )
            .await
            .unwrap();

        let expected: Vec<i64> = (1..=8).collect();
        assert_eq!(revisions, expected, "one revision per mutation, in order");
        assert_eq!(store.latest_revision().await.unwrap(), 8);
        assert_eq!(*store.watch_revision().borrow(), 8);
        let events = events_from(&store, 0).await;
        let seen: Vec<i64> = events.iter().map(|e| e.revision).collect();
        assert_eq!(seen, expected);
        let types: Vec<EventType> = events.iter().map(|e| e.event_type).collect();
        assert_eq!(
            types,
            [
                EventType::ClusterRegistered,
                EventType::ClusterRegistered,
                EventType::ClusterUpdated,
                EventType::ClusterStatusChanged,
                EventType::ClusterCapabilitiesChanged,
                EventType::ClusterCredentialsUpdated,
                EventType::ClusterCredentialsUpdated,
                EventType::ClusterDeleted,
            ]
        );
        assert_eq!(events[3], changed, "record_status returns the stored event");
        assert_eq!(
            events[4], discovered,
            "set_capabilities returns the stored event"
        );
        assert_eq!(events[5].payload, json!({ "cluster_id": b.id.to_string() }));
        for pair in events.windows(2) {
            assert!(pair[0].occurred_at <= pair[1].occurred_at);
        }
    }
);

store_test!(events_after_pages_through_the_log, |store| async move {
    for i in 0..10 {
        insert(&store, &format!("page-{i:02}")).await;
    }
    let first = store.events_after(0, 3).await.unwrap();
    let revs = |page: &fleetreg_store::EventPage| -> Vec<i64> {
        page.items.iter().map(|e| e.revision).collect()
    };
    assert_eq!(revs(&first), [1, 2, 3]);
    assert_eq!(first.latest_revision, 10);
    let second = store.events_after(3, 3).await.unwrap();
    assert_eq!(revs(&second), [4, 5, 6]);
    assert_eq!(second.latest_revision, 10);
    let last = store.events_after(9, 3).await.unwrap();
    assert_eq!(revs(&last), [10]);
    let done = store.events_after(10, 3).await.unwrap();
    assert!(done.items.is_empty());
    assert_eq!(done.latest_revision, 10);
    let all = store.events_after(0, 100).await.unwrap();
    assert_eq!(all.items.len(), 10);
    let names: Vec<&str> = all
        .items
        .iter()
        .map(|e| e.payload["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "page-00");
    assert_eq!(names[9], "page-09");
});

store_test!(
    status_changes_are_events_only_on_transitions,
    |store| async move {
        let cluster = insert(&store, "flappy").await;
        let audit_before = audit_log(&store).await.len();
        let t0 = fleetreg_model::now();

        let online = store
            .record_status(cluster.id, status(ClusterState::Online, 100, t0), Some(t0))
            .await
            .unwrap()
            .expect("UNKNOWN -> ONLINE is a transition");
        assert_eq!(online.event_type, EventType::ClusterStatusChanged);
        assert_eq!(online.resource_id, cluster.id);
        assert_eq!(
            online.payload,
            json!({ "cluster_id": cluster.id.to_string(), "old_state": "UNKNOWN", "new_state": "ONLINE" })
        );
        assert_eq!(online.revision, 2);
        assert_eq!(store.latest_revision().await.unwrap(), 2);

        let t1 = t0 + Duration::seconds(30);
        let same = store
            .record_status(cluster.id, status(ClusterState::Online, 95, t1), Some(t1))
            .await
            .unwrap();
        assert!(same.is_none(), "same state: no event ({same:?})");
        assert_eq!(store.latest_revision().await.unwrap(), 2);
        let read = store.get_cluster(cluster.id).await.unwrap();
        assert_eq!(
            read.status,
            status(ClusterState::Online, 95, t1),
            "status stored"
        );
        assert_eq!(read.last_seen_at, Some(t1));

        let t2 = t0 + Duration::seconds(60);
        let offline = store
            .record_status(cluster.id, status(ClusterState::Offline, 0, t2), None)
            .await
            .unwrap()
            .expect("ONLINE -> OFFLINE is a transition");
        assert_eq!(offline.payload["old_state"], "ONLINE");
        assert_eq!(offline.payload["new_state"], "OFFLINE");
        assert_eq!(offline.revision, 3);

        let read = store.get_cluster(cluster.id).await.unwrap();
        assert_eq!(read.status.state, ClusterState::Offline);
        assert_eq!(
            read.last_seen_at,
            Some(t1),
            "an observation without last_seen_at keeps the previous one"
        );
        assert_eq!(
            read.revision, cluster.revision,
            "observations keep the cluster's revision"
        );
        assert_eq!(read.updated_at, cluster.updated_at);
        assert_eq!(
            audit_log(&store).await.len(),
            audit_before,
            "observations are not audited"
        );
        let types: Vec<EventType> = events_from(&store, 0)
            .await
            .iter()
            .map(|e| e.event_type)
            .collect();
        assert_eq!(
            types,
            [
                EventType::ClusterRegistered,
                EventType::ClusterStatusChanged,
                EventType::ClusterStatusChanged
            ]
        );
    }
);

store_test!(
    capability_changes_are_events_only_when_they_differ,
    |store| async move {
        let cluster = insert(&store, "discovered").await;
        let audit_before = audit_log(&store).await.len();
        let t0 = fleetreg_model::now();

        let first = store
            .set_capabilities(cluster.id, gpu_capabilities(4, t0), Some("4.16.3".into()))
            .await
            .unwrap()
            .expect("first capabilities are a change");
        assert_eq!(first.event_type, EventType::ClusterCapabilitiesChanged);
        assert_eq!(first.payload["cluster_id"], cluster.id.to_string());
        let payload: Capabilities =
            serde_json::from_value(first.payload["capabilities"].clone()).unwrap();
        assert_eq!(payload, gpu_capabilities(4, t0));
        let read = store.get_cluster(cluster.id).await.unwrap();
        assert_eq!(read.capabilities, Some(gpu_capabilities(4, t0)));
        assert_eq!(read.platform_version.as_deref(), Some("4.16.3"));

        let t1 = t0 + Duration::minutes(10);
        let rediscovered = store
            .set_capabilities(cluster.id, gpu_capabilities(4, t1), None)
            .await
            .unwrap();
        assert!(
            rediscovered.is_none(),
            "only discovered_at differs: no event ({rediscovered:?})"
        );
        let read = store.get_cluster(cluster.id).await.unwrap();
        assert_eq!(
            read.capabilities.and_then(|c| c.discovered_at),
            Some(t1),
            "the new discovery time is kept"
        );
        assert_eq!(
            read.platform_version.as_deref(),
            Some("4.16.3"),
            "no platform version keeps the old one"
        );

        let more = store
            .set_capabilities(cluster.id, gpu_capabilities(8, t1), None)
            .await
            .unwrap()
            .expect("a changed GPU count is a change");
        assert_eq!(more.revision, first.revision + 1);
        assert_eq!(store.latest_revision().await.unwrap(), more.revision);
        let read = store.get_cluster(cluster.id).await.unwrap();
        assert_eq!(
            read.revision, cluster.revision,
            "capabilities keep the cluster's revision"
        );
        assert_eq!(read.capabilities.map(|c| c.gpu_count), Some(8));
        assert_eq!(
            audit_log(&store).await.len(),
            audit_before,
            "discovery is not audited"
        );
    }
);

store_test!(pruned_events_expire_old_cursors, |store| async move {
    for i in 0..6 {
        insert(&store, &format!("old-{i}")).await;
    }
    let past = fleetreg_model::now() - Duration::hours(1);
    assert_eq!(
        store.prune_events(past, 6).await.unwrap(),
        0,
        "nothing occurred before an hour ago"
    );
    assert_eq!(store.events_after(0, 100).await.unwrap().items.len(), 6);

    let future = fleetreg_model::now() + Duration::seconds(5);
    assert_eq!(
        store.prune_events(future, 3).await.unwrap(),
        3,
        "never above keep_from"
    );
    assert_err!(
        store.events_after(0, 10).await,
        StoreError::EventsExpired {
            after: 0,
            oldest_revision: 4,
            latest_revision: 6
        }
    );
    assert_err!(
        store.events_after(2, 10).await,
        StoreError::EventsExpired {
            after: 2,
            oldest_revision: 4,
            latest_revision: 6
        }
    );
    let page = store.events_after(3, 10).await.unwrap();
    let revs: Vec<i64> = page.items.iter().map(|e| e.revision).collect();
    assert_eq!(
        revs,
        [4, 5, 6],
        "a cursor at the pruned edge still reads on"
    );
    assert_eq!(page.latest_revision, 6);
    assert_eq!(
        store.latest_revision().await.unwrap(),
        6,
        "pruning keeps revisions"
    );

    // New writes continue the sequence after pruning.
    let next = insert(&store, "new").await;
    assert_eq!(next.revision, 7);
    assert_eq!(store.prune_events(future, 1).await.unwrap(), 0);
});

store_test!(
    concurrent_writers_get_dense_ordered_revisions,
    |store| async move {
        const TASKS: usize = 8;
        const PER_TASK: usize = 25;
        const TOTAL: i64 = (TASKS * PER_TASK) as i64;
        // A reader follows the log while the writers write: a revision it has
        // passed must never be filled in later (revisions become visible in order).
        let reader = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut cursor = 0;
                let deadline = tokio::time::Instant::now() + StdDuration::from_secs(120);
                while cursor < TOTAL {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "reader stuck at {cursor}"
                    );
                    let page = store.events_after(cursor, 50).await.unwrap();
                    for event in &page.items {
                        assert_eq!(
                            event.revision,
                            cursor + 1,
                            "revision {} became visible before {}",
                            event.revision,
                            cursor + 1
                        );
                        cursor = event.revision;
                    }
                    assert!(page.latest_revision >= cursor);
                    tokio::task::yield_now().await;
                }
                cursor
            })
        };
        let mut writers = tokio::task::JoinSet::new();
        for task in 0..TASKS {
            let store = store.clone();
            writers.spawn(async move {
                let mut mine = Vec::new();
                for i in 0..PER_TASK {
                    let cluster = insert(&store, &format!("w{task}-{i:02}")).await;
                    mine.push((cluster.revision, cluster.id));
                }
                mine
            });
        }
        let mut written = Vec::new();
        while let Some(done) = writers.join_next().await {
            let mine = done.unwrap();
            for pair in mine.windows(2) {
                assert!(pair[0].0 < pair[1].0, "one writer's revisions increase");
            }
            written.extend(mine);
        }
        assert_eq!(reader.await.unwrap(), TOTAL);
        written.sort();
        let revisions: Vec<i64> = written.iter().map(|(r, _)| *r).collect();
        assert_eq!(
            revisions,
            (1..=TOTAL).collect::<Vec<_>>(),
            "dense, no duplicates"
        );
        assert_eq!(store.latest_revision().await.unwrap(), TOTAL);
        assert_eq!(*store.watch_revision().borrow(), TOTAL);

        let events = events_from(&store, 0).await;
        assert_eq!(events.len(), TOTAL as usize);
        for (event, (revision, id)) in events.iter().zip(&written) {
            assert_eq!(event.revision, *revision);
            assert_eq!(event.resource_id, *id, "event {revision} is its insert's");
            assert_eq!(event.event_type, EventType::ClusterRegistered);
        }
        let ids: HashSet<_> = written.iter().map(|(_, id)| id).collect();
        assert_eq!(ids.len(), TOTAL as usize);
        let list = store
            .list_clusters(&Default::default(), Default::default())
            .await
            .unwrap();
        assert_eq!(list.total, TOTAL as u64);
        assert_eq!(list.revision, TOTAL);
    }
);

store_test!(watch_revision_follows_commits, |store| async move {
    let mut watch = store.watch_revision();
    assert_eq!(*watch.borrow_and_update(), 0);
    let cluster = insert(&store, "watched").await;
    tokio::time::timeout(StdDuration::from_secs(5), watch.changed())
        .await
        .expect("the watch moves on commit")
        .unwrap();
    assert_eq!(*watch.borrow_and_update(), cluster.revision);
    let now = fleetreg_model::now();
    let event = store
        .record_status(
            cluster.id,
            status(ClusterState::Degraded, 60, now),
            Some(now),
        )
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(StdDuration::from_secs(5), watch.changed())
        .await
        .expect("a status event moves the watch")
        .unwrap();
    assert_eq!(*watch.borrow_and_update(), event.revision);
});
