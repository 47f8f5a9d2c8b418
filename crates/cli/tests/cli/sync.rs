//! Hosts, deployments and safe deregistration as a user runs them (seed
//! cluster-lifecycle-deregistration.md) against a real `fleetreg serve`: the
//! blocked report with its table and three options (whose commands work as
//! printed), the refusal without --yes, the dry run, the deregistration and
//! what it removed; sync status, hosts, the leader lease, orphaned hosts and
//! the gauges docs/alerts/fleetreg-rules.yml alerts on, which promtool checks.

use crate::common::FLEETREG;
use fleetreg_testkit::skip_or_fail;
use fleetreg_testkit::spawn::{http_get, Run, Server};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// docs/examples/registry.yml: the clients acme, beta, dev and oldco.
fn registry() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/registry.yml");
    path.to_str().expect("UTF-8 path").to_owned()
}

/// docs/alerts.
fn alerts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/alerts")
}

fn id(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_owned()
}

/// The words of the line of `text` that starts with `first`, if any.
fn row<'a>(text: &'a str, first: &str) -> Option<Vec<&'a str>> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|words| words.first() == Some(&first))
}

/// Cluster prod-host-1 with host node-a running acme (sync on, one good full
/// sync of 120 rows) and beta (sync off): (cluster id, host id, acme, beta).
fn seed_fleet(server: &Server) -> (String, String, String, String) {
    let cluster = server.json(&[
        "cluster",
        "register",
        "prod-host-1",
        "--api-server-url",
        "https://api.prod-host-1.example.com:6443",
    ]);
    server.ok(&["client", "import", &registry()]);
    let host = server.json(&[
        "host",
        "register",
        "prod-host-1",
        "node-a",
        "--address",
        "10.0.0.5",
    ]);
    let host_id = id(&host);
    let acme = server.json(&[
        "deployment",
        "create",
        &host_id,
        "--client",
        "acme",
        "--container",
        "openwebui-acme",
        "--sync",
    ]);
    assert_eq!(acme["sync_enabled"], true);
    let beta = server.json(&[
        "deployment",
        "create",
        &host_id,
        "--client",
        "beta",
        "--container",
        "openwebui-beta",
    ]);
    assert_eq!(beta["sync_enabled"], false);
    let job = server.json(&["deployment", "sync", &id(&acme), "--kind", "full"]);
    assert_eq!(job["status"], "running");
    let done = server.json(&[
        "deployment",
        "finish",
        &id(&job),
        "--status",
        "success",
        "--rows",
        "120",
    ]);
    assert_eq!(
        (done["status"].as_str(), done["rows"].as_i64()),
        (Some("success"), Some(120))
    );
    (id(&cluster), host_id, id(&acme), id(&beta))
}

/// The seed's report: the table of sync clients, the three options, and for
/// the client the command of each; exit 1 with `error: CLUSTER_HAS_SYNC_CLIENTS`.
fn assert_blocked(run: &Run, acme: &str) {
    run.assert_error("CLUSTER_HAS_SYNC_CLIENTS");
    let text = &run.stderr;
    assert_eq!(
        row(text, "client_name"),
        Some(vec![
            "client_name",
            "container_name",
            "last_sync_at",
            "status"
        ]),
        "{text}"
    );
    let acme_row = row(text, "acme").unwrap_or_else(|| panic!("no acme row:\n{text}"));
    assert_eq!(acme_row[1], "openwebui-acme", "{text}");
    assert_eq!(acme_row.last(), Some(&"success"), "{text}");
    assert!(
        !text.contains("openwebui-beta"),
        "beta does not sync:\n{text}"
    );
    for option in ["Option 1:", "Option 2:", "Option 3:"] {
        assert_eq!(text.matches(option).count(), 1, "{option}:\n{text}");
    }
    for command in [
        format!("fleetreg deployment pause {acme}"),
        format!("fleetreg deployment move {acme} --host NEW_HOST_ID"),
        format!("fleetreg deployment delete {acme}"),
    ] {
        assert!(text.contains(&command), "{command}:\n{text}");
    }
}

#[test]
fn deregistration_is_blocked_explained_previewed_refused_then_done() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "sync.db");
    let (_cluster_id, _host, acme, beta) = seed_fleet(&server);

    // The sync status lists the host, both deployments and the job.
    let status = server.ok(&["cluster", "sync-status", "prod-host-1"]);
    let host_row = row(&status, "node-a").unwrap_or_else(|| panic!("{status}"));
    assert_eq!(host_row[1], "10.0.0.5", "{status}");
    assert!(status.contains("Leader:   none"), "{status}");
    let acme_row = row(&status, "acme").unwrap_or_else(|| panic!("{status}"));
    assert_eq!(
        &acme_row[..4],
        ["acme", "openwebui-acme", "node-a", "on"],
        "{status}"
    );
    assert!(acme_row.contains(&"success"), "{status}");
    let beta_row = row(&status, "beta").unwrap_or_else(|| panic!("{status}"));
    assert_eq!(
        &beta_row[..4],
        ["beta", "openwebui-beta", "node-a", "off"],
        "{status}"
    );
    assert!(status.contains("Recent sync jobs"), "{status}");
    let json = server.json(&["cluster", "sync-status", "prod-host-1"]);
    assert_eq!(json["hosts"].as_array().map(Vec::len), Some(1));
    assert_eq!(json["deployments"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["recent_jobs"][0]["rows"], 120);

    // Blocked, with the seed's report, by deregister, its dry run and delete.
    assert_blocked(
        &server.run(&["cluster", "deregister", "prod-host-1"]),
        &acme,
    );
    assert_blocked(
        &server.run(&["cluster", "deregister", "prod-host-1", "--dry-run"]),
        &acme,
    );
    assert_blocked(
        &server.run(&["cluster", "deregister", "prod-host-1", "--yes"]),
        &acme,
    );
    let run = server.run(&["cluster", "delete", "prod-host-1"]);
    assert_blocked(&run, &acme);
    server.ok(&["cluster", "get", "prod-host-1"]);

    // Option 1 exactly as printed.
    let printed = run
        .stderr
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("fleetreg deployment pause "))
        .expect("the pause command");
    let argv: Vec<&str> = printed
        .split('#')
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .collect();
    let paused = server.ok(&argv);
    assert!(
        row(&paused, "Sync:") == Some(vec!["Sync:", "off"]),
        "{paused}"
    );

    // Without --yes and with stdin closed: the preview, then a refusal.
    let run = server.run(&["cluster", "deregister", "prod-host-1"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("without --yes"), "{}", run.stderr);
    assert!(
        run.stdout.contains("1 host record(s): node-a"),
        "{}",
        run.stdout
    );
    server.ok(&["cluster", "get", "prod-host-1"]);

    // The dry run shows what goes and deletes nothing.
    let out = server.ok(&["cluster", "deregister", "prod-host-1", "--dry-run"]);
    for line in [
        "Safety check passed",
        "2 client deployment(s) registered with sync disabled",
        "- 1 host record(s): node-a",
        "- 2 client deployment record(s) (sync disabled)",
        "- 1 sync job(s) of those deployments",
        "Dry run: nothing was deleted",
    ] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
    assert!(
        row(&out, "acme").is_some() && row(&out, "beta").is_some(),
        "{out}"
    );
    let preview = server.json(&["cluster", "deregister", "prod-host-1", "--dry-run"]);
    assert_eq!(preview["dry_run"], true);
    assert_eq!(preview["hosts"][0]["hostname"], "node-a");
    assert_eq!(preview["sync_jobs"], 1);
    let still = server.json(&["cluster", "sync-status", "prod-host-1"]);
    assert_eq!(still["deployments"].as_array().map(Vec::len), Some(2));

    // delete refuses what cascades, pointing at deregister.
    let run = server.run(&["cluster", "delete", "prod-host-1"]);
    run.assert_error("CONFIRMATION_REQUIRED");
    assert!(
        run.stderr
            .contains("fleetreg cluster deregister prod-host-1"),
        "{}",
        run.stderr
    );

    // --yes deregisters and says what went with it.
    let out = server.ok(&["cluster", "deregister", "prod-host-1", "--yes"]);
    assert!(
        out.starts_with("Cluster prod-host-1 deregistered ("),
        "{out}"
    );
    assert!(
        out.contains(
            "Removed with it: 1 host(s) (node-a), 2 deployment(s) (acme, beta), 1 sync job(s), \
             0 conflict(s), 0 leader record(s)."
        ),
        "{out}"
    );
    server
        .run(&["cluster", "get", "prod-host-1"])
        .assert_error("CLUSTER_NOT_FOUND");
    for deployment in [&acme, &beta] {
        server
            .run(&["deployment", "show", deployment])
            .assert_error("DEPLOYMENT_NOT_FOUND");
    }
    // A cluster without hosts deletes as before.
    server.ok(&[
        "cluster",
        "register",
        "plain",
        "--api-server-url",
        "https://api.plain.example.com:6443",
    ]);
    let out = server.ok(&["cluster", "delete", "plain"]);
    assert!(out.starts_with("cluster plain deleted"), "{out}");
}

/// A configuration whose hosts are orphaned after 1 s of silence, checked every second.
fn quick_orphans(dir: &Path) -> String {
    let path = dir.join("fleetreg.yaml");
    std::fs::write(
        &path,
        "cluster_registry:\n  sync:\n    orphan_after_seconds: 1\n    orphan_check_seconds: 1\n",
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

fn metrics(server: &Server) -> String {
    http_get(&server.url, "/metrics").expect("/metrics answers")
}

/// Polls `check` for up to 15 s.
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn hosts_leader_moves_orphans_and_the_sync_gauges() {
    let dir = TempDir::new().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hosts.db").display());
    let config = quick_orphans(dir.path());
    let server = Server::start_with(
        FLEETREG,
        dir.path(),
        &[
            "--config",
            &config,
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &url,
            "--no-health-checks",
        ],
    );
    let (_cluster, host, acme, _beta) = seed_fleet(&server);

    // Hosts: listed, a heartbeat, the leader lease.
    let hosts = server.json(&["host", "list", "prod-host-1"]);
    assert_eq!(hosts[0]["hostname"], "node-a");
    let beat = server.json(&["host", "heartbeat", &host]);
    assert!(beat["last_heartbeat_at"].is_string(), "{beat}");
    let leader = server.ok(&[
        "cluster",
        "leader",
        "prod-host-1",
        "--host",
        &host,
        "--lease-seconds",
        "30",
    ]);
    assert_eq!(
        row(&leader, "Leader:"),
        Some(vec!["Leader:", "node-a"]),
        "{leader}"
    );
    assert_eq!(row(&leader, "Term:"), Some(vec!["Term:", "1"]), "{leader}");
    let status = server.ok(&["cluster", "sync-status", "prod-host-1"]);
    assert!(
        status.contains("Leader:   node-a (term 1), lease expires in "),
        "{status}"
    );

    // Orphaned after a second of silence: listed with the cluster, marked in
    // the sync status, counted by the gauge; a heartbeat recovers it.
    let listed = eventually("node-a to be orphaned", || {
        let run = server.ok_run(&["host", "orphaned", "-o", "json"]);
        let hosts = run.json();
        (hosts.as_array().map(Vec::len) == Some(1)).then_some(hosts)
    });
    assert_eq!(listed[0]["id"], host.as_str());
    let table = server.ok(&["host", "orphaned"]);
    let orphan = row(&table, "prod-host-1").unwrap_or_else(|| panic!("{table}"));
    assert_eq!(orphan[1], "node-a", "{table}");
    let status = server.ok(&["cluster", "sync-status", "prod-host-1"]);
    assert!(
        row(&status, "node-a").unwrap().contains(&"ORPHANED"),
        "{status}"
    );
    assert!(metrics(&server).contains("\nfleetreg_orphaned_hosts 1\n"));
    let back = server.json(&["host", "heartbeat", &host]);
    assert_eq!(back["orphaned"], false);

    // Three failed syncs in a row: the sync-failing gauge counts the deployment.
    assert!(metrics(&server).contains("\nfleetreg_sync_failing_deployments 0\n"));
    for _ in 0..3 {
        let job = server.json(&["deployment", "sync", &acme]);
        assert_eq!(job["kind"], "incremental");
        server.ok(&[
            "deployment",
            "finish",
            &id(&job),
            "--status",
            "failed",
            "--error",
            "connection reset",
        ]);
    }
    let failing = server.json(&["deployment", "show", &acme]);
    assert_eq!(failing["consecutive_failures"], 3);
    assert!(metrics(&server).contains("\nfleetreg_sync_failing_deployments 1\n"));
    let status = server.ok(&["cluster", "sync-status", "prod-host-1"]);
    assert!(status.contains("connection reset"), "{status}");

    // Every metric the alert rules use is served.
    let rules: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(alerts_dir().join("fleetreg-rules.yml")).unwrap(),
    )
    .unwrap();
    let text = metrics(&server);
    let mut alerts = 0;
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            let metric = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .find(|w| w.starts_with("fleetreg_"))
                .unwrap();
            assert!(
                text.contains(&format!("\n{metric} ")) || text.contains(&format!("\n{metric}{{")),
                "{metric} not in /metrics"
            );
            alerts += 1;
        }
    }
    assert_eq!(alerts, 3);

    // Conflicts, enable and a move to another cluster's host (remediation 2).
    let none = server.ok_run(&["deployment", "conflicts", &acme]);
    assert!(
        none.stderr.contains("no conflicts recorded"),
        "{}",
        none.stderr
    );
    server.ok(&[
        "cluster",
        "register",
        "prod-host-2",
        "--api-server-url",
        "https://api.prod-host-2.example.com:6443",
    ]);
    let target = server.json(&["host", "register", "prod-host-2", "node-b"]);
    let moved = server.json(&["deployment", "move", &acme, "--host", &id(&target)]);
    assert_eq!(moved["host_id"], target["id"]);
    assert_eq!(moved["sync_enabled"], true);
    let paused = server.json(&["deployment", "pause", &acme]);
    assert_eq!(paused["last_sync_status"], "stopped");
    let enabled = server.json(&["deployment", "enable", &acme]);
    assert_eq!(enabled["sync_enabled"], true);
    let out = server.ok(&["deployment", "delete", &acme]);
    assert!(
        out.contains("of client acme (openwebui-acme) deleted"),
        "{out}"
    );
    server
        .run(&["host", "heartbeat", "not-a-host"])
        .assert_error("HOST_NOT_FOUND");
}

/// `promtool` (Debian's prometheus package), or `FLEETREG_PROMTOOL_BIN`.
fn promtool() -> Option<String> {
    let binary = std::env::var("FLEETREG_PROMTOOL_BIN").unwrap_or_else(|_| "promtool".into());
    if Command::new(&binary).arg("--version").output().is_ok() {
        return Some(binary);
    }
    skip_or_fail(
        "FLEETREG_REQUIRE_PROMETHEUS",
        &format!("`{binary}` cannot be run"),
        "scripts/install-test-deps.sh installs it (Debian's prometheus package)",
    );
    None
}

#[test]
fn sync_alert_rules_pass_promtool_and_the_orphan_alert_fires() {
    let Some(promtool) = promtool() else {
        return;
    };
    for args in [
        ["check", "rules", "fleetreg-rules.yml"],
        ["test", "rules", "fleetreg-rules.test.yml"],
    ] {
        let output = Command::new(&promtool)
            .args(args)
            .current_dir(alerts_dir())
            .output()
            .expect("run promtool");
        let run = Run::from_output(output);
        assert_eq!(run.code, 0, "promtool {args:?}: {}", run.all());
        assert!(
            run.all().contains("SUCCESS"),
            "promtool {args:?}: {}",
            run.all()
        );
    }
    let tests = std::fs::read_to_string(alerts_dir().join("fleetreg-rules.test.yml")).unwrap();
    assert!(tests.contains("alertname: FleetregOrphanedHosts"));
}
