//! Canary-first rollouts over HTTP: production waits for a healthy canary
//! and promotion; a canary failing its URL health check halts the rollout
//! before production starts; state survives a restart.

use crate::helpers::*;
use serde_json::{json, Value};
use std::time::Duration;

/// Deploys `name` with nextcloud 30 and the given role and URLs.
async fn deployed(app: &TestApp, name: &str, role: &str, urls: Value) {
    let body = json!({"name": name, "role": role, "status": "deployed", "apps": ["nextcloud"],
                      "versions": {"nextcloud": "30.0.17"}, "urls": urls});
    ok_json(app.post_json("/api/v1/clients", body).await).await;
}

async fn report(app: &TestApp, name: &str, version: &str) {
    let body = json!({"versions": {"nextcloud": version}});
    ok_json(
        app.post_json(&format!("/api/v1/clients/{name}/versions"), body)
            .await,
    )
    .await;
}

async fn rollout_until(
    app: &TestApp,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(what, Duration::from_secs(20), || async {
        let r = ok_json(app.get(&format!("/api/v1/rollouts/{id}")).await).await;
        done(&r).then_some(r)
    })
    .await
}

fn fast(settings: &mut fleetreg_server::settings::Settings) {
    settings.sync.rollout_check_seconds = 1;
    settings.client_health.interval_seconds = 1;
    settings.client_health.timeout_seconds = 2;
    settings.health_check.allowed_networks = vec!["127.0.0.0/8".into()];
}

mod production_waits_for_the_canary_and_promotion {
    use super::*;

    async fn body(app: TestApp) {
        deployed(&app, "dev", "canary", json!({})).await;
        for name in ["a", "b", "c"] {
            deployed(&app, name, "production", json!({})).await;
        }
        let no_canary = app
            .post_json("/api/v1/rollouts", json!({"app": "gitea", "version": "1"}))
            .await;
        assert_error(no_canary, 400, "VALIDATION_ERROR").await;
        let started = app
            .post_json(
                "/api/v1/rollouts",
                json!({"app": "nextcloud", "version": "31.0.2", "wave_size": 2}),
            )
            .await;
        assert_eq!(started.status(), 201);
        let rollout = ok_json(started).await;
        let id = rollout["id"].as_str().unwrap().to_owned();
        let second = app
            .post_json(
                "/api/v1/rollouts",
                json!({"app": "nextcloud", "version": "32"}),
            )
            .await;
        let body = assert_error(second, 409, "ROLLOUT_CONFLICT").await;
        assert_eq!(body["error"]["details"]["rollout"], id.as_str());
        let waves: Vec<usize> = rollout["waves"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["clients"].as_array().unwrap().len())
            .collect();
        assert_eq!(waves, [1, 2, 1]);
        assert_eq!(rollout["waves"][0]["canary"], true);

        // Production clients updating early do not move the rollout past the canary.
        report(&app, "a", "31.0.2").await;
        report(&app, "dev", "31.0.2").await;
        let waiting = rollout_until(&app, &id, "the canary wave to finish", |r| {
            r["status"] == "awaiting_promotion"
        })
        .await;
        assert_eq!(waiting["waves"][1]["clients"][0]["state"], "pending");
        let early = app
            .post_json(&format!("/api/v1/rollouts/{id}/resume"), json!({}))
            .await;
        assert_error(early, 409, "ROLLOUT_CONFLICT").await;

        // State survives a restart.
        let app = app.restart().await;
        let after = ok_json(app.get(&format!("/api/v1/rollouts/{id}")).await).await;
        assert_eq!(after["status"], "awaiting_promotion");

        ok_json(
            app.post_json(&format!("/api/v1/rollouts/{id}/promote"), json!({}))
                .await,
        )
        .await;
        report(&app, "b", "31.0.2").await;
        rollout_until(&app, &id, "the first production wave", |r| {
            r["current_wave"] == 2
        })
        .await;
        report(&app, "c", "31.0.2").await;
        let done = rollout_until(&app, &id, "completion", |r| r["status"] == "completed").await;
        assert!(done["waves"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["clients"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["state"] == "done")));
        let listed = ok_json(app.get("/api/v1/rollouts?status=completed").await).await;
        assert_eq!(listed[0]["id"], id.as_str());
        let audit = ok_json(app.get("/api/v1/audit?action=rollout.promote").await).await;
        assert_eq!(audit["items"].as_array().unwrap().len(), 1);
        assert_error(
            app.get("/api/v1/rollouts/not-an-id").await,
            404,
            "ROLLOUT_NOT_FOUND",
        )
        .await;
    }

    on_both_stores!(fast);
}

mod a_failing_canary_halts_before_production {
    use super::*;

    async fn body(app: TestApp) {
        // The canary's URL answers 500 once it is checked.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let broken = axum::Router::new()
                .fallback(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "broken") });
            axum::serve(listener, broken).await.unwrap();
        });
        deployed(
            &app,
            "dev",
            "canary",
            json!({"nextcloud": format!("http://127.0.0.1:{port}/status")}),
        )
        .await;
        deployed(&app, "prod-a", "production", json!({})).await;
        let rollout = ok_json(
            app.post_json(
                "/api/v1/rollouts",
                json!({"app": "nextcloud", "version": "31.0.2"}),
            )
            .await,
        )
        .await;
        let id = rollout["id"].as_str().unwrap().to_owned();
        report(&app, "dev", "31.0.2").await;
        report(&app, "prod-a", "31.0.2").await;
        let halted = rollout_until(&app, &id, "the rollout to halt", |r| {
            r["status"] == "halted"
        })
        .await;
        assert!(
            halted["halted_reason"]
                .as_str()
                .unwrap()
                .contains("canary dev"),
            "{halted}"
        );
        assert_eq!(halted["waves"][0]["clients"][0]["state"], "failed");
        assert_eq!(
            halted["waves"][1]["clients"][0]["state"], "pending",
            "production never started"
        );
        let promote = app
            .post_json(&format!("/api/v1/rollouts/{id}/promote"), json!({}))
            .await;
        assert_error(promote, 409, "ROLLOUT_CONFLICT").await;
        server.abort();
    }

    on_both_stores!(fast);
}
