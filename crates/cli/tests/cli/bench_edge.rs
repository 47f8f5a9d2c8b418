//! `fleetreg bench --scenario edge-push` (crates/bench/src/edge_push.rs)
//! against a real `fleetreg serve`, small: 5 simulated agents (2 VPS, 3
//! laptops), 2 routing changes, a 1 s idle window. It lives here because
//! only this crate can start the binary; it keeps the scenario working as
//! the edge API moves, and checks that it cleans up after itself.

use crate::common::{ADMIN_TOKEN, FLEETREG};
use fleetreg_testkit::spawn::{http_get, Server};
use serde_json::Value;
use tempfile::TempDir;

fn row<'a>(report: &'a Value, scenario: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["scenario"] == scenario))
        .unwrap_or_else(|| panic!("no {scenario} row in {report:#}"))
}

#[test]
fn edge_push_runs_against_a_real_server_and_removes_what_it_registered() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "edge.db");
    let run = server.ok_run(&[
        "bench",
        "--token",
        ADMIN_TOKEN,
        "--scenario",
        "edge-push",
        "--edge-agents",
        "5",
        "--edge-changes",
        "2",
        "--edge-idle-secs",
        "1",
        "--json",
    ]);
    let report = run.json();

    let push = row(&report, "edge-push");
    assert_eq!(push["requests"], 10, "2 changes x 5 agents: {push:#}");
    assert_eq!(push["failed"], 0, "{push:#}\n{}", run.stderr);
    assert!(push["p99_ms"].as_f64().is_some(), "{push:#}");
    assert_eq!(
        push["details"]["last_agent_ms"].as_array().map(Vec::len),
        Some(2)
    );

    let idle = row(&report, "edge-idle");
    assert_eq!(idle["failed"], 0, "{idle:#}\n{}", run.stderr);
    assert!(
        idle["value"]
            .as_str()
            .is_some_and(|v| v.contains("KB/agent")),
        "the server's memory is read from /proc: {idle:#}"
    );

    let restart = row(&report, "edge-restart");
    assert_eq!(restart["requests"], 3, "{restart:#}");
    assert_eq!(restart["failed"], 0, "{restart:#}\n{}", run.stderr);

    let reconcile = row(&report, "edge-reconcile");
    assert_eq!(reconcile["requests"], 5, "{reconcile:#}");
    assert_eq!(reconcile["failed"], 0, "{reconcile:#}\n{}", run.stderr);
    assert!(
        reconcile["notes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n
                .as_str()
                .is_some_and(|n| n.starts_with("removed the service"))),
        "cleanup: {reconcile:#}"
    );

    // Nothing of the run is left behind.
    let nodes = server.json(&["node", "list"]);
    let listed = nodes["items"].as_array().or(nodes.as_array()).map(Vec::len);
    assert_eq!(listed, Some(0), "{nodes:#}");
    let health = http_get(&server.url, "/health").unwrap_or_default();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
}
