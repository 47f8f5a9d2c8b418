//! Health history: sampling (every state change plus one sample per 5 minutes, or
//! `history.sample_minutes`),
//! `GET /api/v1/clusters/{id}/health/history` and retention.

use crate::helpers::*;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use fleetreg_model::{ClusterState, ClusterStatus};
use serde_json::{json, Value};

fn observed(state: ClusterState, at: DateTime<Utc>) -> ClusterStatus {
    ClusterStatus {
        state,
        health_score: match state {
            ClusterState::Online => 100,
            ClusterState::Degraded => 80,
            _ => 0,
        },
        checked_at: Some(at),
        ..ClusterStatus::default()
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn history(app: &TestApp, id: &str, query: &str) -> Vec<Value> {
    let response = app
        .get(&format!("/api/v1/clusters/{id}/health/history{query}"))
        .await;
    assert_eq!(response.status(), 200);
    response.json::<Vec<Value>>().await.unwrap()
}

fn states(samples: &[Value]) -> Vec<&str> {
    samples
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect()
}

api_test!(history_samples_transitions_and_periods, |app| {
    let cluster = app.register("hist-1", json!({})).await;
    let id = cluster["id"].as_str().unwrap().to_owned();
    let uuid = id.parse().unwrap();
    let base = fleetreg_model::now() - Duration::hours(1);
    let at = |minutes: i64| base + Duration::minutes(minutes);
    assert!(history(&app, &id, "").await.is_empty(), "no samples yet");

    // (minute, state, whether a sample is expected)
    let steps = [
        (0, ClusterState::Online, true),    // UNKNOWN -> ONLINE
        (1, ClusterState::Online, false),   // same state within 5 minutes
        (2, ClusterState::Online, false),   // same state within 5 minutes
        (3, ClusterState::Degraded, true),  // transition
        (4, ClusterState::Degraded, false), // within 5 minutes of the last sample
        (8, ClusterState::Degraded, true),  // 5 minutes since the last sample
        (9, ClusterState::Offline, true),   // transition
        (10, ClusterState::Online, true),   // transition
    ];
    let mut expected = 0;
    for (minute, state, sampled) in steps {
        app.store
            .record_status(uuid, observed(state, at(minute)), Some(at(minute)))
            .await
            .unwrap();
        expected += usize::from(sampled);
        assert_eq!(
            history(&app, &id, "").await.len(),
            expected,
            "after minute {minute} ({state:?})"
        );
    }

    let all = history(&app, &id, "").await;
    assert_eq!(
        states(&all),
        ["ONLINE", "OFFLINE", "DEGRADED", "DEGRADED", "ONLINE"],
        "newest first"
    );
    let times: Vec<DateTime<Utc>> = all
        .iter()
        .map(|s| s["checked_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "{times:?}");
    assert_eq!(all[0]["health_score"], 100);
    assert_eq!(all[1]["status"]["state"], "OFFLINE");

    let since = history(&app, &id, &format!("?since={}", rfc3339(at(8)))).await;
    assert_eq!(states(&since), ["ONLINE", "OFFLINE", "DEGRADED"]);
    let limited = history(&app, &id, "?limit=2").await;
    assert_eq!(states(&limited), ["ONLINE", "OFFLINE"]);
    let both = history(&app, &id, &format!("?since={}&limit=1", rfc3339(at(3)))).await;
    assert_eq!(states(&both), ["ONLINE"]);
    let future = history(&app, &id, &format!("?since={}", rfc3339(at(120)))).await;
    assert!(future.is_empty());

    // Deleting the cluster removes its history with it.
    let other = app.register("hist-2", json!({})).await;
    let other_id = other["id"].as_str().unwrap().to_owned();
    app.store
        .record_status(
            other_id.parse().unwrap(),
            observed(ClusterState::Online, at(0)),
            None,
        )
        .await
        .unwrap();
    assert_eq!(history(&app, &other_id, "").await.len(), 1);
    app.delete_cluster(&other_id).await;
    assert_error(
        app.get(&format!("/api/v1/clusters/{other_id}/health/history"))
            .await,
        404,
        "CLUSTER_NOT_FOUND",
    )
    .await;
});

api_test!(history_validation_and_not_found, |app| {
    let cluster = app.register("hist-v", json!({})).await;
    let id = cluster["id"].as_str().unwrap();
    for query in [
        "?limit=0",
        "?limit=1001",
        "?limit=abc",
        "?limit=-1",
        "?since=yesterday",
        "?since=2026-01-01",
        "?bogus=1",
    ] {
        assert_error(
            app.get(&format!("/api/v1/clusters/{id}/health/history{query}"))
                .await,
            400,
            "VALIDATION_ERROR",
        )
        .await;
    }
    assert_eq!(history(&app, id, "?limit=1000").await.len(), 0);
    assert_error(
        app.get(&format!(
            "/api/v1/clusters/{}/health/history",
            uuid::Uuid::now_v7()
        ))
        .await,
        404,
        "CLUSTER_NOT_FOUND",
    )
    .await;
    let missing = app
        .store
        .list_health_history(uuid::Uuid::now_v7(), None, 10)
        .await;
    assert!(matches!(
        missing,
        Err(fleetreg_store::StoreError::NotFound(_))
    ));
});

/// An observation without a time of its own: the store stamps it with its
/// clock's time.
fn unstamped(state: ClusterState) -> ClusterStatus {
    ClusterStatus {
        checked_at: None,
        ..observed(state, fleetreg_model::now())
    }
}

// On a manual clock: samples are stamped by the clock, one a day, and the
// retention worker (default 7 days) removes each once the clock is past it.
mod history_retention_removes_old_rows {
    use super::*;

    async fn body(app: TestApp) {
        let cluster = app.register("hist-r", json!({})).await;
        let id = cluster["id"].as_str().unwrap().to_owned();
        let uuid = id.parse().unwrap();
        let start = app.clock.now();
        // Alternating states: each observation is a sample, one a day.
        for i in 0..6 {
            let state = if i % 2 == 0 {
                ClusterState::Online
            } else {
                ClusterState::Degraded
            };
            app.clock.set(start + Duration::days(i));
            app.store
                .record_status(uuid, unstamped(state), None)
                .await
                .unwrap();
        }
        let samples = history(&app, &id, "?limit=1000").await;
        assert_eq!(samples.len(), 6);
        assert_eq!(
            samples[5]["checked_at"]
                .as_str()
                .unwrap()
                .parse::<DateTime<Utc>>()
                .unwrap(),
            start,
            "stamped by the clock"
        );

        // Exactly 7 days after the first sample: nothing is older yet.
        app.clock.set(start + Duration::days(7));
        assert_eq!(app.retention.prune_history().await.unwrap(), 0);
        assert_eq!(history(&app, &id, "").await.len(), 6);
        // Half a day later: the first sample only.
        app.clock.advance(Duration::hours(12));
        assert_eq!(app.retention.prune_history().await.unwrap(), 1);
        assert_eq!(history(&app, &id, "").await.len(), 5);
        assert_eq!(
            app.retention.prune_history().await.unwrap(),
            0,
            "nothing left to remove"
        );
        // Three days on: the next three.
        app.clock.advance(Duration::days(3));
        assert_eq!(app.retention.prune_history().await.unwrap(), 3);
        assert_eq!(history(&app, &id, "").await.len(), 2);

        // A cutoff in the future removes everything.
        let removed = app
            .store
            .prune_health_history(app.clock.now() + Duration::days(1))
            .await
            .unwrap();
        assert_eq!(removed, 2);
        assert!(history(&app, &id, "").await.is_empty());
    }

    on_both_stores!(crate::rbac::manual_clock);
}

mod history_sample_period_is_configurable {
    use super::*;

    /// One-minute sampling, on a manual clock.
    fn one_minute(settings: &mut fleetreg_server::settings::Settings) {
        settings.history_sample = std::time::Duration::from_secs(60);
        crate::rbac::manual_clock(settings);
    }

    async fn body(app: TestApp) {
        let cluster = app.register("hist-period", json!({})).await;
        let id = cluster["id"].as_str().unwrap().to_owned();
        let uuid = id.parse().unwrap();
        let base = app.clock.now();
        // (seconds, whether sampled) with the state ONLINE throughout; the
        // observations carry no time, the store's clock stamps them.
        let steps = [(0, true), (30, false), (60, true), (90, false), (150, true)];
        let mut expected = 0;
        for (second, sampled) in steps {
            app.clock.set(base + Duration::seconds(second));
            app.store
                .record_status(uuid, unstamped(ClusterState::Online), None)
                .await
                .unwrap();
            expected += usize::from(sampled);
            assert_eq!(
                history(&app, &id, "").await.len(),
                expected,
                "after second {second}"
            );
        }
    }

    on_both_stores!(one_minute);
}
