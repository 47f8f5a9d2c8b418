//! `fleetreg client …` against a real `fleetreg serve`: import of the seed's
//! example registry, listing in every format and with every filter, stale
//! clients, the lifecycle as the seed's scripts walk it, a refused import
//! (every problem shown, nothing changed) and the export round trip.

use crate::common::{dead_url, fleetreg, FLEETREG};
use fleetreg_testkit::spawn::{Run, Server};
use serde_json::{json, Value};
use std::path::PathBuf;
use tempfile::TempDir;

/// docs/examples/registry.yml.
fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/registry.yml")
}

fn example_text() -> String {
    std::fs::read_to_string(example()).expect("docs/examples/registry.yml")
}

fn names(items: &Value) -> Vec<String> {
    items
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_owned())
        .collect()
}

fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

fn date(text: &str) -> chrono::NaiveDate {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

/// A registry document with every default filled in (as the server reads an
/// entry), ids as strings and apps sorted: two documents meaning the same
/// registry compare equal.
fn normalized(document: &Value) -> Value {
    let mut clients = serde_json::Map::new();
    for (name, entry) in document["clients"].as_object().expect("clients") {
        let get = |key: &str, default: Value| match &entry[key] {
            Value::Null => default,
            value => value.clone(),
        };
        let server = &entry["server"];
        let id = match &server["id"] {
            Value::Number(n) => json!(n.to_string()),
            other => other.clone(),
        };
        let mut apps: Vec<String> = entry["apps"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        apps.sort();
        apps.dedup();
        let maintenance = &entry["maintenance"];
        clients.insert(
            name.clone(),
            json!({
                "status": get("status", json!("pending")),
                "role": get("role", json!("production")),
                "deployed_date": entry["deployed_date"],
                "destroyed_date": entry["destroyed_date"],
                "server": {"type": server["type"], "location": server["location"],
                           "ip": server["ip"], "id": id},
                "apps": apps,
                "versions": get("versions", json!({})),
                "maintenance": {
                    "last_full_update": maintenance["last_full_update"],
                    "last_security_patch": maintenance["last_security_patch"],
                    "last_os_update": maintenance["last_os_update"],
                    "last_backup_verified": maintenance["last_backup_verified"],
                },
                "urls": get("urls", json!({})),
                "notes": get("notes", json!("")),
            }),
        );
    }
    json!({ "clients": clients })
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"))
}

#[test]
fn import_list_filter_stale_and_export_round_trip() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "clients.db");
    let file = example();
    let file = file.to_str().unwrap();

    // A dry run plans and writes nothing.
    let plan = server.json(&["client", "import", file, "--dry-run"]);
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["created"], json!(["acme", "beta", "dev", "oldco"]));
    assert_eq!(server.json(&["client", "list"])["total"], 0);
    let run = server.ok_run(&["client", "list"]);
    assert!(run.stderr.contains("no clients"), "{}", run.stderr);

    let out = server.ok(&["client", "import", file]);
    assert!(out.contains(": 4 created, 0 updated, 0 unchanged"), "{out}");
    assert!(out.contains("  created    acme\n"), "{out}");
    let again = server.json(&["client", "import", file]);
    assert_eq!(again["unchanged"], json!(["acme", "beta", "dev", "oldco"]));
    assert_eq!(again["created"], json!([]));

    // Every output format.
    let all = server.json(&["client", "list"]);
    assert_eq!(names(&all["items"]), ["acme", "beta", "dev", "oldco"]);
    assert_eq!(all["total"], 4);
    let yaml_list = yaml(&server.ok(&["client", "list", "-o", "yaml"]));
    assert_eq!(names(&yaml_list["items"]), ["acme", "beta", "dev", "oldco"]);
    let csv_text = server.ok(&["client", "list", "-o", "csv"]);
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4, "{csv_text}");
    let field = |row: &csv::StringRecord, name: &str| {
        row.get(headers.iter().position(|h| h == name).unwrap())
            .unwrap()
            .to_owned()
    };
    assert_eq!(field(&rows[0], "name"), "acme");
    assert_eq!(field(&rows[0], "server_ip"), "203.0.113.21");
    assert_eq!(field(&rows[0], "server_id"), "12345678");
    assert_eq!(field(&rows[0], "apps"), "authentik,nextcloud");
    assert_eq!(
        field(&rows[2], "notes"),
        "Canary: receives every update first."
    );
    let run = server.ok_run(&["client", "list"]);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "STATUS", "ROLE", "TYPE", "LOCATION", "IP", "DEPLOYED", "APPS"]
    );
    let acme: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        acme,
        [
            "acme",
            "deployed",
            "production",
            "cx32",
            "fsn1",
            "203.0.113.21",
            "2026-01-17",
            "authentik,nextcloud"
        ]
    );
    assert_eq!(lines.len(), 5, "{}", run.stdout);
    assert!(run.stderr.contains("4 clients"), "{}", run.stderr);

    // Filters, enum values in any case.
    let list =
        |filters: &[&str]| names(&server.json(&[&["client", "list"], filters].concat())["items"]);
    assert_eq!(list(&["--status", "deployed"]), ["acme", "dev"]);
    assert_eq!(list(&["--status=DESTROYED"]), ["oldco"]);
    assert_eq!(list(&["--role", "Canary"]), ["dev"]);
    assert_eq!(list(&["--app", "authentik"]), ["acme", "dev"]);
    assert_eq!(list(&["--location", "nbg1"]), ["dev", "oldco"]);
    assert_eq!(list(&["--server-type", "cx32"]), ["acme"]);
    assert_eq!(
        list(&["--role", "production", "--location", "hel1"]),
        ["beta"]
    );
    assert_eq!(list(&["--app", "wordpress"]), Vec::<String>::new());
    let run = server.run(&["client", "list", "--status", "running"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("offboarding"), "{}", run.stderr);

    // The summary.
    let summary = server.ok(&["client", "list", "-o", "summary"]);
    assert!(summary.starts_with("TOTAL CLIENTS:  4\n"), "{summary}");
    for line in [
        "deployed     2",
        "destroyed    1",
        "canary      1",
        "nextcloud  3",
    ] {
        assert!(summary.contains(line), "{line:?} in\n{summary}");
    }
    assert!(summary.contains("OLDER THAN 30 DAYS OR NEVER"), "{summary}");
    let run = server.run(&["client", "list", "-o", "summary", "--role", "canary"]);
    assert_eq!(run.code, 1, "{}", run.stderr);

    // Stale: the cut-off is `--days` before today.
    let days_to = |cutoff: &str| (today() - date(cutoff)).num_days().to_string();
    let stale =
        |args: &[&str]| names(&server.json(&[&["client", "stale"], args].concat())["items"]);
    let dec1 = days_to("2025-12-01");
    assert_eq!(
        stale(&["--days", &dec1, "--field", "security-patch"]),
        ["acme"]
    );
    assert_eq!(
        stale(&["--days", &dec1, "--field", "last_security_patch"]),
        ["acme"]
    );
    assert_eq!(
        stale(&["--days", &dec1, "--field", "os-update"]),
        Vec::<String>::new()
    );
    let jan18 = days_to("2026-01-18");
    assert_eq!(stale(&["--days", &jan18]), ["acme", "beta"]);
    assert_eq!(
        stale(&["--days", &jan18, "--status", "destroyed"]),
        ["oldco"]
    );
    assert_eq!(
        stale(&[
            "--days",
            &jan18,
            "--role",
            "production",
            "--location",
            "hel1"
        ]),
        ["beta"]
    );
    let whole = server.json(&[
        "client",
        "stale",
        "--days",
        &dec1,
        "--field",
        "BACKUP-VERIFIED",
    ]);
    assert_eq!(whole["stale_field"], "last_backup_verified");
    assert_eq!(names(&whole["items"]), ["acme"]);
    let table = server.ok(&[
        "client",
        "stale",
        "--days",
        &dec1,
        "--field",
        "backup-verified",
    ]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("acme ") && l.contains("never")),
        "{table}"
    );
    let csv_text = server.ok(&["client", "stale", "--days", &jan18, "-o", "csv"]);
    assert_eq!(
        csv::Reader::from_reader(csv_text.as_bytes())
            .records()
            .count(),
        2,
        "{csv_text}"
    );

    // Export: the same registry as the file, the same text every time.
    let exported = server.ok(&["client", "export"]);
    assert_eq!(
        normalized(&yaml(&exported)),
        normalized(&yaml(&example_text()))
    );
    assert!(exported.contains("      id: \"12345678\"\n"), "{exported}");
    assert!(
        exported.find("  acme:").unwrap() < exported.find("  beta:").unwrap(),
        "{exported}"
    );
    let path = dir.path().join("registry.yml");
    let run = server.ok_run(&["client", "export", "-o", path.to_str().unwrap()]);
    assert!(run.stderr.contains("4 clients written"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), exported);
    assert_eq!(server.ok(&["client", "export"]), exported, "deterministic");
    let plan = server.json(&["client", "import", path.to_str().unwrap()]);
    assert_eq!(plan["unchanged"], json!(["acme", "beta", "dev", "oldco"]));
}

#[test]
fn lifecycle_walk_as_the_seed_scripts_do_it() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "lifecycle.db");

    let deployed = server.json(&[
        "client",
        "update",
        "newco",
        "deploy",
        "--role",
        "canary",
        "--server-ip",
        "203.0.113.50",
        "--server-id",
        "555",
        "--server-type",
        "cx22",
        "--server-location",
        "nbg1",
        "--date",
        "2026-02-01",
    ]);
    assert_eq!(deployed["status"], "deployed");
    assert_eq!(deployed["role"], "canary");
    assert_eq!(deployed["deployed_date"], "2026-02-01");
    assert_eq!(deployed["maintenance"]["last_full_update"], "2026-02-01");
    assert_eq!(
        deployed["server"],
        json!({"type": "cx22", "location": "nbg1", "ip": "203.0.113.50", "id": "555"})
    );

    let out = server.ok(&[
        "client",
        "update",
        "newco",
        "status",
        "--status=maintenance",
    ]);
    assert!(
        out.starts_with("client newco: status set to maintenance (status maintenance"),
        "{out}"
    );
    let rebuilt = server.json(&[
        "client",
        "update",
        "newco",
        "rebuild",
        "--server-ip",
        "203.0.113.51",
        "--date",
        "2026-02-05",
    ]);
    assert_eq!(rebuilt["status"], "maintenance");
    assert_eq!(rebuilt["server"]["ip"], "203.0.113.51");
    assert_eq!(rebuilt["server"]["id"], "555", "kept");
    assert_eq!(rebuilt["maintenance"]["last_full_update"], "2026-02-05");
    let back = server.json(&[
        "client", "update", "newco", "status", "--status", "Deployed",
    ]);
    assert_eq!(back["status"], "deployed");

    // Maintenance stamps, versions, notes.
    let stamped = server.json(&[
        "client",
        "maintenance",
        "newco",
        "security-patch",
        "--date",
        "2026-02-07",
    ]);
    assert_eq!(stamped["maintenance"]["last_security_patch"], "2026-02-07");
    let stamped = server.json(&["client", "maintenance", "newco", "last_backup_verified"]);
    assert_eq!(
        stamped["maintenance"]["last_backup_verified"],
        today().to_string()
    );
    let versioned = server.json(&[
        "client",
        "version",
        "newco",
        "nextcloud=31.0.2",
        "ubuntu=24.04",
    ]);
    assert_eq!(
        versioned["versions"],
        json!({"nextcloud": "31.0.2", "ubuntu": "24.04"})
    );
    let out = server.ok(&["client", "version", "newco", "ubuntu=", "traefik=v3.0"]);
    assert!(out.contains("ubuntu removed, traefik = v3.0"), "{out}");
    let noted = server.json(&["client", "notes", "newco", "Disk upgrade done.\nAll fine."]);
    assert_eq!(
        noted["versions"],
        json!({"nextcloud": "31.0.2", "traefik": "v3.0"})
    );
    assert_eq!(noted["notes"], "Disk upgrade done.\nAll fine.");

    // The detailed view and the raw one.
    let status = server.ok(&["client", "status", "newco"]);
    let patch_age = (today() - date("2026-02-07")).num_days();
    for part in [
        "Client:     newco\n".to_owned(),
        "Status:     deployed\n".to_owned(),
        "Role:       canary\n".to_owned(),
        "  IP:        203.0.113.51\n".to_owned(),
        "  nextcloud  31.0.2\n".to_owned(),
        format!("  Security patch:   2026-02-07 ({patch_age} days ago)\n"),
        "  Backup verified:  ".to_owned() + &today().to_string() + " (today)\n",
        "  OS update:        2026-02-01".to_owned(),
        "Notes:\n  Disk upgrade done.\n  All fine.\n".to_owned(),
    ] {
        assert!(status.contains(&part), "{part:?} in\n{status}");
    }
    let shown = yaml(&server.ok(&["client", "show", "newco"]));
    assert_eq!(shown["server"]["id"], "555");
    assert_eq!(server.json(&["client", "show", "newco"])["name"], "newco");

    // Destroy; then an illegal move is the server's error, exit 1.
    let destroyed = server.json(&[
        "client",
        "update",
        "newco",
        "destroy",
        "--date",
        "2026-02-10",
    ]);
    assert_eq!(destroyed["status"], "destroyed");
    assert_eq!(destroyed["destroyed_date"], "2026-02-10");
    server
        .run(&[
            "client",
            "update",
            "newco",
            "status",
            "--status",
            "maintenance",
        ])
        .assert_error("INVALID_STATUS_TRANSITION");
    server
        .run(&["client", "update", "newco", "rebuild"])
        .assert_error("INVALID_STATUS_TRANSITION");
    server
        .run(&["client", "maintenance", "newco", "os-update"])
        .assert_error("CLIENT_DESTROYED");
    server
        .run(&["client", "status", "nobody"])
        .assert_error("CLIENT_NOT_FOUND");
    // Refused before a request: not a lifecycle target, not a date.
    for args in [
        &[
            "client",
            "update",
            "newco",
            "status",
            "--status",
            "destroyed",
        ][..],
        &[
            "client",
            "update",
            "newco",
            "destroy",
            "--date",
            "10.02.2026",
        ],
        &["client", "maintenance", "newco", "reboot"],
    ] {
        assert_eq!(server.run(args).code, 2, "{args:?}");
    }

    // History: newest first, every step.
    let history = server.json(&["client", "history", "newco"]);
    let entries = history.as_array().unwrap();
    assert_eq!(entries.len(), 10, "{history:#}");
    assert_eq!(entries[0]["client"]["status"], "destroyed");
    let revisions: Vec<i64> = entries
        .iter()
        .map(|e| e["revision"].as_i64().unwrap())
        .collect();
    assert!(revisions.windows(2).all(|w| w[0] > w[1]), "{revisions:?}");
    let table = server.ok(&["client", "history", "newco", "--limit", "2"]);
    assert!(table.starts_with("REVISION"), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");
    let csv_text = server.ok(&["client", "history", "newco", "-o", "csv"]);
    assert_eq!(
        csv::Reader::from_reader(csv_text.as_bytes())
            .records()
            .count(),
        10
    );

    // Delete asks; with stdin not a terminal it needs --yes.
    let run = server.run(&["client", "delete", "newco"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    assert_eq!(
        server.json(&["client", "show", "newco"])["status"],
        "destroyed"
    );
    let out = server.ok(&["client", "delete", "newco", "--yes"]);
    assert_eq!(out, "client newco deleted\n");
    server
        .run(&["client", "show", "newco"])
        .assert_error("CLIENT_NOT_FOUND");
    server
        .run(&["client", "delete", "newco", "--yes"])
        .assert_error("CLIENT_NOT_FOUND");
    assert_eq!(
        server
            .json(&["client", "history", "newco"])
            .as_array()
            .unwrap()
            .len(),
        11,
        "the history outlives the entry"
    );
}

#[test]
fn a_bad_import_shows_every_problem_and_changes_nothing() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "bad-import.db");
    let example = example();
    server.ok(&["client", "import", example.to_str().unwrap()]);
    let before = server.ok(&["client", "export"]);

    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "clients:
  acme:
    status: deployed
    notes: \"changed, but the file is refused\"
  newgood:
    status: pending
  bad-ip:
    server:
      ip: 300.1.1.1
  Bad_Name:
    status: pending
  bad-role:
    role: beta
  bad-date:
    maintenance:
      last_os_update: yesterday
  bad-version:
    versions:
      ubuntu: 24.04
",
    )
    .unwrap();
    let run = server.run(&["client", "import", bad.to_str().unwrap()]);
    run.assert_error("VALIDATION_ERROR");
    for line in [
        "bad-ip: server.ip: ",
        "Bad_Name: name: ",
        "bad-role: role: ",
        "bad-date: maintenance.last_os_update: ",
        "bad-version: versions.ubuntu: ",
    ] {
        assert!(
            run.stderr.lines().any(|l| l.starts_with(line)),
            "{line:?} in\n{}",
            run.stderr
        );
    }
    assert!(!run.stderr.contains("newgood"), "{}", run.stderr);
    assert!(run.stderr.contains("hint: "), "{}", run.stderr);
    assert_eq!(server.ok(&["client", "export"]), before, "nothing imported");
    let dry = server.run(&["client", "import", bad.to_str().unwrap(), "--dry-run"]);
    dry.assert_error("VALIDATION_ERROR");

    // A YAML syntax error is found locally, with its place; nothing is sent
    // (the server named is not even running).
    let broken = dir.path().join("broken.yml");
    std::fs::write(
        &broken,
        "clients:\n  acme:\n    status: [deployed\n    role: canary\n",
    )
    .unwrap();
    let run = Run::of(fleetreg().args([
        "client",
        "import",
        broken.to_str().unwrap(),
        "--server",
        &dead_url(),
    ]));
    assert_eq!(run.code, 1, "{}", run.stderr);
    let prefix = format!("error: {}:", broken.display());
    assert!(run.stderr.starts_with(&prefix), "{}", run.stderr);
    assert!(run.stderr.contains("invalid YAML"), "{}", run.stderr);
    let place: Vec<&str> = run.stderr[prefix.len()..].splitn(3, ':').collect();
    assert!(
        place[0].parse::<u32>().is_ok() && place[1].parse::<u32>().is_ok(),
        "line and column: {}",
        run.stderr
    );
    let run = server.run(&["client", "import", broken.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert_eq!(server.ok(&["client", "export"]), before);

    // stdin works too.
    let run = server.run_with_stdin(
        &["client", "import", "-", "--dry-run", "-o", "json"],
        &example_text(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.json()["unchanged"],
        json!(["acme", "beta", "dev", "oldco"])
    );
}
