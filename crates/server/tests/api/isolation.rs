//! `health_check.allowed_networks` end to end: a cluster whose API server is not
//! allowed is never contacted, `refresh` answers 503 `CLUSTER_UNREACHABLE` naming
//! the block, and the recorded status says why. The "blocked" API server is a
//! real listener on 127.0.0.1 counting connections; only 127.0.0.2 is allowed.

use crate::helpers::{assert_error, TestApp};
use fleetreg_server::settings::Settings;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const BLOCKED: &str = "blocked by health_check.allowed_networks";

fn only_127_0_0_2(settings: &mut Settings) {
    settings.health_check.enabled = false;
    settings.health_check.timeout_seconds = Some(3);
    settings.health_check.allowed_networks = vec!["127.0.0.2/32".into()];
}

/// A listener on 127.0.0.1 that accepts, counts and drops connections.
async fn trap() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, accepted)
}

async fn refresh(app: &TestApp, id: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/v1/clusters/{id}/refresh")))
        .send()
        .await
        .unwrap()
}

mod a_blocked_cluster_is_never_contacted {
    use super::*;

    async fn body(app: TestApp) {
        let (port, accepted) = trap().await;
        for (name, host, expected) in [
            (
                "by-address",
                "127.0.0.1",
                "127.0.0.1 is not in an allowed network",
            ),
            ("by-name", "localhost", "is not in an allowed network"),
        ] {
            let base = format!("http://{host}:{port}");
            let cluster = app
                .register(
                    name,
                    json!({
                        "api_server_url": base,
                        "endpoints": { "prometheus_url": format!("{base}/prometheus") },
                    }),
                )
                .await;
            let id = cluster["id"].as_str().unwrap();

            let error = assert_error(refresh(&app, id).await, 503, "CLUSTER_UNREACHABLE").await;
            let cause = error["error"]["details"]["cause"].as_str().unwrap();
            assert!(cause.starts_with(BLOCKED), "{name}: {error}");
            assert!(cause.contains(expected), "{name}: {error}");

            let status: Value = app
                .get(&format!("/api/v1/clusters/{id}/status"))
                .await
                .json()
                .await
                .unwrap();
            let reason = status["reason"].as_str().unwrap_or_default();
            assert!(reason.contains(BLOCKED), "{name}: {status}");
            assert!(reason.contains(expected), "{name}: {status}");
            assert_eq!(status["api_server_healthy"], false, "{status}");
            assert_eq!(status["prometheus_healthy"], false, "{status}");
        }
        // A host written in another form than the one contacted is refused at
        // registration (the probe's own reading of such forms is tested in
        // crates/probe/tests/probe/egress.rs).
        let decimal = app
            .post_cluster(&json!({
                "name": "decimal",
                "api_server_url": format!("http://2130706433:{port}"),
            }))
            .await;
        assert_error(decimal, 400, "VALIDATION_ERROR").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 0, "the trap was contacted");
    }

    on_both_stores!(only_127_0_0_2);
}

#[tokio::test]
async fn an_invalid_entry_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::helpers::test_settings(&format!(
        "sqlite://{}",
        dir.path().join("fleetreg.db").display()
    ));
    settings.health_check.allowed_networks = vec!["10.0.0.0/8".into(), "10.0.0.0/40".into()];
    let error = fleetreg_server::Application::build(settings)
        .await
        .err()
        .expect("start-up fails");
    let message = error.to_string();
    assert!(
        message.contains("health_check.allowed_networks"),
        "{message}"
    );
    assert!(message.contains("\"10.0.0.0/40\""), "{message}");
}
