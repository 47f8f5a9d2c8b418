//! Credential expiry wherever it shows: the `credentials` summary of a
//! cluster's status, the fleet health counts and list, the
//! `/api/v1/credentials/expiring` read and the `/metrics` gauges — warnings at
//! 8 days (OK), 7 days (EXPIRING, the default `rotation_warning_days`) and 0
//! days (EXPIRED) before expiry.
//!
//! TOKEN uploads to plain-HTTP simulated clusters carry an explicit
//! `expires_at` (a plain token has no expiry of its own, so the upload's is
//! stored); the simulator accepts the tokens whatever that says.

use crate::helpers::{assert_error, TestApp};
use chrono::{DateTime, Duration, Utc};
use fleetreg_server::settings::Settings;
use fleetreg_sim::{AddToken, AuthSpec, ClusterSpec, SpawnedSim};
use serde_json::{json, Value};

fn manual(settings: &mut Settings) {
    settings.health_check.enabled = false;
    settings.health_check.timeout_seconds = Some(3);
}

/// The token each cluster's credentials carry (must never come back).
fn secret_of(name: &str) -> String {
    format!("secret-token-of-{name}")
}

/// Registers a simulated cluster that requires a token and stores a TOKEN
/// credential for it expiring at `expires_at`; returns the cluster id.
async fn cluster_with_token(
    app: &TestApp,
    sim: &SpawnedSim,
    name: &str,
    expires_at: Option<DateTime<Utc>>,
) -> String {
    let auth = AuthSpec {
        required: true,
        ..AuthSpec::default()
    };
    let view = sim
        .admin()
        .create_cluster_with_auth(name, ClusterSpec::default(), auth)
        .await
        .unwrap();
    let token = secret_of(name);
    sim.admin()
        .add_token(
            name,
            &AddToken {
                token: Some(token.clone()),
                ..AddToken::default()
            },
        )
        .await
        .unwrap();
    let created = app
        .register(name, json!({ "api_server_url": view.api_server_url }))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut body = json!({ "auth_type": "TOKEN", "token": token });
    if let Some(at) = expires_at {
        body["expires_at"] = json!(at.to_rfc3339());
    }
    let response = app
        .client
        .post(app.url(&format!("/api/v1/clusters/{id}/credentials")))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let stored: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{name}: {stored}");
    id
}

async fn json_of(app: &TestApp, path: &str) -> (u16, String, Value) {
    let response = app.get(path).await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, text, value)
}

/// The value of an unlabelled gauge in Prometheus text.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

fn names(items: &Value) -> Vec<&str> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["cluster_name"].as_str().unwrap())
        .collect()
}

mod expiry_warnings_at_8_7_and_0_days {
    use super::*;

    async fn body(app: TestApp) {
        let sim = SpawnedSim::start().await.unwrap();
        let now = Utc::now();
        let days = |d: i64| Some(now + Duration::days(d));
        let cases = [
            ("in-8-days", days(8), "OK"),
            ("in-7-days", days(7), "EXPIRING"),
            ("in-0-days", days(0), "EXPIRED"),
            ("3-days-ago", days(-3), "EXPIRED"),
            ("no-expiry", None, "UNKNOWN"),
        ];
        let mut ids = Vec::new();
        for (name, at, _) in &cases {
            ids.push(cluster_with_token(&app, &sim, name, *at).await);
        }
        let bare = app.register("no-credentials", json!({})).await;
        let bare_id = bare["id"].as_str().unwrap();
        let mut seen = String::new();

        // The status carries the summary, judged now.
        for ((name, at, expiry), id) in cases.iter().zip(&ids) {
            let (code, text, status) =
                json_of(&app, &format!("/api/v1/clusters/{id}/status")).await;
            assert_eq!(code, 200, "{text}");
            seen.push_str(&text);
            let credentials = &status["credentials"];
            assert_eq!(credentials["expiry"], *expiry, "{name}: {status}");
            assert_eq!(credentials["stored"], true);
            assert_eq!(credentials["version"], 1);
            assert_eq!(credentials["auth_type"], "TOKEN");
            let expires_at = credentials["expires_at"]
                .as_str()
                .map(|t| DateTime::parse_from_rfc3339(t).unwrap().timestamp());
            assert_eq!(expires_at, at.map(|t| t.timestamp()), "{name}");
            // The status fields are still at the top level.
            assert!(status["state"].is_string(), "{status}");
            assert!(status.get("health_score").is_some());
        }
        let (_, _, status) = json_of(&app, &format!("/api/v1/clusters/{bare_id}/status")).await;
        assert_eq!(
            status["credentials"],
            json!({ "stored": false, "version": null, "auth_type": null,
                    "expires_at": null, "expiry": null })
        );

        // The cluster resource keeps one shape (reads, lists, writes and
        // events alike): the read-time summary is only on the status.
        let (code, text, cluster) = json_of(&app, &format!("/api/v1/clusters/{}", ids[0])).await;
        assert_eq!(code, 200);
        seen.push_str(&text);
        assert!(cluster.get("credentials").is_none(), "{cluster}");
        let (_, text, page) = json_of(&app, "/api/v1/clusters?page_size=100").await;
        seen.push_str(&text);
        assert_eq!(page["total"], 6);
        assert!(page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c.get("credentials").is_none()));

        // Fleet health: 1 expiring (7 days), 2 expired; soonest first.
        let (code, text, health) = json_of(&app, "/api/v1/fleet/health").await;
        assert_eq!(code, 200, "{text}");
        seen.push_str(&text);
        assert_eq!(health["credentials_expiring_count"], 1, "{health}");
        assert_eq!(health["credentials_expired_count"], 2, "{health}");
        let expiring = &health["credentials_expiring"];
        assert_eq!(
            names(expiring),
            ["3-days-ago", "in-0-days", "in-7-days"],
            "{health}"
        );
        let flags: Vec<bool> = expiring
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["expired"].as_bool().unwrap())
            .collect();
        assert_eq!(flags, [true, true, false]);
        let first = &expiring[0];
        assert_eq!(first["cluster_id"], ids[3].as_str());
        assert_eq!(first["auth_type"], "TOKEN");
        assert_eq!(first["version"], 1);
        // `limit` bounds the list, not the counts.
        let (_, _, limited) = json_of(&app, "/api/v1/fleet/health?limit=1").await;
        assert_eq!(names(&limited["credentials_expiring"]), ["3-days-ago"]);
        assert_eq!(limited["credentials_expiring_count"], 1);
        assert_eq!(limited["credentials_expired_count"], 2);

        // The dedicated read: the settings' window by default, or any other.
        let (_, text, list) = json_of(&app, "/api/v1/credentials/expiring").await;
        seen.push_str(&text);
        assert_eq!(list["within_days"], 7);
        assert_eq!(list["expiring_count"], 1);
        assert_eq!(list["expired_count"], 2);
        assert_eq!(
            names(&list["items"]),
            ["3-days-ago", "in-0-days", "in-7-days"]
        );
        let (_, _, wider) = json_of(&app, "/api/v1/credentials/expiring?within_days=9").await;
        assert_eq!(wider["expiring_count"], 2);
        assert_eq!(
            names(&wider["items"]),
            ["3-days-ago", "in-0-days", "in-7-days", "in-8-days"]
        );
        let (_, _, none) =
            json_of(&app, "/api/v1/credentials/expiring?within_days=0&limit=1").await;
        assert_eq!(none["expiring_count"], 0);
        assert_eq!(none["expired_count"], 2);
        assert_eq!(names(&none["items"]), ["3-days-ago"]);
        for bad in [
            "within_days=-1",
            "within_days=x",
            "limit=0",
            "limit=1001",
            "soon=1",
        ] {
            assert_error(
                app.get(&format!("/api/v1/credentials/expiring?{bad}"))
                    .await,
                400,
                "VALIDATION_ERROR",
            )
            .await;
        }

        // The gauges.
        let (code, text, _) = json_of(&app, "/metrics").await;
        assert_eq!(code, 200);
        assert_eq!(
            gauge(&text, "fleetreg_credentials_expiring"),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            gauge(&text, "fleetreg_credentials_expired"),
            Some(2.0),
            "{text}"
        );
        assert!(text.contains("# TYPE fleetreg_credentials_expiring gauge"));

        // Deleting credentials takes them out of every view.
        let response = app
            .client
            .delete(app.url(&format!("/api/v1/clusters/{}/credentials", ids[1])))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
        let (_, _, status) = json_of(&app, &format!("/api/v1/clusters/{}/status", ids[1])).await;
        assert_eq!(status["credentials"]["stored"], false);
        let (_, _, health) = json_of(&app, "/api/v1/fleet/health").await;
        assert_eq!(health["credentials_expiring_count"], 0);
        assert_eq!(health["credentials_expired_count"], 2);
        let (_, text, _) = json_of(&app, "/metrics").await;
        assert_eq!(gauge(&text, "fleetreg_credentials_expiring"), Some(0.0));

        // No secret in anything read.
        for (name, _, _) in &cases {
            assert!(!seen.contains(&secret_of(name)), "{name}'s token leaked");
        }
        assert!(!seen.contains("sealed"), "{seen}");
    }

    on_both_stores!(manual);
}

mod the_warning_window_comes_from_the_settings {
    use super::*;

    fn ten_days(settings: &mut Settings) {
        manual(settings);
        settings.credentials.rotation_warning_days = 10;
    }

    async fn body(app: TestApp) {
        let sim = SpawnedSim::start().await.unwrap();
        let now = Utc::now();
        let soon = cluster_with_token(&app, &sim, "in-8-days", Some(now + Duration::days(8))).await;
        let later =
            cluster_with_token(&app, &sim, "in-11-days", Some(now + Duration::days(11))).await;
        let (_, _, status) = json_of(&app, &format!("/api/v1/clusters/{soon}/status")).await;
        assert_eq!(status["credentials"]["expiry"], "EXPIRING", "{status}");
        let (_, _, status) = json_of(&app, &format!("/api/v1/clusters/{later}/status")).await;
        assert_eq!(status["credentials"]["expiry"], "OK", "{status}");
        let (_, _, health) = json_of(&app, "/api/v1/fleet/health").await;
        assert_eq!(health["credentials_expiring_count"], 1, "{health}");
        assert_eq!(names(&health["credentials_expiring"]), ["in-8-days"]);
        let (_, _, list) = json_of(&app, "/api/v1/credentials/expiring").await;
        assert_eq!(list["within_days"], 10);
        let (_, text, _) = json_of(&app, "/metrics").await;
        assert_eq!(gauge(&text, "fleetreg_credentials_expiring"), Some(1.0));
        assert_eq!(gauge(&text, "fleetreg_credentials_expired"), Some(0.0));
    }

    on_both_stores!(ten_days);
}

// On a manual clock: the same credentials go from OK to EXPIRING to EXPIRED in
// every view as the clock passes the warning window and the expiry.
mod expiry_follows_the_clock {
    use super::*;

    fn on_a_manual_clock(settings: &mut Settings) {
        manual(settings);
        crate::rbac::manual_clock(settings);
    }

    /// (`expiry` of the status, fleet health's expiring and expired counts,
    /// the `/metrics` gauges).
    async fn views(app: &TestApp, id: &str) -> (Value, Value, Value, Option<f64>, Option<f64>) {
        let (_, _, status) = json_of(app, &format!("/api/v1/clusters/{id}/status")).await;
        let (_, _, health) = json_of(app, "/api/v1/fleet/health").await;
        let (_, text, _) = json_of(app, "/metrics").await;
        (
            status["credentials"]["expiry"].clone(),
            health["credentials_expiring_count"].clone(),
            health["credentials_expired_count"].clone(),
            gauge(&text, "fleetreg_credentials_expiring"),
            gauge(&text, "fleetreg_credentials_expired"),
        )
    }

    async fn body(app: TestApp) {
        let sim = SpawnedSim::start().await.unwrap();
        let start = app.clock.now();
        let expires = start + Duration::days(30);
        let id = cluster_with_token(&app, &sim, "thirty-days", Some(expires)).await;
        assert_eq!(
            views(&app, &id).await,
            (json!("OK"), json!(0), json!(0), Some(0.0), Some(0.0))
        );

        // A second outside the 7-day window, then at its edge.
        app.clock
            .set(expires - Duration::days(7) - Duration::seconds(1));
        assert_eq!(
            views(&app, &id).await,
            (json!("OK"), json!(0), json!(0), Some(0.0), Some(0.0))
        );
        app.clock.set(expires - Duration::days(7));
        assert_eq!(
            views(&app, &id).await,
            (json!("EXPIRING"), json!(1), json!(0), Some(1.0), Some(0.0))
        );

        // A second before the expiry, then at it.
        app.clock.set(expires - Duration::seconds(1));
        assert_eq!(views(&app, &id).await.0, "EXPIRING");
        app.clock.set(expires);
        assert_eq!(
            views(&app, &id).await,
            (json!("EXPIRED"), json!(0), json!(1), Some(0.0), Some(1.0))
        );
        let (_, _, list) = json_of(&app, "/api/v1/credentials/expiring").await;
        assert_eq!(names(&list["items"]), ["thirty-days"]);
        assert_eq!(list["items"][0]["expired"], true, "{list}");
    }

    on_both_stores!(on_a_manual_clock);
}
