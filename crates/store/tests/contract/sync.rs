//! Hosts, deployments, sync jobs, leader leases and safe deregistration
//! (`SyncStore`), on both engines.

use crate::harness::*;
use chrono::Duration;
use fleetreg_model::{
    ClientCreateRequest, ClientName, Clock, ConflictReport, ErrorCode, EventType, Host,
    HostCreateRequest, LeaderClaim, SyncJobReport, SyncKind, SyncStatus,
};
use fleetreg_store::{StoreError, StoreOptions, SYNC_FAILING_AFTER};
use serde_json::json;
use uuid::Uuid;

async fn host(store: &StoreRef, cluster_id: Uuid, name: &str) -> Host {
    let request = HostCreateRequest {
        hostname: name.into(),
        address: None,
    };
    store
        .register_host(cluster_id, request, &operator())
        .await
        .unwrap()
}

async fn client(store: &StoreRef, name: &str) -> ClientName {
    let request: ClientCreateRequest = serde_json::from_value(json!({ "name": name })).unwrap();
    store
        .create_client(request.validate().unwrap(), &operator())
        .await
        .unwrap();
    ClientName::parse(name).unwrap()
}

/// A cluster with one host running `acme` (sync on) and `beta` (sync off).
async fn fleet(store: &StoreRef) -> (Uuid, Host, Uuid, Uuid) {
    let cluster = insert(store, "prod-host-1").await;
    let h = host(store, cluster.id, "node-a").await;
    let acme = client(store, "acme").await;
    let beta = client(store, "beta").await;
    let syncing = store
        .create_deployment(h.id, acme, "openwebui-acme".into(), true, &operator())
        .await
        .unwrap();
    let idle = store
        .create_deployment(h.id, beta, "openwebui-beta".into(), false, &operator())
        .await
        .unwrap();
    (cluster.id, h, syncing.id, idle.id)
}

store_test!(hosts_and_deployments_are_checked, |store| async move {
    let (cluster_id, h, syncing, _) = fleet(&store).await;
    let again = store
        .register_host(
            cluster_id,
            HostCreateRequest {
                hostname: "node-a".into(),
                address: None,
            },
            &operator(),
        )
        .await
        .unwrap_err();
    assert_eq!(again.code(), ErrorCode::HostAlreadyExists);
    let ghost = ClientName::parse("ghost").unwrap();
    let missing = store
        .create_deployment(h.id, ghost, "c".into(), false, &operator())
        .await
        .unwrap_err();
    assert_eq!(missing.code(), ErrorCode::ClientNotFound);
    let acme = ClientName::parse("acme").unwrap();
    let clash = store
        .create_deployment(h.id, acme, "openwebui-acme".into(), false, &operator())
        .await
        .unwrap_err();
    assert_eq!(clash.code(), ErrorCode::DeploymentAlreadyExists);
    let nowhere = store
        .create_deployment(
            Uuid::now_v7(),
            ClientName::parse("acme").unwrap(),
            "x".into(),
            false,
            &operator(),
        )
        .await
        .unwrap_err();
    assert_eq!(nowhere.code(), ErrorCode::HostNotFound);
    let deployment = store.get_deployment(syncing).await.unwrap();
    assert_eq!(
        (deployment.client.as_str(), deployment.cluster_id),
        ("acme", cluster_id)
    );
    assert_eq!(deployment.last_sync_status, SyncStatus::Pending);
    assert_eq!(store.list_hosts(cluster_id).await.unwrap().len(), 1);
    // A client that runs somewhere is not deleted with its deployments.
    let placed = store
        .delete_client(&ClientName::parse("acme").unwrap(), None, &operator())
        .await
        .unwrap_err();
    assert_eq!(placed.code(), ErrorCode::ClientHasDeployments);
    assert!(store.get_deployment(syncing).await.is_ok());
});

store_test!(
    sync_jobs_failing_in_a_row_raise_one_event,
    |store| async move {
        let (_, _, syncing, idle) = fleet(&store).await;
        let paused = store
            .start_sync(idle, SyncKind::Full, &operator())
            .await
            .unwrap_err();
        assert_eq!(paused.code(), ErrorCode::ValidationError);
        let failed = SyncJobReport {
            status: SyncStatus::Failed,
            rows: None,
            error: Some("connection reset".into()),
        };
        for _ in 0..SYNC_FAILING_AFTER + 1 {
            let job = store
                .start_sync(syncing, SyncKind::Incremental, &operator())
                .await
                .unwrap();
            assert_eq!(
                store
                    .get_deployment(syncing)
                    .await
                    .unwrap()
                    .last_sync_status,
                SyncStatus::Running
            );
            let done = store
                .finish_sync(job.id, failed.clone(), &operator())
                .await
                .unwrap();
            assert_eq!(done.status, SyncStatus::Failed);
            let twice = store
                .finish_sync(job.id, failed.clone(), &operator())
                .await
                .unwrap_err();
            assert_eq!(twice.code(), ErrorCode::ValidationError);
        }
        let failing = events_from(&store, 0)
            .await
            .iter()
            .filter(|e| e.event_type == EventType::SyncFailing)
            .count();
        assert_eq!(failing, 1, "one event per episode");
        let deployment = store.get_deployment(syncing).await.unwrap();
        assert_eq!(deployment.consecutive_failures, SYNC_FAILING_AFTER + 1);
        assert_eq!(store.count_failing_deployments().await.unwrap(), 1);
        let job = store
            .start_sync(syncing, SyncKind::Full, &operator())
            .await
            .unwrap();
        let ok = SyncJobReport {
            status: SyncStatus::Success,
            rows: Some(42),
            error: None,
        };
        store.finish_sync(job.id, ok, &operator()).await.unwrap();
        let deployment = store.get_deployment(syncing).await.unwrap();
        assert_eq!(
            (deployment.consecutive_failures, deployment.last_sync_status),
            (0, SyncStatus::Success)
        );
        assert_eq!(store.count_failing_deployments().await.unwrap(), 0);
        let conflict = ConflictReport {
            table_name: "chat".into(),
            row_key: "42".into(),
            resolution: "remote_wins".into(),
        };
        store
            .record_conflict(syncing, conflict, &operator())
            .await
            .unwrap();
        assert_eq!(store.list_conflicts(syncing, 10).await.unwrap().len(), 1);
        let missing = store
            .finish_sync(
                Uuid::now_v7(),
                SyncJobReport {
                    status: SyncStatus::Success,
                    rows: None,
                    error: None,
                },
                &operator(),
            )
            .await
            .unwrap_err();
        assert_eq!(missing.code(), ErrorCode::SyncJobNotFound);
    }
);

store_test!(
    deregistration_is_blocked_previewed_and_confirmed,
    |store| async move {
        let (cluster_id, h, syncing, idle) = fleet(&store).await;
        let job = store
            .start_sync(syncing, SyncKind::Full, &operator())
            .await
            .unwrap();
        store
            .finish_sync(
                job.id,
                SyncJobReport {
                    status: SyncStatus::Success,
                    rows: Some(1),
                    error: None,
                },
                &operator(),
            )
            .await
            .unwrap();
        store
            .claim_leader(
                cluster_id,
                LeaderClaim {
                    host_id: h.id,
                    lease_seconds: 30,
                },
                &operator(),
            )
            .await
            .unwrap();

        let blocked = store
            .deregister_cluster(cluster_id, None, true, false, &operator())
            .await
            .unwrap_err();
        match &blocked {
            StoreError::HasSyncClients(clients) => {
                assert_eq!(clients.len(), 1);
                assert_eq!(
                    (
                        clients[0].client.as_str(),
                        clients[0].container_name.as_str()
                    ),
                    ("acme", "openwebui-acme")
                );
                assert_eq!(clients[0].last_sync_status, SyncStatus::Success);
            }
            other => panic!("{other:?}"),
        }
        // The plain delete of the cluster API is refused the same way.
        assert_eq!(
            store
                .delete_cluster(cluster_id, None, &operator())
                .await
                .unwrap_err()
                .code(),
            ErrorCode::ClusterHasSyncClients
        );

        store.set_sync(syncing, false, &operator()).await.unwrap();
        assert_eq!(
            store
                .get_deployment(syncing)
                .await
                .unwrap()
                .last_sync_status,
            SyncStatus::Stopped
        );
        let preview = store
            .deregister_cluster(cluster_id, None, false, true, &operator())
            .await
            .unwrap();
        assert!(preview.dry_run);
        assert_eq!(preview.hosts.len(), 1);
        let mut deployments: Vec<Uuid> = preview.deployments.iter().map(|d| d.id).collect();
        deployments.sort();
        let mut expected = vec![syncing, idle];
        expected.sort();
        assert_eq!(deployments, expected);
        assert_eq!(
            (preview.sync_jobs, preview.conflicts, preview.leader_records),
            (1, 0, 1)
        );
        let unconfirmed = store
            .deregister_cluster(cluster_id, None, false, false, &operator())
            .await
            .unwrap_err();
        assert_eq!(unconfirmed.code(), ErrorCode::ConfirmationRequired);
        assert!(
            store.get_cluster(cluster_id).await.is_ok(),
            "nothing removed yet"
        );

        let removed = store
            .deregister_cluster(cluster_id, None, true, false, &operator())
            .await
            .unwrap();
        assert_eq!(removed.hosts, preview.hosts);
        assert_eq!(removed.deployments.len(), preview.deployments.len());
        assert_eq!(
            store.get_cluster(cluster_id).await.unwrap_err().code(),
            ErrorCode::ClusterNotFound
        );
        assert_eq!(
            store.get_deployment(syncing).await.unwrap_err().code(),
            ErrorCode::DeploymentNotFound
        );
        assert!(
            store.get_client("acme").await.is_ok(),
            "clients stay registered"
        );
    }
);

store_test!(
    moving_the_sync_client_away_unblocks_deregistration,
    |store| async move {
        let (cluster_id, _, syncing, idle) = fleet(&store).await;
        let other = insert(&store, "prod-host-2").await;
        let target = host(&store, other.id, "node-b").await;
        let moved = store
            .move_deployment(syncing, target.id, &operator())
            .await
            .unwrap();
        assert_eq!(
            (moved.host_id, moved.cluster_id, moved.sync_enabled),
            (target.id, other.id, true)
        );
        store.delete_deployment(idle, &operator()).await.unwrap();
        let preview = store
            .deregister_cluster(cluster_id, None, false, true, &operator())
            .await
            .unwrap();
        assert!(preview.deployments.is_empty());
        store
            .deregister_cluster(cluster_id, None, true, false, &operator())
            .await
            .unwrap();
        assert!(store.get_deployment(syncing).await.is_ok());
    }
);

store_test!(
    enabling_sync_races_deregistration_safely,
    |store| async move {
        let mut outcomes = std::collections::BTreeSet::new();
        for round in 0..8 {
            let cluster = insert(&store, &format!("race-{round}")).await;
            let h = host(&store, cluster.id, "node").await;
            let name = client(&store, &format!("c{round}")).await;
            let deployment = store
                .create_deployment(h.id, name, "app".into(), false, &operator())
                .await
                .unwrap();
            // Both reach the writer's queue together; the order alternates,
            // so both outcomes are seen, and in neither do both succeed.
            let who = operator();
            let enable = store.set_sync(deployment.id, true, &who);
            let delete = store.deregister_cluster(cluster.id, None, true, false, &who);
            let (enable, delete) = if round % 2 == 0 {
                tokio::join!(enable, delete)
            } else {
                let (delete, enable) = tokio::join!(delete, enable);
                (enable, delete)
            };
            match (enable, delete) {
                (Ok(_), Err(StoreError::HasSyncClients(_))) => {
                    assert!(store.get_cluster(cluster.id).await.is_ok());
                    outcomes.insert("enabled first");
                }
                (Err(e), Ok(_)) => {
                    outcomes.insert("deregistered first");
                    assert_eq!(e.code(), ErrorCode::DeploymentNotFound);
                    assert!(store.get_deployment(deployment.id).await.is_err());
                }
                other => panic!("round {round}: both or neither succeeded: {other:?}"),
            }
        }
        assert_eq!(
            outcomes.len(),
            2,
            "both orders were exercised: {outcomes:?}"
        );
    }
);

store_test!(the_leader_lease_is_never_held_twice, |store| async move {
    let cluster = insert(&store, "leased").await;
    let mut hosts = Vec::new();
    for i in 0..6 {
        hosts.push(host(&store, cluster.id, &format!("node-{i}")).await);
    }
    let claims: Vec<_> = hosts
        .iter()
        .map(|h| {
            let store = store.clone();
            let claim = LeaderClaim {
                host_id: h.id,
                lease_seconds: 60,
            };
            tokio::spawn(async move { store.claim_leader(cluster.id, claim, &operator()).await })
        })
        .collect();
    let mut results = Vec::new();
    for claim in claims {
        results.push(claim.await.unwrap());
    }
    let granted: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(granted.len(), 1, "{results:?}");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        match refused {
            StoreError::LeaderHeld(held) => assert_eq!(held.host_id, granted[0].host_id),
            other => panic!("{other:?}"),
        }
    }
    let renewed = store
        .claim_leader(
            cluster.id,
            LeaderClaim {
                host_id: granted[0].host_id,
                lease_seconds: 60,
            },
            &operator(),
        )
        .await
        .unwrap();
    assert_eq!(renewed.term, granted[0].term, "a renewal keeps the term");
    let stranger = store
        .claim_leader(
            cluster.id,
            LeaderClaim {
                host_id: Uuid::now_v7(),
                lease_seconds: 60,
            },
            &operator(),
        )
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), ErrorCode::HostNotFound);
    let status = store.sync_status(cluster.id, 10).await.unwrap();
    assert_eq!(status.leader.unwrap().host_id, granted[0].host_id);
    assert_eq!(status.hosts.len(), 6);
});

fn on_a_manual_clock() -> StoreOptions {
    StoreOptions {
        clock: Clock::manual("2031-05-06T07:08:09Z".parse().unwrap()),
        ..test_options()
    }
}

store_test!(
    expired_leases_move_and_orphans_are_marked_once_per_episode,
    options = on_a_manual_clock(),
    |store| async move {
        let clock = store.clock().clone();
        let cluster = insert(&store, "clocked").await;
        let a = host(&store, cluster.id, "node-a").await;
        let b = host(&store, cluster.id, "node-b").await;
        let first = store
            .claim_leader(
                cluster.id,
                LeaderClaim {
                    host_id: a.id,
                    lease_seconds: 30,
                },
                &operator(),
            )
            .await
            .unwrap();
        let held = store
            .claim_leader(
                cluster.id,
                LeaderClaim {
                    host_id: b.id,
                    lease_seconds: 30,
                },
                &operator(),
            )
            .await
            .unwrap_err();
        assert_eq!(held.code(), ErrorCode::LeaderHeld);
        clock.advance(Duration::seconds(31));
        let taken = store
            .claim_leader(
                cluster.id,
                LeaderClaim {
                    host_id: b.id,
                    lease_seconds: 30,
                },
                &operator(),
            )
            .await
            .unwrap();
        assert_eq!(taken.term, first.term + 1);

        store.heartbeat(a.id).await.unwrap();
        clock.advance(Duration::minutes(6));
        store.heartbeat(b.id).await.unwrap();
        let cutoff = clock.now() - Duration::minutes(5);
        let orphaned = store.mark_orphaned_hosts(cutoff).await.unwrap();
        assert_eq!(orphaned.iter().map(|h| h.id).collect::<Vec<_>>(), [a.id]);
        assert!(
            store.mark_orphaned_hosts(cutoff).await.unwrap().is_empty(),
            "once per episode"
        );
        assert_eq!(store.count_orphaned_hosts().await.unwrap(), 1);
        assert_eq!(store.orphaned_hosts(10).await.unwrap()[0].id, a.id);
        let back = store.heartbeat(a.id).await.unwrap();
        assert!(!back.orphaned);
        assert_eq!(store.count_orphaned_hosts().await.unwrap(), 0);
        let types: Vec<EventType> = events_from(&store, 0)
            .await
            .iter()
            .map(|e| e.event_type)
            .collect();
        assert_eq!(
            types
                .iter()
                .filter(|t| **t == EventType::HostOrphaned)
                .count(),
            1
        );
        assert_eq!(
            types
                .iter()
                .filter(|t| **t == EventType::HostRecovered)
                .count(),
            1
        );
        assert_eq!(
            types
                .iter()
                .filter(|t| **t == EventType::LeaderChanged)
                .count(),
            2
        );
    }
);
