//! `fleetreg rollout …` against a real `fleetreg serve` whose rollout driver
//! and client health checks run every second: a rollout of the example
//! registry starts with its canary `dev`, waits for promotion once `dev`
//! reports the version and passes a health check, goes to production on
//! `promote`, pauses, resumes and aborts; a command the status does not allow
//! is `ROLLOUT_CONFLICT` with exit status 1.

use crate::common::FLEETREG;
use fleetreg_testkit::spawn::Server;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A local web site answering 200 to every request, for the canary's URLs
/// (its thread lives as long as the test binary).
fn healthy_site() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            });
        }
    });
    port
}

/// docs/examples/registry.yml with the canary dev's URLs on `port`.
fn registry_with_local_canary(dir: &Path, port: u16) -> PathBuf {
    let example =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/registry.yml");
    let text = std::fs::read_to_string(example).expect("docs/examples/registry.yml");
    let mut local = text.clone();
    for (from, to) in [
        ("https://auth.dev.example.org", "auth"),
        ("https://nextcloud.dev.example.org", "nextcloud"),
    ] {
        assert!(text.contains(from), "the example names {from}");
        local = local.replace(from, &format!("http://127.0.0.1:{port}/{to}"));
    }
    let path = dir.join("registry.yml");
    std::fs::write(&path, local).expect("write registry.yml");
    path
}

/// `fleetreg serve` with the rollout driver and client health checks every
/// second, allowed to reach loopback addresses (not `--no-health-checks`:
/// that turns the client health checks off too).
fn fast_server(dir: &Path) -> Server {
    let config = dir.join("fleetreg.yaml");
    std::fs::write(
        &config,
        "cluster_registry:\n  \
           sync:\n    rollout_check_seconds: 1\n  \
           client_health:\n    interval_seconds: 1\n    timeout_seconds: 2\n  \
           health_check:\n    allowed_networks: [\"127.0.0.0/8\"]\n",
    )
    .expect("write config");
    let url = format!("sqlite://{}", dir.join("rollouts.db").display());
    Server::start_with(
        FLEETREG,
        dir,
        &[
            "--config",
            config.to_str().expect("UTF-8 path"),
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &url,
        ],
    )
}

/// Polls `rollout status ID -o json` for up to 30 s until `done` holds.
fn rollout_until(server: &Server, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rollout = server.json(&["rollout", "status", id]);
        if done(&rollout) {
            return rollout;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {rollout:#}\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The words of the line of `text` that starts with `first`.
fn row<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|words| words.first() == Some(&first))
        .unwrap_or_else(|| panic!("no line starting with {first:?} in\n{text}"))
}

#[test]
fn canary_first_promote_pause_resume_abort() {
    let dir = TempDir::new().unwrap();
    let port = healthy_site();
    let registry = registry_with_local_canary(dir.path(), port);
    let server = fast_server(dir.path());
    server.ok(&["client", "import", registry.to_str().unwrap()]);

    let run = server.run(&["rollout", "status"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("no rollouts yet"), "{}", run.stderr);
    server
        .run(&["rollout", "start", "gitea", "1.22"])
        .assert_error("VALIDATION_ERROR");

    // The plan: the canary dev, then production acme (beta is in maintenance,
    // oldco destroyed).
    let started = server.ok(&[
        "rollout",
        "start",
        "nextcloud",
        "31.0.3",
        "--wave-size",
        "1",
    ]);
    assert!(started.contains("STATUS:        running\n"), "{started}");
    assert!(
        started.contains("CURRENT WAVE:  wave 1 of 2 (canary)\n"),
        "{started}"
    );
    let status = server.ok(&["rollout", "status"]);
    assert!(
        status.contains("\nWAVE 1 (canary, current): 0 of 1 done\n"),
        "{status}"
    );
    assert_eq!(row(&status, "dev"), ["dev", "updating", "31.0.2", "-", "-"]);
    assert!(
        status.contains("\nWAVE 2 (production): 0 of 1 done\n"),
        "{status}"
    );
    assert_eq!(
        row(&status, "acme"),
        ["acme", "pending", "30.0.17", "-", "-"]
    );
    assert_eq!(
        row(&status, "CLIENT"),
        ["CLIENT", "STATE", "VERSION", "HEALTH", "REASON"]
    );
    let rollout = server.json(&["rollout", "status"]);
    let id = rollout["id"].as_str().expect("an id").to_owned();
    assert_eq!(rollout["waves"][0]["canary"], true);
    let yaml: Value =
        serde_yaml::from_str(&server.ok(&["rollout", "status", &id, "-o", "yaml"])).expect("YAML");
    assert_eq!(yaml["id"], id.as_str());

    // Production cannot start before the canary is done.
    server
        .run(&["rollout", "promote", &id])
        .assert_error("ROLLOUT_CONFLICT");

    // The canary reports the version; its URLs answer: awaiting promotion.
    server.ok(&["client", "version", "dev", "nextcloud=31.0.3"]);
    rollout_until(&server, &id, "the canary wave to finish", |r| {
        r["status"] == "awaiting_promotion"
    });
    let status = server.ok(&["rollout", "status", &id]);
    assert!(
        status.contains("STATUS:        awaiting_promotion\n"),
        "{status}"
    );
    assert_eq!(
        row(&status, "dev"),
        ["dev", "done", "31.0.3", "HEALTHY", "-"]
    );
    assert!(
        status.contains(&format!("`fleetreg rollout promote {id}`")),
        "{status}"
    );
    let listed = server.ok(&["rollout", "list"]);
    let listed_row = row(&listed, &id);
    assert_eq!(
        listed_row[..6],
        [
            id.as_str(),
            "nextcloud",
            "31.0.3",
            "awaiting_promotion",
            "1/2",
            "1/2"
        ],
        "{listed}"
    );
    assert_eq!(
        row(&listed, "ID"),
        ["ID", "APP", "VERSION", "STATUS", "WAVE", "DONE", "CREATED"]
    );
    let running = server.json(&["rollout", "list", "--status", "running"]);
    assert_eq!(running, serde_json::json!([]));

    // Promote by a unique prefix of the id: production starts.
    let out = server.ok(&["rollout", "promote", &id[..23]]);
    assert_eq!(
        out,
        format!("rollout {id} promoted: status running, wave 2 of 2 (production)\n")
    );
    let status = server.ok(&["rollout", "status", &id]);
    assert_eq!(
        row(&status, "acme"),
        ["acme", "updating", "30.0.17", "-", "-"]
    );
    assert!(
        status.contains("\nWAVE 2 (production, current): 0 of 1 done\n"),
        "{status}"
    );

    let out = server.ok(&["rollout", "pause", &id]);
    assert!(out.contains(" paused: status paused, "), "{out}");
    let paused = server.json(&["rollout", "list", "--status", "Paused"]);
    assert_eq!(paused[0]["id"], id.as_str());
    let out = server.ok(&["rollout", "resume", &id]);
    assert!(out.contains(" resumed: status running, "), "{out}");
    let aborted = server.json(&["rollout", "abort", &id]);
    assert_eq!(aborted["status"], "aborted");
    let run = server.run(&["rollout", "abort", &id]);
    run.assert_error("ROLLOUT_CONFLICT");
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    // A rollout to the canary alone completes once it runs the version and
    // passed a check; aborting a finished rollout is a conflict.
    let only_dev = server.json(&["rollout", "start", "nextcloud", "31.0.3", "--client", "dev"]);
    let second = only_dev["id"].as_str().expect("an id").to_owned();
    assert_eq!(only_dev["waves"].as_array().map(Vec::len), Some(1));
    rollout_until(&server, &second, "completion", |r| {
        r["status"] == "completed"
    });
    let newest = server.json(&["rollout", "status"]);
    assert_eq!(newest["id"], second.as_str(), "status shows the newest");
    server
        .run(&["rollout", "abort", &second])
        .assert_error("ROLLOUT_CONFLICT");
    server
        .run(&["rollout", "status", "00000000-0000-7000-8000-000000000000"])
        .assert_error("ROLLOUT_NOT_FOUND");
    let run = server.run(&["rollout", "status", "not-an-id"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("not a rollout id"), "{}", run.stderr);
}
