//! Registering, reading, updating and deleting clusters, and their refusals.

use crate::harness::*;
use fleetreg_model::{Capabilities, ClusterState, ClusterType, Environment, EventType, Platform};
use fleetreg_store::StoreError;
use serde_json::json;
use uuid::Uuid;

store_test!(insert_then_get_and_find_by_name, |store| async move {
    let new = registration(json!({
        "name": "prod-east-1",
        "display_name": "Production East",
        "api_server_url": "https://10.1.2.3:6443",
        "cluster_type": "EDGE",
        "platform": "KUBERNETES",
        "platform_version": "1.30.2",
        "region": "us-east-1",
        "environment": "PRODUCTION",
        "labels": { "team": "platform", "tier": "gold" },
        "endpoints": { "prometheus_url": "https://10.1.2.3:9090" },
    }));
    let before = fleetreg_model::now();
    let created = store.insert_cluster(new, &operator()).await.unwrap();
    assert_eq!(created.name.as_str(), "prod-east-1");
    assert_eq!(created.display_name.as_deref(), Some("Production East"));
    assert_eq!(created.api_server_url, "https://10.1.2.3:6443");
    assert_eq!(created.cluster_type, ClusterType::Edge);
    assert_eq!(created.platform, Platform::Kubernetes);
    assert_eq!(created.platform_version.as_deref(), Some("1.30.2"));
    assert_eq!(created.region.as_deref(), Some("us-east-1"));
    assert_eq!(created.environment, Environment::Production);
    assert_eq!(created.labels.len(), 2);
    assert_eq!(created.labels["tier"], "gold");
    assert_eq!(
        created.endpoints.prometheus_url.as_deref(),
        Some("https://10.1.2.3:9090")
    );
    assert_eq!(created.status.state, ClusterState::Unknown);
    assert!(created.capabilities.is_none());
    assert!(created.last_seen_at.is_none());
    assert_eq!(created.id.get_version_num(), 7, "ids are UUIDv7");
    assert_eq!(created.revision, 1);
    assert_eq!(created.created_at, created.updated_at);
    assert!(created.created_at >= before);

    let read = store.get_cluster(created.id).await.unwrap();
    assert_eq!(read, created, "what is read is what insert returned");
    let found = store.find_cluster_by_name("prod-east-1").await.unwrap();
    assert_eq!(found, Some(created.clone()));
    assert_eq!(store.find_cluster_by_name("prod-east").await.unwrap(), None);
    assert_err!(
        store.get_cluster(Uuid::now_v7()).await,
        StoreError::NotFound(_)
    );
});

store_test!(a_taken_name_is_already_exists, |store| async move {
    let first = insert(&store, "dup").await;
    let revision = store.latest_revision().await.unwrap();
    let again = registration(json!({ "name": "dup", "region": "elsewhere" }));
    assert_err!(
        store.insert_cluster(again, &operator()).await,
        StoreError::AlreadyExists(name) if name == "dup"
    );
    assert_eq!(
        store.latest_revision().await.unwrap(),
        revision,
        "a refused insert takes no revision"
    );
    assert_eq!(store.get_cluster(first.id).await.unwrap(), first);
    let list = store
        .list_clusters(&Default::default(), Default::default())
        .await
        .unwrap();
    assert_eq!(list.total, 1);
});

store_test!(
    concurrent_registrations_take_each_name_once,
    |store| async move {
        insert(&store, "taken").await;
        // Sent at once, so the writer decides most of them in one batch:
        // names repeated within it, and one already stored.
        let names = [
            "fresh-a", "fresh-b", "taken", "fresh-a", "fresh-c", "fresh-b",
        ];
        let mut writes = tokio::task::JoinSet::new();
        for name in names.into_iter().cycle().take(18) {
            let store = store.clone();
            writes.spawn(async move { store.insert_cluster(named(name), &operator()).await });
        }
        let (mut created, mut refused) = (Vec::new(), Vec::new());
        while let Some(done) = writes.join_next().await {
            match done.unwrap() {
                Ok(cluster) => created.push(cluster.name.to_string()),
                Err(StoreError::AlreadyExists(name)) => refused.push(name),
                Err(other) => panic!("a registration failed: {other}"),
            }
        }
        created.sort();
        assert_eq!(created, ["fresh-a", "fresh-b", "fresh-c"]);
        assert_eq!(refused.len(), 15);
        assert_eq!(store.latest_revision().await.unwrap(), 4, "one event each");
        let all = store
            .list_clusters(&Default::default(), Default::default())
            .await
            .unwrap();
        assert_eq!(all.total, 4);
    }
);

store_test!(
    update_applies_the_patch_and_takes_a_revision,
    |store| async move {
        let created = store
            .insert_cluster(
                registration(json!({
                    "name": "edit-me",
                    "region": "r1",
                    "display_name": "Old",
                    "labels": { "a": "1" },
                })),
                &operator(),
            )
            .await
            .unwrap();
        insert(&store, "other").await;
        let updated = store
            .update_cluster(
                created.id,
                None,
                patch(json!({
                    "region": null,
                    "display_name": "New",
                    "environment": "STAGING",
                    "labels": { "b": "2" },
                    "name": "edit-me",
                })),
                &operator(),
            )
            .await
            .unwrap();
        assert_eq!(updated.region, None, "null clears");
        assert_eq!(updated.display_name.as_deref(), Some("New"));
        assert_eq!(updated.environment, Environment::Staging);
        assert_eq!(updated.labels.len(), 1, "labels are replaced whole");
        assert_eq!(updated.labels["b"], "2");
        assert_eq!(updated.revision, 3);
        assert_eq!(store.latest_revision().await.unwrap(), 3);
        assert_eq!(updated.created_at, created.created_at);
        assert!(updated.updated_at >= created.updated_at);
        assert_eq!(store.get_cluster(created.id).await.unwrap(), updated);

        // Guarded by the current revision, it applies.
        let guarded = store
            .update_cluster(
                created.id,
                Some(3),
                patch(json!({ "platform": "MICROSHIFT" })),
                &operator(),
            )
            .await
            .unwrap();
        assert_eq!(guarded.platform, Platform::Microshift);
        assert_eq!(guarded.revision, 4);
    }
);

store_test!(
    an_update_without_change_keeps_the_revision,
    |store| async move {
        let created = store
            .insert_cluster(
                registration(json!({ "name": "same", "region": "r1" })),
                &operator(),
            )
            .await
            .unwrap();
        let unchanged = store
            .update_cluster(
                created.id,
                Some(created.revision),
                patch(json!({ "region": "r1", "name": "same" })),
                &operator(),
            )
            .await
            .unwrap();
        assert_eq!(unchanged.revision, created.revision);
        assert_eq!(unchanged.updated_at, created.updated_at);
        assert_eq!(store.latest_revision().await.unwrap(), created.revision);
        let events = events_from(&store, 0).await;
        assert_eq!(events.len(), 1, "no event for a no-op: {events:?}");
        assert_eq!(store.get_cluster(created.id).await.unwrap(), created);
    }
);

store_test!(
    a_stale_revision_is_precondition_failed,
    |store| async move {
        let created = insert(&store, "guarded").await;
        let moved = store
            .update_cluster(
                created.id,
                None,
                patch(json!({ "region": "r2" })),
                &operator(),
            )
            .await
            .unwrap();
        assert_err!(
            store
                .update_cluster(
                    created.id,
                    Some(created.revision),
                    patch(json!({ "region": "r3" })),
                    &operator(),
                )
                .await,
            StoreError::PreconditionFailed { expected, actual, id }
                if expected == created.revision && actual == moved.revision && id == created.id
        );
        assert_err!(
            store
                .delete_cluster(created.id, Some(created.revision), &operator())
                .await,
            StoreError::PreconditionFailed { expected, actual, id }
                if expected == created.revision && actual == moved.revision && id == created.id
        );
        assert_eq!(
            store.get_cluster(created.id).await.unwrap(),
            moved,
            "refused writes change nothing"
        );
        assert_eq!(store.latest_revision().await.unwrap(), moved.revision);
    }
);

store_test!(
    updates_of_unknown_or_renamed_clusters_are_refused,
    |store| async move {
        let created = insert(&store, "fixed-name").await;
        assert_err!(
            store
                .update_cluster(
                    Uuid::now_v7(),
                    None,
                    patch(json!({ "region": "r" })),
                    &operator()
                )
                .await,
            StoreError::NotFound(_)
        );
        assert_err!(
            store
                .update_cluster(
                    created.id,
                    None,
                    patch(json!({ "name": "new-name", "region": "r" })),
                    &operator(),
                )
                .await,
            StoreError::Invalid(e) if e.field() == "name"
        );
        assert_eq!(store.get_cluster(created.id).await.unwrap(), created);
        assert!(store
            .find_cluster_by_name("new-name")
            .await
            .unwrap()
            .is_none());
    }
);

store_test!(delete_then_get_is_not_found, |store| async move {
    let doomed = insert(&store, "doomed").await;
    let kept = insert(&store, "kept").await;
    store
        .delete_cluster(doomed.id, Some(doomed.revision), &operator())
        .await
        .unwrap();
    assert_err!(store.get_cluster(doomed.id).await, StoreError::NotFound(_));
    assert!(store
        .find_cluster_by_name("doomed")
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.get_cluster(kept.id).await.unwrap(), kept);
    assert_eq!(store.latest_revision().await.unwrap(), 3);
    assert_err!(
        store.delete_cluster(doomed.id, None, &operator()).await,
        StoreError::NotFound(_)
    );
    assert_err!(
        store
            .update_cluster(
                doomed.id,
                None,
                patch(json!({ "region": "r" })),
                &operator()
            )
            .await,
        StoreError::NotFound(_)
    );
    assert_err!(
        store.list_health_history(doomed.id, None, 10).await,
        StoreError::NotFound(_)
    );
    // The name is free again, for a new cluster with a new id.
    let again = insert(&store, "doomed").await;
    assert_ne!(again.id, doomed.id);
    assert_eq!(again.revision, 4);
    let list = store
        .list_clusters(&Default::default(), Default::default())
        .await
        .unwrap();
    assert_eq!(list.total, 2);
});

store_test!(
    observations_of_unknown_clusters_are_not_found,
    |store| async move {
        let now = fleetreg_model::now();
        assert_err!(
            store
                .record_status(
                    Uuid::now_v7(),
                    status(ClusterState::Online, 100, now),
                    Some(now)
                )
                .await,
            StoreError::NotFound(_)
        );
        assert_err!(
            store
                .set_capabilities(Uuid::now_v7(), Capabilities::default(), None)
                .await,
            StoreError::NotFound(_)
        );
        assert_eq!(store.latest_revision().await.unwrap(), 0);
    }
);

store_test!(the_event_payload_is_the_cluster, |store| async move {
    let created = insert(&store, "payload").await;
    let updated = store
        .update_cluster(
            created.id,
            None,
            patch(json!({ "region": "r9" })),
            &operator(),
        )
        .await
        .unwrap();
    store
        .delete_cluster(created.id, None, &operator())
        .await
        .unwrap();
    let events = events_from(&store, 0).await;
    let types: Vec<EventType> = events.iter().map(|e| e.event_type).collect();
    assert_eq!(
        types,
        [
            EventType::ClusterRegistered,
            EventType::ClusterUpdated,
            EventType::ClusterDeleted
        ]
    );
    for event in &events {
        assert_eq!(event.resource, "cluster");
        assert_eq!(event.resource_id, created.id);
    }
    let registered: fleetreg_model::Cluster =
        serde_json::from_value(events[0].payload.clone()).unwrap();
    assert_eq!(registered, created);
    let changed: fleetreg_model::Cluster =
        serde_json::from_value(events[1].payload.clone()).unwrap();
    assert_eq!(changed, updated);
    assert_eq!(
        events[2].payload,
        json!({ "cluster_id": created.id.to_string() })
    );
});
