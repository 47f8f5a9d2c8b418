//! A real readiness target: Debian's `prometheus` (installed by
//! `scripts/install-test-deps.sh`) as a cluster's `prometheus_url`. Healthy while
//! it runs, DEGRADED (score 80) once it is stopped.
//!
//! Skipped with a printed line when the binary is missing, unless
//! `FLEETREG_REQUIRE_PROMETHEUS=1` (CI), where that fails.

use crate::helpers::TestApp;
use fleetreg_server::settings::Settings;
use fleetreg_sim::{ClusterSpec, SpawnedSim};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// A Prometheus server on a free loopback port with its own data directory,
/// killed on drop.
struct RealPrometheus {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
}

impl RealPrometheus {
    /// Starts `prometheus` and waits until `/-/ready` answers 200; `None` when the
    /// binary is not installed (and not required).
    async fn start() -> Option<RealPrometheus> {
        let binary = std::env::var("FLEETREG_PROMETHEUS_BIN").unwrap_or("prometheus".into());
        if Command::new(&binary).arg("--version").output().is_err() {
            let required = std::env::var("FLEETREG_REQUIRE_PROMETHEUS").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "FLEETREG_REQUIRE_PROMETHEUS=1 but `{binary}` cannot be run; run scripts/install-test-deps.sh"
            );
            eprintln!(
                "skipped: `{binary}` not installed (scripts/install-test-deps.sh installs it)"
            );
            return None;
        }
        let data = tempfile::tempdir().unwrap();
        let config = data.path().join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
        let port = fleetreg_testkit::free_port();
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let prometheus = RealPrometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _data: data,
        };
        prometheus.wait_ready().await;
        Some(prometheus)
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = client.get(format!("{}/-/ready", self.url)).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RealPrometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

fn manual(settings: &mut Settings) {
    settings.health_check.enabled = false;
    settings.health_check.timeout_seconds = Some(3);
}

async fn refresh(app: &TestApp, id: &str) -> Value {
    let response = app
        .client
        .post(app.url(&format!("/api/v1/clusters/{id}/refresh")))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "refresh: {body}");
    body
}

mod real_prometheus_healthy_then_stopped {
    use super::*;

    async fn body(app: TestApp) {
        let Some(mut prometheus) = RealPrometheus::start().await else {
            return;
        };
        let sim = SpawnedSim::start().await.unwrap();
        let view = sim
            .admin()
            .create_cluster("with-real-prometheus", ClusterSpec::default())
            .await
            .unwrap();
        let created = app
            .register(
                &view.name,
                json!({
                    "api_server_url": view.api_server_url,
                    "endpoints": { "prometheus_url": prometheus.url },
                }),
            )
            .await;
        let id = created["id"].as_str().unwrap();

        let cluster = refresh(&app, id).await;
        assert_eq!(cluster["status"]["state"], "ONLINE", "{cluster}");
        assert_eq!(cluster["status"]["health_score"], 100);
        assert_eq!(cluster["status"]["prometheus_healthy"], true);

        prometheus.stop();
        let cluster = refresh(&app, id).await;
        assert_eq!(cluster["status"]["state"], "DEGRADED", "{cluster}");
        assert_eq!(cluster["status"]["health_score"], 80);
        assert_eq!(cluster["status"]["prometheus_healthy"], false);
        let reason = cluster["status"]["reason"].as_str().unwrap_or_default();
        assert!(reason.to_lowercase().contains("prometheus"), "{reason}");
    }

    on_both_stores!(manual);
}
