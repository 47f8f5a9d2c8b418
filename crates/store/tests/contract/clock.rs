//! The store's clock (`StoreOptions::clock`): every write is stamped with its
//! time, observations without a time of their own are sampled into the
//! health history by it, and expiry is judged by it in reads.

use crate::harness::*;
use chrono::{DateTime, Duration, Utc};
use fleetreg_model::{Clock, ClusterState, ClusterStatus, CredentialWrite};
use fleetreg_store::{PutCredentials, StoreOptions};
use serde_json::json;
use std::time::Duration as StdDuration;

/// A fixed start, far from the wall clock.
fn start() -> DateTime<Utc> {
    "2031-05-06T07:08:09.123456Z".parse().unwrap()
}

/// Hourly history samples, on a manual clock standing at [`start`].
fn on_a_manual_clock() -> StoreOptions {
    StoreOptions {
        history_sample: StdDuration::from_secs(3600),
        clock: Clock::manual(start()),
        ..test_options()
    }
}

/// An ONLINE observation without a time of its own.
fn unstamped() -> ClusterStatus {
    ClusterStatus {
        checked_at: None,
        ..status(ClusterState::Online, 90, start())
    }
}

store_test!(
    writes_are_stamped_by_the_stores_clock,
    options = on_a_manual_clock(),
    |store| async move {
        let clock = store.clock().clone();
        assert_eq!(clock.now(), start());
        let cluster = insert(&store, "clocked").await;
        assert_eq!((cluster.created_at, cluster.updated_at), (start(), start()));
        let registered = events_from(&store, 0).await;
        assert_eq!(registered[0].occurred_at, start());
        assert_eq!(audit_log(&store).await[0].at, start());

        let later = clock.advance(Duration::hours(1));
        let updated = store
            .update_cluster(
                cluster.id,
                None,
                patch(json!({ "region": "r1" })),
                &operator(),
            )
            .await
            .unwrap();
        assert_eq!(updated.created_at, start());
        assert_eq!(updated.updated_at, later);
        let log = events_from(&store, 0).await;
        assert_eq!(log[1].occurred_at, later);
        let audit = audit_log(&store).await;
        assert_eq!(audit.last().unwrap().at, later);
    }
);

store_test!(
    unstamped_observations_are_sampled_by_the_clock,
    options = on_a_manual_clock(),
    |store| async move {
        let clock = store.clock().clone();
        let cluster = insert(&store, "observed").await;
        // (minutes after the start, whether sampled): hourly, ONLINE throughout.
        for (minute, sampled) in [
            (0, true),
            (59, false),
            (60, true),
            (119, false),
            (121, true),
        ] {
            clock.set(start() + Duration::minutes(minute));
            let before = store
                .list_health_history(cluster.id, None, 100)
                .await
                .unwrap();
            store
                .record_status(cluster.id, unstamped(), None)
                .await
                .unwrap();
            let after = store
                .list_health_history(cluster.id, None, 100)
                .await
                .unwrap();
            assert_eq!(
                after.len() - before.len(),
                usize::from(sampled),
                "minute {minute}"
            );
            if sampled {
                assert_eq!(after[0].checked_at, clock.now(), "minute {minute}");
            }
        }
    }
);

store_test!(
    event_retention_removes_a_prefix_and_nothing_newer_after_the_clock_stepped_back,
    options = on_a_manual_clock(),
    |store| async move {
        let clock = store.clock().clone();
        // Revisions 1..=4 registered on these days after the start: the
        // clock stepped back after the second.
        let days = [0, 10, 2, 3];
        let day = |n: i64| start() + Duration::days(n);
        for (i, n) in days.into_iter().enumerate() {
            clock.set(day(n));
            insert(&store, &format!("stepped-{i}")).await;
        }
        // Before day 5: revision 1 goes; revision 2 (day 10) stays, and the
        // older ones after it wait for it.
        assert_eq!(store.prune_events(day(5), i64::MAX).await.unwrap(), 1);
        let left: Vec<_> = events_from(&store, 1)
            .await
            .into_iter()
            .map(|e| (e.revision, e.occurred_at))
            .collect();
        assert_eq!(left, [(2, day(10)), (3, day(2)), (4, day(3))]);
        // Past day 10 all go, never above `keep_from`.
        assert_eq!(store.prune_events(day(11), 3).await.unwrap(), 2);
        assert_eq!(store.prune_events(day(11), i64::MAX).await.unwrap(), 1);
        assert_eq!(store.prune_events(day(11), i64::MAX).await.unwrap(), 0);
    }
);

store_test!(
    event_retention_never_removes_an_event_committed_while_it_runs,
    options = on_a_manual_clock(),
    |store| async move {
        let clock = store.clock().clone();
        let day = |n: i64| start() + Duration::days(n);
        // Each round: the log holds only events older than the cutoff, and a
        // newer one is committed while retention runs again and again; the
        // newer one must survive every run, whatever it saw.
        for round in 0..20 {
            clock.set(day(2 * round));
            insert(&store, &format!("old-{round}")).await;
            let cutoff = day(2 * round + 1);
            store.prune_events(cutoff, i64::MAX).await.unwrap();
            clock.set(day(2 * round + 2));
            let writing = tokio::spawn({
                let store = store.clone();
                async move { insert(&store, &format!("new-{round}")).await }
            });
            while !writing.is_finished() {
                store.prune_events(cutoff, i64::MAX).await.unwrap();
            }
            let new = writing.await.unwrap();
            store.prune_events(cutoff, i64::MAX).await.unwrap();
            let kept = events_from(&store, new.revision - 1).await;
            assert_eq!(kept.len(), 1, "round {round}: the newer event is kept");
        }
    }
);

store_test!(
    expiry_in_reads_is_judged_by_the_clock,
    options = on_a_manual_clock(),
    |store| async move {
        let clock = store.clock().clone();
        let cluster = insert(&store, "expiring").await;
        let expires = start() + Duration::days(2);
        let put = PutCredentials {
            expires_at: Some(expires),
            ..sealed_token(cluster.id, CredentialWrite::Store)
        };
        store.put_credentials(put, &operator()).await.unwrap();
        let far = start() + Duration::days(30);
        let expired = || async {
            let items = store.expiring_credentials(far, 10).await.unwrap();
            assert_eq!(items.len(), 1);
            items[0].expired
        };
        assert!(!expired().await, "two days ahead of the clock");
        clock.set(expires - Duration::microseconds(1));
        assert!(!expired().await, "a microsecond before");
        clock.set(expires);
        assert!(expired().await, "at the expiry");
        assert_eq!(
            store
                .get_credentials(cluster.id)
                .await
                .unwrap()
                .unwrap()
                .created_at,
            start(),
            "stamped by the clock"
        );
    }
);
