//! `fleetreg client drift` against a real `fleetreg serve` holding the
//! example registry: the sample `tofu show -json` output
//! (crates/cli/tests/data/tofu-show.json) differs exactly where it was made
//! to (acme rebuilt: ip and id; beta resized: type), exit status 3; `--apply`
//! fixes those and a second run is in sync (exit 0); servers and clients
//! missing on either side are reported and left alone by `--apply`.

use crate::common::FLEETREG;
use fleetreg_testkit::spawn::Server;
use serde_json::{json, Value};
use std::path::PathBuf;
use tempfile::TempDir;

fn data(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    path.to_str().expect("UTF-8 path").to_owned()
}

fn example() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/registry.yml");
    path.to_str().expect("UTF-8 path").to_owned()
}

/// `(client, field, registry, state)` of each difference in a JSON report.
fn differences(report: &Value) -> Vec<(String, String, Value, String)> {
    let mut out = Vec::new();
    for client in report["differing"].as_array().expect("differing") {
        for field in client["fields"].as_array().expect("fields") {
            out.push((
                client["client"].as_str().unwrap().to_owned(),
                field["field"].as_str().unwrap().to_owned(),
                field["registry"].clone(),
                field["state"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

#[test]
fn drift_report_apply_and_in_sync() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "drift.db");
    server.ok(&["client", "import", &example()]);
    let state = data("tofu-show.json");

    // The report: exactly the deliberate differences; oldco (destroyed, no
    // server) is not reported.
    let run = server.run(&["client", "drift", "--tofu-state", &state]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert_eq!(
        run.stdout,
        "CLIENT  FIELD        REGISTRY      STATE\n\
         acme    server.ip    203.0.113.21  203.0.113.121\n\
         acme    server.id    12345678      48151623\n\
         beta    server.type  cx22          cx32\n"
    );
    assert!(run.stderr.contains("2 clients differ"), "{}", run.stderr);
    assert!(run.stderr.contains("--apply"), "{}", run.stderr);
    let run = server.run(&["client", "drift", "--tofu-state", &state, "-o", "json"]);
    assert_eq!(run.code, 3, "{}", run.all());
    let report = run.json();
    assert_eq!(report["in_sync"], false);
    assert_eq!(
        differences(&report),
        [
            (
                "acme".into(),
                "server.ip".into(),
                json!("203.0.113.21"),
                "203.0.113.121".into()
            ),
            (
                "acme".into(),
                "server.id".into(),
                json!("12345678"),
                "48151623".into()
            ),
            (
                "beta".into(),
                "server.type".into(),
                json!("cx22"),
                "cx32".into()
            ),
        ]
    );
    for empty in ["only_in_state", "only_in_registry", "destroyed_in_registry"] {
        assert_eq!(report[empty], json!([]), "{empty}");
    }
    // Nothing changed without --apply.
    let acme = server.json(&["client", "show", "acme"]);
    assert_eq!(acme["server"]["ip"], "203.0.113.21");

    // --apply: the registry takes the state's values, the rest is kept.
    let run = server.run(&["client", "drift", "--tofu-state", &state, "--apply"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with(
            "updated acme: server.ip 203.0.113.21 → 203.0.113.121, server.id 12345678 → 48151623 (revision "
        ),
        "{}",
        run.stdout
    );
    assert!(
        lines[1].starts_with("updated beta: server.type cx22 → cx32 (revision "),
        "{}",
        run.stdout
    );
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    let acme = server.json(&["client", "show", "acme"]);
    assert_eq!(
        acme["server"],
        json!({"type": "cx32", "location": "fsn1", "ip": "203.0.113.121", "id": "48151623"})
    );
    assert_eq!(acme["status"], "deployed");
    let beta = server.json(&["client", "show", "beta"]);
    assert_eq!(beta["server"]["type"], "cx32");
    assert_eq!(beta["status"], "maintenance", "only the server changes");

    // A second run: in sync.
    let run = server.run(&["client", "drift", "--tofu-state", &state]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        run.stdout,
        "in sync: the registry's 4 clients match the state's 3 servers\n"
    );
    let report = server.json(&["client", "drift", "--tofu-state", &state]);
    assert_eq!(report["in_sync"], true);

    // From stdin, with dev's server gone and a server the registry lacks:
    // reported, and --apply creates and deletes nothing.
    let mut document: Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let root = &mut document["values"]["root_module"]["resources"];
    let mut newco = root[0].clone();
    newco["address"] = json!("hcloud_server.client[\"newco\"]");
    newco["index"] = json!("newco");
    newco["values"]["name"] = json!("newco");
    newco["values"]["ipv4_address"] = json!("203.0.113.60");
    root[0] = newco;
    let text = document.to_string();
    for apply in [false, true] {
        let mut args = vec!["client", "drift", "--tofu-state", "-"];
        if apply {
            args.push("--apply");
        }
        let run = server.run_with_stdin(&args, &text);
        assert_eq!(run.code, 3, "{}", run.all());
        assert!(
            run.stdout.contains(
                "Servers in the state with no client in the registry:\n  \
                 newco  203.0.113.60  hcloud_server.client[\"newco\"]\n"
            ),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout
                .contains("Clients with no server in the state:\n  dev (deployed)\n"),
            "{}",
            run.stdout
        );
        assert!(
            run.stderr.contains("1 servers only in the state"),
            "{}",
            run.stderr
        );
    }
    server
        .run(&["client", "show", "newco"])
        .assert_error("CLIENT_NOT_FOUND");
    assert_eq!(server.json(&["client", "list"])["total"], 4);

    // Not `tofu show -json` output: an error before anything is sent.
    let run = server.run(&["client", "drift", "--tofu-state", &example()]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("is not JSON"), "{}", run.stderr);
}
