//! The `fleetreg` command line as a user drives it: each test starts the real
//! `fleetreg serve` on a free port with a temporary SQLite file and runs the
//! real binary against it, checking output, `error: CODE:` lines and exit codes.

use crate::common::{dead_url, fleetreg, FLEETREG};
use fleetreg_testkit::spawn::{Run, Server};
use serde_json::Value;
use tempfile::TempDir;

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_owned())
        .collect()
}

#[test]
fn register_get_update_status_delete() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "crud.db");

    let created = server.json(&[
        "cluster",
        "register",
        "prod-east-1",
        "--api-server-url",
        "https://api.prod-east-1.example.com:6443",
        "--type",
        "HUB",
        "--environment",
        "PRODUCTION",
        "--region",
        "us-east-1",
        "--display-name",
        "Prod East",
        "--platform-version",
        "4.14",
        "--label",
        "team=platform",
        "--label",
        "tier=gold",
        "--prometheus-url",
        "https://prom.example.com",
        "--tempo-url",
        "https://tempo.example.com",
    ]);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["cluster_type"], "HUB");
    assert_eq!(
        created["labels"],
        serde_json::json!({"team": "platform", "tier": "gold"})
    );

    // By name and by id, with -o in several places, in every format.
    assert_eq!(
        server.json(&["cluster", "get", "prod-east-1"])["id"],
        id.as_str()
    );
    assert_eq!(server.json(&["cluster", "get", &id])["name"], "prod-east-1");
    let out = server.ok(&["cluster", "get", "-o", "json", "prod-east-1"]);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["id"],
        id.as_str()
    );
    let out = server.ok(&["cluster", "get", "prod-east-1", "--output", "yaml"]);
    let yaml: Value = serde_yaml::from_str(&out).unwrap();
    assert_eq!(yaml["region"], "us-east-1");
    let table = server.ok(&["cluster", "get", "prod-east-1"]);
    assert!(
        table.contains("prod-east-1")
            && table.contains("us-east-1")
            && table.contains("team=platform"),
        "{table}"
    );
    let csv = server.ok(&["cluster", "get", &id, "-o", "csv"]);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let row = reader.records().next().unwrap().unwrap();
    let field = |name: &str| {
        row.get(headers.iter().position(|h| h == name).unwrap())
            .unwrap()
            .to_owned()
    };
    assert_eq!(field("id"), id);
    assert_eq!(field("labels"), "team=platform,tier=gold");

    // Update: set, clear, replace and merge.
    let updated = server.json(&[
        "cluster",
        "update",
        "prod-east-1",
        "--region",
        "us-east-2",
        "--environment",
        "STAGING",
    ]);
    assert_eq!(updated["region"], "us-east-2");
    assert_eq!(updated["environment"], "STAGING");
    assert_eq!(updated["display_name"], "Prod East");
    let updated = server.json(&[
        "cluster",
        "update",
        &id,
        "--add-label",
        "owner=sre",
        "--remove-label",
        "tier",
    ]);
    assert_eq!(
        updated["labels"],
        serde_json::json!({"team": "platform", "owner": "sre"})
    );
    let updated = server.json(&["cluster", "update", "prod-east-1", "--label", "only=this"]);
    assert_eq!(updated["labels"], serde_json::json!({"only": "this"}));
    let updated = server.json(&[
        "cluster",
        "update",
        "prod-east-1",
        "--loki-url",
        "https://loki.example.com",
        "--clear-tempo-url",
    ]);
    assert_eq!(
        updated["endpoints"],
        serde_json::json!({"prometheus_url": "https://prom.example.com", "loki_url": "https://loki.example.com"})
    );
    let updated = server.json(&[
        "cluster",
        "update",
        "prod-east-1",
        "--clear-region",
        "--clear-display-name",
        "--clear-platform-version",
        "--clear-labels",
        "--clear-endpoints",
    ]);
    assert_eq!(updated["region"], Value::Null);
    assert_eq!(updated["display_name"], Value::Null);
    assert_eq!(updated["platform_version"], Value::Null);
    assert!(
        updated["labels"].as_object().is_none_or(|l| l.is_empty()),
        "{updated}"
    );
    assert!(
        updated["endpoints"]
            .as_object()
            .is_none_or(|e| e.is_empty()),
        "{updated}"
    );
    let nothing = server.run(&["cluster", "update", "prod-east-1"]);
    assert_eq!(nothing.code, 1);
    assert!(
        nothing.stderr.contains("nothing to update"),
        "{}",
        nothing.stderr
    );
    let conflict = server.run(&[
        "cluster",
        "update",
        "prod-east-1",
        "--region",
        "x",
        "--clear-region",
    ]);
    assert_eq!(conflict.code, 2, "{}", conflict.stderr);

    // If-Match: the current revision passes, a stale one is refused.
    let revision = updated["revision"].as_i64().unwrap();
    let stale = server.run(&[
        "cluster",
        "update",
        "prod-east-1",
        "--region",
        "r",
        "--if-match",
        &(revision - 1).to_string(),
    ]);
    stale.assert_error("PRECONDITION_FAILED");
    let fresh = server.json(&[
        "cluster",
        "update",
        "prod-east-1",
        "--region",
        "r",
        "--if-match",
        &revision.to_string(),
    ]);
    assert_eq!(fresh["region"], "r");
    let stale = server.run(&[
        "cluster",
        "delete",
        "prod-east-1",
        "--if-match",
        &revision.to_string(),
    ]);
    stale.assert_error("PRECONDITION_FAILED");

    // Status in every format.
    let status = server.json(&["cluster", "status", "prod-east-1"]);
    assert_eq!(status["state"], "UNKNOWN");
    assert_eq!(status["connectivity"], "DISCONNECTED");
    assert!(server
        .ok(&["cluster", "status", &id])
        .contains("DISCONNECTED"));
    let yaml: Value =
        serde_yaml::from_str(&server.ok(&["cluster", "status", &id, "-o", "yaml"])).unwrap();
    assert_eq!(yaml["health_score"], 0);
    let csv = server.ok(&["cluster", "status", &id, "-o", "csv"]);
    assert!(csv.starts_with("state,health_score,connectivity"), "{csv}");

    // Delete, then everything about it is CLUSTER_NOT_FOUND.
    let deleted = server.run(&["cluster", "delete", "prod-east-1"]);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert!(deleted.stdout.contains("prod-east-1"), "{}", deleted.stdout);
    server
        .run(&["cluster", "delete", "prod-east-1"])
        .assert_error("CLUSTER_NOT_FOUND");
    server
        .run(&["cluster", "delete", &id])
        .assert_error("CLUSTER_NOT_FOUND");
    server
        .run(&["cluster", "get", "prod-east-1"])
        .assert_error("CLUSTER_NOT_FOUND");
    server
        .run(&["cluster", "status", &id])
        .assert_error("CLUSTER_NOT_FOUND");
    server
        .run(&["cluster", "refresh", &id])
        .assert_error("CLUSTER_NOT_FOUND");
    server
        .run(&["cluster", "update", "prod-east-1", "--region", "x"])
        .assert_error("CLUSTER_NOT_FOUND");

    // The change log tells the same story.
    let events = server.json(&["events", "list"]);
    let types: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"CLUSTER_REGISTERED"));
    assert_eq!(types.last(), Some(&"CLUSTER_DELETED"));
    assert_eq!(
        types.iter().filter(|t| **t == "CLUSTER_UPDATED").count(),
        6,
        "{types:?}"
    );
    let after = events["items"][1]["revision"].as_i64().unwrap().to_string();
    let rest = server.json(&["events", "list", "--after", &after, "--limit", "2"]);
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);
    let table = server.ok(&["events", "list"]);
    assert!(
        table.starts_with("REVISION") && table.contains("CLUSTER_DELETED"),
        "{table}"
    );
    let yaml: Value = serde_yaml::from_str(&server.ok(&["events", "list", "-o", "yaml"])).unwrap();
    assert_eq!(yaml["items"].as_array().unwrap().len(), types.len());
    let csv = server.ok(&["events", "list", "-o", "csv"]);
    assert_eq!(
        csv::Reader::from_reader(csv.as_bytes()).records().count(),
        types.len()
    );
    server
        .run(&["events", "list", "--limit", "5000"])
        .assert_error("VALIDATION_ERROR");
    let watched = server.ok(&["events", "watch", "--after", "0", "--count", "1"]);
    let first: Value = serde_json::from_str(watched.trim()).unwrap();
    assert_eq!(first["type"], "CLUSTER_REGISTERED");
}

#[test]
fn list_filters_and_output_formats() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "list.db");
    let clusters = [
        ("alpha-hub", "HUB", "PRODUCTION", "us-east-1", "team=core"),
        (
            "beta-spoke",
            "SPOKE",
            "PRODUCTION",
            "us-west-2",
            "team=edge",
        ),
        ("gamma-edge", "EDGE", "STAGING", "us-east-1", "team=edge"),
        ("delta-far", "FAR_EDGE", "LAB", "eu-central-1", "team=core"),
    ];
    for (name, kind, env, region, label) in clusters {
        let url = format!("https://api.{name}.example.com:6443");
        let args = [
            "cluster",
            "register",
            name,
            "--api-server-url",
            &url,
            "--type",
            kind,
        ];
        let args = [
            &args[..],
            &[
                "--environment",
                env,
                "--region",
                region,
                "--label",
                label,
                "--label",
                "fleet=main",
            ],
        ]
        .concat();
        server.ok(&args);
    }
    let list = |filters: &[&str]| names(&server.json(&[&["cluster", "list"], filters].concat()));

    assert_eq!(
        list(&[]),
        ["alpha-hub", "beta-spoke", "delta-far", "gamma-edge"]
    );
    assert_eq!(list(&["--name", "ta"]), ["beta-spoke", "delta-far"]);
    assert_eq!(list(&["--name", "nothing"]), Vec::<String>::new());
    assert_eq!(list(&["--type", "EDGE"]), ["gamma-edge"]);
    assert_eq!(list(&["--type", "SPOKE"]), ["beta-spoke"]);
    assert_eq!(
        list(&["--environment", "PRODUCTION"]),
        ["alpha-hub", "beta-spoke"]
    );
    assert_eq!(
        list(&["--region", "us-east-1"]),
        ["alpha-hub", "gamma-edge"]
    );
    assert_eq!(list(&["--region", "ap-south-1"]), Vec::<String>::new());
    assert_eq!(list(&["--state", "UNKNOWN"]).len(), 4);
    assert_eq!(list(&["--state", "ONLINE"]), Vec::<String>::new());
    assert_eq!(list(&["--has-gpu", "true"]), Vec::<String>::new());
    assert_eq!(list(&["--has-gpu", "false"]).len(), 4);
    assert_eq!(list(&["--has-cnf", "true"]), Vec::<String>::new());
    assert_eq!(list(&["--has-cnf", "false"]).len(), 4);
    assert_eq!(
        list(&["--label", "team=edge"]),
        ["beta-spoke", "gamma-edge"]
    );
    assert_eq!(
        list(&["--label", "team=edge", "--label", "fleet=main"]),
        ["beta-spoke", "gamma-edge"]
    );
    assert_eq!(
        list(&["--label", "team=edge", "--label", "fleet=other"]),
        Vec::<String>::new()
    );
    assert_eq!(
        list(&[
            "--label",
            "team=core",
            "--environment",
            "LAB",
            "--type",
            "FAR_EDGE"
        ]),
        ["delta-far"]
    );

    let page = server.json(&["cluster", "list", "--page", "2", "--page-size", "3"]);
    assert_eq!(names(&page), ["gamma-edge"]);
    assert_eq!(
        (page["total"].as_i64(), page["total_pages"].as_i64()),
        (Some(4), Some(2))
    );
    for bad in ["0", "101"] {
        server
            .run(&["cluster", "list", "--page-size", bad])
            .assert_error("VALIDATION_ERROR");
    }
    // An unknown enum value is refused before a request, naming the values.
    let run = server.run(&["cluster", "list", "--type", "MAINFRAME"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("FAR_EDGE"), "{}", run.stderr);

    // Table: a header and one aligned line per cluster; the page line goes to stderr.
    let run = server.run(&["cluster", "list", "--environment", "PRODUCTION"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("ENVIRONMENT"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("alpha-hub ") && lines[2].starts_with("beta-spoke "),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("2 clusters"), "{}", run.stderr);

    // CSV parses into the same rows, with API field names as headers.
    let csv = server.ok(&["cluster", "list", "-o", "csv", "--label", "team=core"]);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let name_at = headers.iter().position(|h| h == "name").unwrap();
    let labels_at = headers.iter().position(|h| h == "labels").unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(
        rows.iter().map(|r| &r[name_at]).collect::<Vec<_>>(),
        ["alpha-hub", "delta-far"]
    );
    assert_eq!(&rows[0][labels_at], "fleet=main,team=core");

    // YAML is the same document as JSON.
    let yaml: Value =
        serde_yaml::from_str(&server.ok(&["cluster", "list", "--type", "HUB", "-o", "yaml"]))
            .unwrap();
    assert_eq!(names(&yaml), ["alpha-hub"]);
    assert_eq!(yaml["total"], 1);

    // Bad flags are refused before anything is sent.
    for args in [
        &["cluster", "list", "--label", "novalue"][..],
        &["cluster", "list", "--has-gpu", "maybe"],
        &["cluster", "list", "--page-size", "ten"],
        &["cluster", "list", "-o", "xml"],
        &["cluster", "list", "--colour"],
    ] {
        let run = server.run(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("error: "),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn server_errors_print_their_code() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "errors.db");
    let register = |name: &str| {
        server.run(&[
            "cluster",
            "register",
            name,
            "--api-server-url",
            "https://api.example.com:6443",
        ])
    };
    register("Bad_Name").assert_error("INVALID_CLUSTER_NAME");
    register("ab").assert_error("INVALID_CLUSTER_NAME");
    assert_eq!(register("dup-1").code, 0);
    register("dup-1").assert_error("CLUSTER_ALREADY_EXISTS");
    server
        .run(&["cluster", "get", "missing"])
        .assert_error("CLUSTER_NOT_FOUND");
    server
        .run(&["cluster", "get", "a/b"])
        .assert_error("CLUSTER_NOT_FOUND");
    server
        .run(&["cluster", "delete", "missing"])
        .assert_error("CLUSTER_NOT_FOUND");
    server
        .run(&["cluster", "get", "0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e"])
        .assert_error("CLUSTER_NOT_FOUND");
    server
        .run(&[
            "cluster",
            "register",
            "bad-url",
            "--api-server-url",
            "not a url",
        ])
        .assert_error("VALIDATION_ERROR");
    let run = server.run(&[
        "cluster",
        "register",
        "bad-env",
        "--api-server-url",
        "https://a:6443",
        "--environment",
        "MARS",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("PRODUCTION"), "{}", run.stderr);
    server
        .run(&["cluster", "list", "--page-size", "1000"])
        .assert_error("VALIDATION_ERROR");
    server
        .run(&[
            "cluster",
            "update",
            "dup-1",
            "--region",
            "x",
            "--if-match",
            "999",
        ])
        .assert_error("PRECONDITION_FAILED");

    // Nothing listening: a clear message, exit 1.
    let run = Run::of(fleetreg().args(["cluster", "list", "--server", &dead_url()]));
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .starts_with("error: cannot reach the fleetreg server at http://127.0.0.1:"),
        "{}",
        run.stderr
    );
    let run = Run::of(fleetreg().args(["cluster", "list", "--server", "localhost-no-scheme"]));
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("invalid server URL"), "{}", run.stderr);
}

#[test]
fn server_comes_from_flag_then_env_then_default() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "url.db");
    let dead = dead_url();
    let list = |flag: Option<&str>, env: Option<&str>| {
        let mut command = fleetreg();
        command.args(["cluster", "list", "-o", "json"]);
        if let Some(url) = flag {
            command.args(["--server", url]);
        }
        if let Some(url) = env {
            command.env("FLEETREG_URL", url);
        }
        Run::of(&mut command)
    };
    assert_eq!(
        list(Some(server.url.as_str()), Some(dead.as_str())).code,
        0,
        "--server wins over FLEETREG_URL"
    );
    assert_eq!(
        list(None, Some(server.url.as_str())).code,
        0,
        "FLEETREG_URL is used without --server"
    );
    let run = list(Some(dead.as_str()), Some(server.url.as_str()));
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains(&dead), "{}", run.stderr);
    let run = list(None, Some(dead.as_str()));
    assert!(run.stderr.contains(&dead), "{}", run.stderr);
    // A wrong --token overrides the admin token and is refused.
    let run = Run::of(
        fleetreg()
            .args(["cluster", "list", "--token", "t0ken"])
            .env("FLEETREG_URL", &server.url),
    );
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("UNAUTHENTICATED"), "{}", run.stderr);
}

#[test]
fn config_file_with_an_unknown_key_is_refused() {
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("fleetreg.yaml");
    std::fs::write(
        &config,
        "cluster_registry:\n  health_check:\n    enabled: true\n    hub_intervall_seconds: 5\n",
    )
    .unwrap();
    let run = Run::of(
        fleetreg()
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .current_dir(dir.path()),
    );
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("hub_intervall_seconds"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("fleetreg.yaml"), "{}", run.stderr);

    std::fs::write(&config, "cluster_registry: {}\nclusterregistry: {}\n").unwrap();
    let run = Run::of(
        fleetreg()
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .current_dir(dir.path()),
    );
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("clusterregistry"), "{}", run.stderr);

    let run = Run::of(
        fleetreg()
            .args(["serve", "--config", "/nonexistent/fleetreg.yaml"])
            .current_dir(dir.path()),
    );
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("/nonexistent/fleetreg.yaml"),
        "{}",
        run.stderr
    );
}

#[test]
fn seed_config_file_starts_the_server() {
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("fleetreg.yaml");
    let yaml = format!(
        r#"cluster_registry:
  listen: "127.0.0.1:0"
  database_url: "sqlite://{}"
  health_check:
    enabled: true
    hub_interval_seconds: 15
    spoke_interval_seconds: 30
    edge_interval_seconds: 60
    far_edge_interval_seconds: 120
    timeout_seconds: 10
  discovery:
    on_registration: true
    periodic_refresh_hours: 24
  credentials:
    secret_namespace: "aiops-nextgen"
    rotation_warning_days: 7
"#,
        dir.path().join("config.db").display()
    );
    std::fs::write(&config, yaml).unwrap();
    let config = config.display().to_string();
    let server = Server::start_with(FLEETREG, dir.path(), &["--config", &config]);
    server.ok(&[
        "cluster",
        "register",
        "from-config",
        "--api-server-url",
        "https://a.example.com:6443",
    ]);
    assert!(
        dir.path().join("config.db").exists(),
        "the file's database_url is used"
    );
    assert!(
        server.log_text().contains("fleetreg.yaml"),
        "the config file is logged"
    );
}

#[test]
fn sigterm_stops_gracefully_and_keeps_acknowledged_writes() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "term.db");
    let log = server.log_text();
    assert!(
        log.contains("synchronous=FULL"),
        "the durability mode is logged at start-up:\n{log}"
    );
    let created = server.json(&[
        "cluster",
        "register",
        "kept-1",
        "--api-server-url",
        "https://a.example.com:6443",
    ]);

    let (status, log) = server.terminate();
    assert!(
        status.success(),
        "exit status {status} after SIGTERM:\n{log}"
    );
    assert!(log.contains("stopped"), "{log}");

    let server = Server::start(FLEETREG, dir.path(), "term.db");
    assert_eq!(
        server.json(&["cluster", "get", "kept-1"])["id"],
        created["id"]
    );
}

#[test]
fn help_shows_examples() {
    for args in [
        &["cluster", "--help"][..],
        &["cluster", "register", "--help"],
        &["cluster", "list", "--help"],
        &["cluster", "get", "--help"],
        &["cluster", "update", "--help"],
        &["cluster", "delete", "--help"],
        &["cluster", "status", "--help"],
        &["cluster", "refresh", "--help"],
        &["events", "list", "--help"],
        &["events", "watch", "--help"],
        &["serve", "--help"],
    ] {
        let run = Run::of(fleetreg().args(args));
        assert_eq!(run.code, 0, "{args:?}");
        assert!(
            run.stdout.contains("Examples:\n  fleetreg "),
            "{args:?}:\n{}",
            run.stdout
        );
    }
}

#[test]
fn fleet_views_print_as_table_json_and_yaml() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "fleet.db");
    for (name, kind) in [("fleet-hub", "HUB"), ("fleet-spoke", "SPOKE")] {
        let url = format!("https://api.{name}.example.com:6443");
        server.ok(&[
            "cluster",
            "register",
            name,
            "--api-server-url",
            &url,
            "--type",
            kind,
        ]);
    }
    let summary = server.json(&["fleet", "summary"]);
    assert_eq!(summary["total_clusters"], 2);
    assert_eq!(summary["by_type"]["HUB"], 1);
    assert_eq!(summary["by_type"]["EDGE"], 0);
    assert_eq!(summary["by_state"]["UNKNOWN"], 2);
    let table = server.ok(&["fleet", "summary"]);
    assert!(table.contains("TOTAL CLUSTERS:"), "{table}");
    assert!(table.contains("SPOKE     1"), "{table}");
    let health = server.json(&["fleet", "health", "--limit", "3"]);
    assert_eq!(health["never_seen"], 2);
    assert!(server.ok(&["fleet", "health"]).contains("Least healthy:"));
    let yaml = server.ok(&["fleet", "capabilities", "-o", "yaml"]);
    assert!(yaml.contains("clusters_discovered: 0"), "{yaml}");
    server
        .run(&["fleet", "health", "--limit", "0"])
        .assert_error("VALIDATION_ERROR");
}

/// Issue 14: what the server said reaches the user — an unreachable
/// cluster's cause, status changes as `OLD → NEW`, where the token was looked
/// for on a 401 — and enum flags follow one case rule everywhere.
#[test]
fn the_cli_shows_what_the_server_said() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "said.db");

    // Lower case is accepted by register and list alike and sent as the API writes it.
    let created = server.json(&[
        "cluster",
        "register",
        "dead-1",
        "--api-server-url",
        &dead_url(),
        "--type",
        "edge",
        "--environment",
        "lab",
    ]);
    assert_eq!(created["cluster_type"], "EDGE");
    assert_eq!(created["environment"], "LAB");
    assert_eq!(
        names(&server.json(&["cluster", "list", "--type", "edge", "--environment", "Lab"])),
        ["dead-1"]
    );

    // Refresh of an unreachable cluster: the code, the message and the cause.
    let run = server.run(&["cluster", "refresh", "dead-1"]);
    run.assert_error("CLUSTER_UNREACHABLE");
    let cause = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("  cause: "))
        .unwrap_or_else(|| panic!("no cause line: {}", run.stderr));
    assert!(!cause.trim().is_empty(), "{}", run.stderr);

    // The status change it recorded shows as OLD → NEW, in the table and CSV.
    let table = server.ok(&["events", "list"]);
    let changed = table
        .lines()
        .find(|l| l.contains("CLUSTER_STATUS_CHANGED"))
        .unwrap_or_else(|| panic!("no status change: {table}"));
    assert!(changed.ends_with("UNKNOWN → OFFLINE"), "{table}");
    let csv = server.ok(&["events", "list", "-o", "csv"]);
    assert!(csv.contains("UNKNOWN → OFFLINE"), "{csv}");

    // A refused token: which one, and where tokens are looked for.
    let run = server.run(&["cluster", "list", "--token", "frg_not-a-token-0123456789"]);
    run.assert_error("UNAUTHENTICATED");
    let hint = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("  hint: "))
        .unwrap_or_else(|| panic!("no hint: {}", run.stderr));
    assert!(
        hint.contains("--token") && hint.contains("FLEETREG_TOKEN"),
        "{hint}"
    );
    assert!(hint.contains("fleetreg-admin.token"), "{hint}");
    // No token at all (none in the environment, no file here).
    let run = Run::of(
        server
            .command()
            .env_remove("FLEETREG_ADMIN_TOKEN")
            .args(["cluster", "list"]),
    );
    run.assert_error("UNAUTHENTICATED");
    assert!(
        run.stderr.contains("hint: no token was sent")
            && run.stderr.contains("./fleetreg-admin.token"),
        "{}",
        run.stderr
    );
}

/// Issue 14: `credentials expiring` prints CSV like the other lists.
#[test]
fn credentials_expiring_prints_csv() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "expiring.db");
    let csv = server.ok(&[
        "credentials",
        "expiring",
        "--within-days",
        "30",
        "-o",
        "csv",
    ]);
    assert_eq!(
        csv.lines().next(),
        Some("CLUSTER,AUTH TYPE,VERSION,EXPIRES AT,STATUS,ROTATION"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 1, "{csv}");
}

/// Issue 13 item 7: `events list|watch --type … --resource … --resource-id …`
/// read only the events asked for; bad values are the server's field errors.
#[test]
fn events_list_and_watch_filter_by_type_resource_and_id() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "event-filters.db");
    let mut ids = Vec::new();
    for name in ["filtered-a", "filtered-b"] {
        let url = format!("https://api.{name}.example.com:6443");
        let created = server.json(&["cluster", "register", name, "--api-server-url", &url]);
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    server.ok(&["cluster", "delete", "filtered-a"]);
    let kinds = |args: &[&str]| -> Vec<(String, String)> {
        let page = server.json(&[&["events", "list"], args].concat());
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_owned(),
                    e["resource_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let pair = |t: &str, id: &str| (t.to_owned(), id.to_owned());
    assert_eq!(
        kinds(&["--type", "CLUSTER_DELETED"]),
        [pair("CLUSTER_DELETED", &ids[0])]
    );
    assert_eq!(
        kinds(&["--type", "CLUSTER_REGISTERED", "--type", "CLUSTER_DELETED"]),
        [
            pair("CLUSTER_REGISTERED", &ids[0]),
            pair("CLUSTER_REGISTERED", &ids[1]),
            pair("CLUSTER_DELETED", &ids[0])
        ]
    );
    assert_eq!(kinds(&["--resource", "client"]), []);
    assert_eq!(
        kinds(&["--resource", "cluster", "--resource-id", &ids[1]]),
        [pair("CLUSTER_REGISTERED", &ids[1])]
    );
    // A filtered page says to read on from the latest revision.
    let page = server.json(&["events", "list", "--type", "CLUSTER_REGISTERED"]);
    assert_eq!(page["next_after"], page["latest_revision"], "{page}");
    let table = server.ok(&["events", "list", "--type", "CLUSTER_DELETED"]);
    assert!(
        table.contains("CLUSTER_DELETED") && !table.contains("CLUSTER_REGISTERED"),
        "{table}"
    );

    for bad in [
        &["--type", "CLUSTER_EXPLODED"][..],
        &["--resource", "planet"],
        &["--resource-id", "42"],
    ] {
        let run = server.run(&[&["events", "list"], bad].concat());
        run.assert_error("VALIDATION_ERROR");
        let field = bad[0].trim_start_matches("--").replace('-', "_");
        assert!(run.stderr.contains(&field), "{bad:?}: {}", run.stderr);
    }
    let watched = server.ok(&[
        "events",
        "watch",
        "--after",
        "0",
        "--type",
        "CLUSTER_DELETED",
        "--count",
        "1",
    ]);
    let first: serde_json::Value = serde_json::from_str(watched.trim()).unwrap();
    assert_eq!(first["type"], "CLUSTER_DELETED");
    assert_eq!(first["resource_id"], ids[0].as_str());
}
