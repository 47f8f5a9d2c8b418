//! Health history: every state change plus one sample per sampling period,
//! newest first, `since`/`limit`, retention.

use crate::harness::*;
use chrono::Duration;
use fleetreg_model::ClusterState;
use fleetreg_store::{StoreError, StoreOptions};
use std::time::Duration as StdDuration;
use uuid::Uuid;

fn hourly() -> StoreOptions {
    StoreOptions {
        history_sample: StdDuration::from_secs(3600),
        ..test_options()
    }
}

fn every_observation() -> StoreOptions {
    StoreOptions {
        history_sample: StdDuration::ZERO,
        ..test_options()
    }
}

store_test!(
    history_of_an_unknown_cluster_is_not_found,
    |store| async move {
        assert_err!(
            store.list_health_history(Uuid::now_v7(), None, 10).await,
            StoreError::NotFound(_)
        );
        let cluster = insert(&store, "unobserved").await;
        assert!(
            store
                .list_health_history(cluster.id, None, 10)
                .await
                .unwrap()
                .is_empty(),
            "registration records no sample"
        );
    }
);

store_test!(
    history_keeps_changes_and_one_sample_per_period,
    options = hourly(),
    |store| async move {
        let cluster = insert(&store, "sampled").await;
        let other = insert(&store, "neighbour").await;
        let t0 = fleetreg_model::now() - Duration::hours(3);
        let at = |minutes: i64| t0 + Duration::minutes(minutes);
        let observations = [
            (0, ClusterState::Online, 100),    // a change: sampled
            (1, ClusterState::Online, 98),     // same state within the hour
            (30, ClusterState::Online, 97),    // same state within the hour
            (40, ClusterState::Degraded, 60),  // a change: sampled
            (50, ClusterState::Degraded, 61),  // within the hour of the last sample
            (100, ClusterState::Degraded, 62), // an hour after the last sample: sampled
        ];
        for (minute, state, score) in observations {
            store
                .record_status(
                    cluster.id,
                    status(state, score, at(minute)),
                    Some(at(minute)),
                )
                .await
                .unwrap();
        }
        store
            .record_status(other.id, status(ClusterState::Offline, 0, at(5)), None)
            .await
            .unwrap();

        let history = store
            .list_health_history(cluster.id, None, 100)
            .await
            .unwrap();
        let seen: Vec<_> = history
            .iter()
            .map(|s| (s.checked_at, s.state, s.health_score))
            .collect();
        assert_eq!(
            seen,
            [
                (at(100), ClusterState::Degraded, 62),
                (at(40), ClusterState::Degraded, 60),
                (at(0), ClusterState::Online, 100),
            ],
            "newest first: the changes and one sample per hour"
        );
        assert_eq!(
            history[0].status,
            status(ClusterState::Degraded, 62, at(100))
        );
        assert_eq!(history[2].status, status(ClusterState::Online, 100, at(0)));

        let since = store
            .list_health_history(cluster.id, Some(at(40)), 100)
            .await
            .unwrap();
        assert_eq!(since.len(), 2, "since is inclusive");
        assert_eq!(since[1].checked_at, at(40));
        let limited = store
            .list_health_history(cluster.id, None, 1)
            .await
            .unwrap();
        assert_eq!(limited.len(), 1);
        assert_eq!(limited[0].checked_at, at(100));

        let theirs = store
            .list_health_history(other.id, None, 100)
            .await
            .unwrap();
        assert_eq!(theirs.len(), 1, "each cluster has its own history");
        assert_eq!(theirs[0].state, ClusterState::Offline);
    }
);

store_test!(
    a_zero_period_samples_every_observation,
    options = every_observation(),
    |store| async move {
        let cluster = insert(&store, "chatty").await;
        let t0 = fleetreg_model::now() - Duration::minutes(10);
        for i in 0..4 {
            let at = t0 + Duration::seconds(i);
            store
                .record_status(cluster.id, status(ClusterState::Online, 90, at), Some(at))
                .await
                .unwrap();
        }
        let history = store
            .list_health_history(cluster.id, None, 100)
            .await
            .unwrap();
        assert_eq!(history.len(), 4);
        for pair in history.windows(2) {
            assert!(pair[0].checked_at > pair[1].checked_at, "newest first");
        }
    }
);

store_test!(
    the_default_period_is_five_minutes,
    options = StoreOptions::default(),
    |store| async move {
        let cluster = insert(&store, "default-period").await;
        let t0 = fleetreg_model::now() - Duration::hours(1);
        for minute in [0, 4, 5, 6] {
            let at = t0 + Duration::minutes(minute);
            store
                .record_status(cluster.id, status(ClusterState::Online, 90, at), Some(at))
                .await
                .unwrap();
        }
        let history = store
            .list_health_history(cluster.id, None, 100)
            .await
            .unwrap();
        let minutes: Vec<i64> = history
            .iter()
            .map(|s| (s.checked_at - t0).num_minutes())
            .collect();
        assert_eq!(minutes, [5, 0]);
    }
);

store_test!(
    pruning_history_removes_only_older_samples,
    options = every_observation(),
    |store| async move {
        let a = insert(&store, "prune-a").await;
        let b = insert(&store, "prune-b").await;
        let t0 = fleetreg_model::now() - Duration::days(10);
        for (cluster, day) in [(&a, 0), (&a, 5), (&a, 9), (&b, 1), (&b, 8)] {
            let at = t0 + Duration::days(day);
            store
                .record_status(cluster.id, status(ClusterState::Online, 90, at), Some(at))
                .await
                .unwrap();
        }
        let cutoff = t0 + Duration::days(6);
        assert_eq!(store.prune_health_history(cutoff).await.unwrap(), 3);
        assert_eq!(
            store.prune_health_history(cutoff).await.unwrap(),
            0,
            "nothing left to prune"
        );
        let left_a = store.list_health_history(a.id, None, 100).await.unwrap();
        assert_eq!(left_a.len(), 1);
        assert_eq!(left_a[0].checked_at, t0 + Duration::days(9));
        let left_b = store.list_health_history(b.id, None, 100).await.unwrap();
        assert_eq!(left_b.len(), 1);
        assert_eq!(left_b[0].checked_at, t0 + Duration::days(8));
        // The clusters' current status is not history: it stays.
        assert_eq!(
            store.get_cluster(a.id).await.unwrap().status.state,
            ClusterState::Online
        );
    }
);

store_test!(
    observations_in_one_batch_see_each_other,
    options = every_observation(),
    |store| async move {
        let a = insert(&store, "batch-a").await;
        let b = insert(&store, "batch-b").await;
        let gone = insert(&store, "batch-gone").await;
        let t0 = fleetreg_model::now() - Duration::minutes(10);
        let at = |seconds: i64| t0 + Duration::seconds(seconds);
        let operator = operator();
        // Queued in one go: the writer applies them in this order, mostly in
        // one transaction (whose observations are read with one statement and
        // written with one); the outcome is the same however they are batched.
        let (a1, b1, a2, g1, deleted, g2, unknown) = tokio::join!(
            store.record_status(a.id, status(ClusterState::Online, 100, at(0)), Some(at(0))),
            store.record_status(b.id, status(ClusterState::Offline, 0, at(0)), None),
            store.record_status(a.id, status(ClusterState::Degraded, 60, at(1)), Some(at(1))),
            store.record_status(
                gone.id,
                status(ClusterState::Online, 90, at(0)),
                Some(at(0))
            ),
            store.delete_cluster(gone.id, None, &operator),
            store.record_status(
                gone.id,
                status(ClusterState::Online, 90, at(1)),
                Some(at(1))
            ),
            store.record_status(
                Uuid::now_v7(),
                status(ClusterState::Online, 90, at(0)),
                None
            ),
        );
        let a1 = a1.unwrap().expect("UNKNOWN → ONLINE is a change");
        let a2 = a2.unwrap().expect("ONLINE → DEGRADED is a change");
        assert_eq!(a1.payload["old_state"], "UNKNOWN");
        assert_eq!(
            a2.payload["old_state"], "ONLINE",
            "the second observation of the batch saw the first"
        );
        assert!(a1.revision < a2.revision);
        assert!(b1.unwrap().is_some(), "UNKNOWN → OFFLINE is a change");
        assert!(g1.unwrap().is_some());
        deleted.unwrap();
        assert_err!(g2, StoreError::NotFound(_));
        assert_err!(unknown, StoreError::NotFound(_));

        let a_now = store.get_cluster(a.id).await.unwrap();
        assert_eq!(a_now.status, status(ClusterState::Degraded, 60, at(1)));
        assert_eq!(a_now.last_seen_at, Some(at(1)));
        let b_now = store.get_cluster(b.id).await.unwrap();
        assert_eq!(b_now.status, status(ClusterState::Offline, 0, at(0)));
        assert_eq!(b_now.last_seen_at, None);
        assert_err!(store.get_cluster(gone.id).await, StoreError::NotFound(_));
        let history: Vec<_> = store
            .list_health_history(a.id, None, 100)
            .await
            .unwrap()
            .iter()
            .map(|s| (s.checked_at, s.state))
            .collect();
        assert_eq!(
            history,
            [
                (at(1), ClusterState::Degraded),
                (at(0), ClusterState::Online)
            ]
        );

        // The next batch reads what this one wrote.
        let again = store
            .record_status(a.id, status(ClusterState::Degraded, 61, at(2)), Some(at(2)))
            .await
            .unwrap();
        assert!(again.is_none(), "DEGRADED → DEGRADED is no change");
    }
);
