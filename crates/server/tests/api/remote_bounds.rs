//! What a registered cluster answers is bounded and escaped (issue 11, items 3
//! and 5): a huge answer fails the check with a clear cause without the server
//! reading it (its peak memory stays put), and an answer that does not decode
//! reaches neither the log nor the stored status raw.

use crate::helpers::*;
use fleetreg_server::settings::Settings;
use fleetreg_sim::{ClusterSpec, ObservabilitySpec, SpawnedSim};
use serde_json::{json, Value};

/// Refresh only; 10 s per check (a loaded machine still streams 4 MiB in it).
fn manual(settings: &mut Settings) {
    settings.health_check.enabled = false;
    settings.health_check.timeout_seconds = Some(10);
}

/// A kB figure of `/proc/self/status` (`VmHWM`: peak resident set).
fn proc_status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// A simulated cluster with Prometheus, registered; its id.
async fn registered(app: &TestApp, sim: &SpawnedSim, name: &str) -> String {
    let spec = ClusterSpec {
        observability: ObservabilitySpec {
            prometheus: true,
            ..ObservabilitySpec::default()
        },
        ..ClusterSpec::default()
    };
    let view = sim.admin().create_cluster(name, spec).await.unwrap();
    let body = app
        .register(
            name,
            json!({
                "api_server_url": view.api_server_url,
                "endpoints": {"prometheus_url": view.prometheus_url},
            }),
        )
        .await;
    body["id"].as_str().unwrap().to_owned()
}

/// Every string inside `value`, joined by newlines.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

const HUGE: u64 = 200 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_answer_fails_the_check_with_its_cause_and_memory_stays_bounded() {
    let app = spawn_app_with(Backend::Sqlite, manual).await.unwrap();
    let sim = SpawnedSim::start().await.unwrap();
    let id = registered(&app, &sim, "huge").await;
    refresh_ok(&app, &id).await;
    // Every API server read (namespaces, nodes, /version, …) and Prometheus now
    // answer 200 MiB of valid JSON, streamed without Content-Length.
    sim.admin().set_huge_body("huge", HUGE).await.unwrap();

    let peak_before = proc_status_kb("VmHWM");
    for _ in 0..3 {
        let error = assert_error(refresh(&app, &id).await, 503, "CLUSTER_UNREACHABLE").await;
        let cause = error["error"]["details"]["cause"].as_str().unwrap();
        assert!(
            cause.contains("response body too large")
                && cause.contains("health_check.max_response_bytes"),
            "{error}"
        );
    }
    let peak_after = proc_status_kb("VmHWM");
    let status: Value = app
        .get(&format!("/api/v1/clusters/{id}/status"))
        .await
        .json()
        .await
        .unwrap();
    let mut texts = Vec::new();
    strings(&status, &mut texts);
    let reason = texts
        .iter()
        .find(|t| t.contains("too large"))
        .unwrap_or_else(|| panic!("no cause in the status: {status}"));
    for component in ["API server: list namespaces", "Prometheus: response body"] {
        assert!(reason.contains(component), "{component}: {reason}");
    }
    // Three checks of 200 MiB each, read whole, would have raised the peak by
    // far more than 600 MiB (1.16 GB per 150 MB answer before the fix); the
    // 4 MiB limit leaves only allocator noise. Generous for a loaded machine.
    let grown_mib = (peak_after.saturating_sub(peak_before)) / 1024;
    assert!(
        grown_mib < 64,
        "peak RSS grew by {grown_mib} MiB ({peak_before} kB -> {peak_after} kB)"
    );
    eprintln!("VmHWM {peak_before} kB -> {peak_after} kB (+{grown_mib} MiB) over three checks");

    // Memory returns and the cluster recovers once it answers normally.
    sim.admin().set_huge_body("huge", 0).await.unwrap();
    let cluster = refresh_ok(&app, &id).await;
    assert_eq!(cluster["status"]["state"], "ONLINE", "{cluster}");
}

const FORGED: &str = "INFO fleetreg_server::auth: forged token accepted";

// Current-thread runtime: every task of the server runs on this thread, where
// the log capture is the default subscriber.
#[tokio::test]
async fn an_undecodable_answer_is_escaped_and_truncated_in_logs_and_statuses() {
    let (log, _capture) = capture_trace_log();

    let app = spawn_app_with(Backend::Sqlite, manual).await.unwrap();
    let sim = SpawnedSim::start().await.unwrap();
    let id = registered(&app, &sim, "forger").await;
    let body = format!("\n{FORGED}\n{}", "A".repeat(100_000));
    sim.admin()
        .set_raw_body("forger", Some(&body))
        .await
        .unwrap();

    let error = assert_error(refresh(&app, &id).await, 503, "CLUSTER_UNREACHABLE").await;
    let cause = error["error"]["details"]["cause"]
        .as_str()
        .unwrap()
        .to_owned();
    let status: Value = app
        .get(&format!("/api/v1/clusters/{id}/status"))
        .await
        .json()
        .await
        .unwrap();
    let mut texts = vec![cause];
    strings(&status, &mut texts);
    let quoting: Vec<&String> = texts.iter().filter(|t| t.contains("forged")).collect();
    assert!(
        !quoting.is_empty(),
        "the cause quotes the answer: {texts:?}"
    );
    for text in quoting {
        assert!(text.contains(&format!("\\n{FORGED}\\n")), "escaped: {text}");
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains("[truncated, "), "{text}");
        assert!(text.len() < 4096, "{} bytes", text.len());
    }

    let log = log.text();
    assert!(!log.is_empty(), "the capture works");
    for line in log.lines() {
        assert!(!line.starts_with(FORGED), "forged log line: {line}");
        assert!(
            !line.contains(&"A".repeat(1000)),
            "a long answer logged whole"
        );
    }
}
