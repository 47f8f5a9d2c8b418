//! The edge registry as a user runs it (seed service-registry-push-sync.md)
//! against a real `fleetreg serve`: the seed's one-time setup (two domains,
//! two VPS nodes, two laptops, routing for immich round-robin and open-webui
//! primary-backup), the seed's "Multi-Domain, Multi-VPS Configuration" and
//! "Node Health Status" views, node configurations rendered for Traefik,
//! Caddy, hosts files and zones, push and reconciliation, updates and
//! deletions, and refusals printed with their code, message and details.

use crate::common::{dead_url, FLEETREG};
use fleetreg_sim::{ClusterSpec, ServicePortSpec, ServiceSpec, SpawnedSim};
use fleetreg_testkit::spawn::Server;
use serde_json::Value;
use std::collections::BTreeMap;
use tempfile::TempDir;

/// The seed's registry: domains, VPS nodes (one named by default), laptops,
/// services and both routings, each command as the README shows it.
fn seed_setup(server: &Server) {
    server.ok(&["domain", "register", "curiios.com", "Personal site"]);
    server.ok(&[
        "domain",
        "register",
        "vinaysachdeva.com",
        "Professional site",
    ]);
    let vps = server.json(&[
        "node",
        "register",
        "vps",
        "100.68.225.92",
        "45.8.133.192",
        "eu",
        "contabo",
        "--name",
        "contabo-vps",
        "--user",
        "root",
    ]);
    assert_eq!(
        (vps["name"].as_str(), vps["kind"].as_str()),
        (Some("contabo-vps"), Some("vps"))
    );
    server.ok(&[
        "node",
        "register",
        "vps",
        "100.70.123.45",
        "167.99.1.1",
        "us",
        "digitalocean",
        "--name",
        "digitalocean-vps",
        "--user",
        "root",
    ]);
    for (address, name) in [
        ("100.86.112.112", "vinay-laptop"),
        ("100.87.123.45", "work-laptop"),
    ] {
        let laptop = server.json(&["node", "register", "laptop", address, name, "vinaysachdeva"]);
        assert_eq!(laptop["kind"], "laptop");
        assert_eq!(laptop["public_address"], Value::Null);
    }
    server.ok(&[
        "service",
        "register",
        "immich",
        "--upstream",
        "10.0.0.5:2283",
        "--subdomain",
        "photos",
    ]);
    server.ok(&[
        "service",
        "register",
        "open-webui",
        "--upstream",
        "10.0.0.6:8080",
        "--upstream",
        "10.0.0.8:8080",
        "--subdomain",
        "chat",
    ]);
    // Nodes by overlay address, as the seed gives them, and by name.
    let out = server.ok(&[
        "routing",
        "configure",
        "immich",
        "curiios.com,vinaysachdeva.com",
        "100.68.225.92,100.70.123.45",
        "round-robin",
    ]);
    assert!(out.contains("  • immich:\n"), "{out}");
    assert!(out.contains("Strategy: round-robin"), "{out}");
    let routing = server.json(&[
        "routing",
        "configure",
        "open-webui",
        "curiios.com,vinaysachdeva.com",
        "contabo-vps,digitalocean-vps",
        "primary-backup",
    ]);
    assert_eq!(routing["strategy"], "primary-backup");
    assert_eq!(
        routing["nodes"],
        serde_json::json!(["contabo-vps", "digitalocean-vps"])
    );
}

#[test]
fn the_seeds_setup_views_exports_and_refusals() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "edge.db");
    seed_setup(&server);

    // The seed's configuration view, line for line, plus where each hostname goes.
    let show = server.ok(&["routing", "show"]);
    for line in [
        "  Multi-Domain, Multi-VPS Configuration\n",
        "\nRegistered Domains:\n  • curiios.com: Personal site\n  • vinaysachdeva.com: Professional site\n",
        "\nRegistered VPS Nodes:\n",
        "  • 100.68.225.92 → 45.8.133.192 (eu)  contabo-vps\n",
        "  • 100.70.123.45 → 167.99.1.1 (us)    digitalocean-vps\n",
        "\nService Routing:\n  • immich:\n    Domains: curiios.com, vinaysachdeva.com\n    \
         VPS: 100.68.225.92, 100.70.123.45\n    Strategy: round-robin\n",
        "  • open-webui:\n    Domains: curiios.com, vinaysachdeva.com\n    \
         VPS: 100.68.225.92, 100.70.123.45\n    Strategy: primary-backup\n",
        "      photos.curiios.com       → contabo-vps (100.68.225.92)\n",
        "      photos.vinaysachdeva.com → digitalocean-vps (100.70.123.45)\n",
        "      chat.curiios.com       → contabo-vps (100.68.225.92, primary)\n",
    ] {
        assert!(show.contains(line), "missing {line:?} in:\n{show}");
    }
    assert!(show.starts_with("━━━━"), "{show}");
    assert!(
        !show.contains("vinay-laptop"),
        "laptops are not VPS nodes:\n{show}"
    );
    let json = server.json(&["routing", "show"]);
    assert_eq!(json["domains"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["nodes"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["routing"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["routes"].as_array().map(Vec::len), Some(4));

    // Lists and details.
    let nodes = server.ok(&["node", "list"]);
    for name in [
        "contabo-vps",
        "digitalocean-vps",
        "vinay-laptop",
        "work-laptop",
    ] {
        assert!(nodes.contains(name), "{name}:\n{nodes}");
    }
    let laptops = server.json(&["node", "list", "--kind", "laptop"]);
    assert_eq!(laptops["items"].as_array().map(Vec::len), Some(2));
    let shown = server.ok(&["node", "show", "100.68.225.92"]);
    assert!(shown.contains("contabo-vps"), "{shown}");
    let domains = server.ok(&["domain", "list"]);
    assert!(domains.contains("Professional site"), "{domains}");
    let services = server.ok(&["service", "list"]);
    assert!(
        services.contains("10.0.0.6:8080,10.0.0.8:8080"),
        "{services}"
    );
    let immich = server.ok(&["service", "show", "immich"]);
    assert!(immich.contains("photos"), "{immich}");

    // The seed's Node Health Status: every node, grouped, with its status.
    let health = server.ok(&["sync", "health"]);
    let laptops_at = health.find("Management Laptops:\n").expect(&health);
    let vps_at = health.find("VPS Edge Nodes:\n").expect(&health);
    assert!(health.starts_with("Node Health Status\n"), "{health}");
    assert!(laptops_at < vps_at, "{health}");
    for (name, address, in_laptops) in [
        ("vinay-laptop", "100.86.112.112", true),
        ("work-laptop", "100.87.123.45", true),
        ("contabo-vps", "100.68.225.92", false),
        ("digitalocean-vps", "100.70.123.45", false),
    ] {
        let head = format!("  • {name} ({address}): ");
        let at = health
            .find(&head)
            .unwrap_or_else(|| panic!("no {head:?} in:\n{health}"));
        assert_eq!(at < vps_at, in_laptops, "{name} in its group:\n{health}");
        let line = health[at..].lines().next().unwrap();
        let status = line[head.len()..].split(' ').next().unwrap();
        assert!(["active", "failed", "offline"].contains(&status), "{line}");
        assert!(line.contains("(last sync: "), "{line}");
        assert!(line.contains("desired "), "{line}");
    }
    let json = server.json(&["sync", "health"]);
    assert_eq!(json["items"].as_array().map(Vec::len), Some(4), "{json}");

    // Node configurations as the agents apply them.
    let traefik = server.ok(&[
        "routing",
        "export-vps",
        "contabo-vps",
        "--format",
        "traefik",
    ]);
    assert!(traefik.contains("photos.curiios.com"), "{traefik}");
    assert!(traefik.contains("10.0.0.5:2283"), "{traefik}");
    let caddy = server.ok(&[
        "routing",
        "export-vps",
        "100.70.123.45",
        "--format",
        "caddy",
    ]);
    assert!(caddy.contains("photos.vinaysachdeva.com"), "{caddy}");
    let hosts = server.ok(&["routing", "export-dns", "vinay-laptop", "--format", "hosts"]);
    assert!(
        hosts
            .lines()
            .any(|l| l.contains("100.68.225.92") && l.contains("photos.curiios.com")),
        "{hosts}"
    );
    let zone = server.ok(&["routing", "export-dns", "work-laptop", "--format", "zone"]);
    assert!(zone.contains("photos"), "{zone}");
    let wrong = server.run(&["routing", "export-dns", "contabo-vps"]);
    assert_eq!(wrong.code, 1, "{}", wrong.all());
    assert!(
        wrong.stderr.contains("export-vps contabo-vps"),
        "{}",
        wrong.stderr
    );

    // Push and reconciliation.
    let pushed = server.ok(&["sync", "push", "--node", "contabo-vps"]);
    assert!(pushed.contains("contabo-vps"), "{pushed}");
    let pushed = server.json(&["sync", "push"]);
    assert!(pushed["pushed"].is_array(), "{pushed}");
    let reconciled = server.ok(&["sync", "reconcile", "--every", "4h"]);
    assert!(reconciled.contains("every 4h"), "{reconciled}");
    let reconciled = server.json(&["sync", "reconcile"]);
    assert_eq!(reconciled["every_seconds"], 14_400, "{reconciled}");

    // An agent token, shown once, with how to use it.
    let token = server.ok_run(&["node", "token", "contabo-vps"]);
    assert!(
        token.stdout.contains("Token (shown once):"),
        "{}",
        token.stdout
    );
    assert!(
        token
            .stderr
            .contains("fleetreg agent --node contabo-vps --out-dir"),
        "{}",
        token.stderr
    );

    // Refusals: code, message and details.
    let run = server.run(&[
        "routing",
        "configure",
        "immich",
        "curiios.com",
        "contabo-vps,nowhere-vps",
        "round-robin",
    ]);
    run.assert_error("NODE_NOT_FOUND");
    assert!(run.stderr.contains("nowhere-vps"), "{}", run.stderr);
    let run = server.run(&[
        "routing",
        "configure",
        "immich",
        "curiios.com",
        "100.68.225.92,100.99.99.99",
        "round-robin",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr
            .contains("no registered node has the overlay address 100.99.99.99"),
        "{}",
        run.stderr
    );
    let run = server.run(&[
        "routing",
        "configure",
        "immich",
        "curiios.com",
        "vinay-laptop",
        "round-robin",
    ]);
    run.assert_error("VALIDATION_ERROR");
    assert!(run.stderr.contains("laptop"), "{}", run.stderr);
    let run = server.run(&["domain", "delete", "curiios.com"]);
    run.assert_error("RESOURCE_IN_USE");
    assert!(run.stderr.contains("immich"), "{}", run.stderr);
    let run = server.run(&[
        "node",
        "register",
        "laptop",
        "100.86.112.113",
        "Bad_Name",
        "me",
    ]);
    run.assert_error("VALIDATION_ERROR");
    assert!(run.stderr.contains("  field: name"), "{}", run.stderr);
    let run = server.run(&["sync", "reconcile", "--every", "4x"]);
    assert_eq!(run.code, 2, "clap refuses it: {}", run.all());

    // The seed's scaling: a third VPS, named PROVIDER-REGION, added to immich.
    let linode = server.json(&[
        "node",
        "register",
        "vps",
        "100.72.200.50",
        "203.0.113.100",
        "asia",
        "linode",
    ]);
    assert_eq!(linode["name"], "linode-asia");
    server.ok(&[
        "routing",
        "configure",
        "immich",
        "curiios.com,vinaysachdeva.com",
        "100.68.225.92,100.70.123.45,100.72.200.50",
        "round-robin",
    ]);
    let show = server.ok(&["routing", "show"]);
    assert!(
        show.contains("    VPS: 100.68.225.92, 100.70.123.45, 100.72.200.50\n"),
        "{show}"
    );

    // Updates read, change and write back; deletions.
    let updated = server.json(&[
        "domain",
        "update",
        "curiios.com",
        "--description",
        "Personal site and blog",
        "--region",
        "eu",
    ]);
    assert_eq!(updated["description"], "Personal site and blog");
    assert_eq!(updated["region"], "eu");
    let updated = server.json(&["domain", "update", "curiios.com", "--no-region"]);
    assert_eq!(updated["region"], Value::Null);
    assert_eq!(updated["description"], "Personal site and blog");
    let updated = server.json(&[
        "service",
        "update",
        "immich",
        "--upstream",
        "10.0.0.5:2283",
        "--upstream",
        "10.0.0.7:2283",
    ]);
    assert_eq!(updated["subdomain"], "photos", "kept: {updated}");
    assert_eq!(updated["upstreams"].as_array().map(Vec::len), Some(2));
    let run = server.run(&["service", "update", "immich"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("nothing to update"), "{}", run.stderr);

    server.ok(&["routing", "delete", "open-webui"]);
    server.run(&["routing", "show", "-o", "json"]);
    let routing = server.json(&["routing", "show"]);
    assert_eq!(routing["routing"].as_array().map(Vec::len), Some(1));
    let deleted = server.ok(&["service", "delete", "open-webui"]);
    assert_eq!(deleted, "service open-webui deleted\n");
    server
        .run(&["service", "show", "open-webui"])
        .assert_error("SERVICE_NOT_FOUND");
    server.ok(&["node", "delete", "work-laptop"]);
    server
        .run(&["node", "show", "work-laptop"])
        .assert_error("NODE_NOT_FOUND");
}

/// An annotated Kubernetes Service of the simulated cluster.
/// `sync reconcile --every 4h` is stored by the server: `sync health` shows
/// it, also after a restart (whose configuration still says hourly).
#[test]
fn the_reconcile_interval_survives_a_restart() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "edge.db");
    let health = server.ok(&["sync", "health"]);
    assert!(
        health.contains("\nReconciliation: every 1h (server configuration), "),
        "{health}"
    );
    server.ok(&["sync", "reconcile", "--every", "4h"]);
    server.stop();

    let server = Server::start(FLEETREG, dir.path(), "edge.db");
    let health = server.ok(&["sync", "health"]);
    assert!(
        health.contains("\nReconciliation: every 4h (set by sync reconcile --every), next in 3h"),
        "{health}"
    );
    let json = server.json(&["sync", "health"]);
    assert_eq!(json["reconcile"]["every_seconds"], 14_400, "{json}");
    assert_eq!(json["reconcile"]["source"], "stored", "{json}");
}

fn exposed(namespace: &str, name: &str, annotations: &[(&str, &str)]) -> ServiceSpec {
    let mut all = BTreeMap::from([("fleetreg.io/expose".to_owned(), "true".to_owned())]);
    for (k, v) in annotations {
        all.insert((*k).into(), (*v).into());
    }
    ServiceSpec {
        namespace: namespace.into(),
        name: name.into(),
        service_type: "LoadBalancer".into(),
        cluster_ip: Some("172.30.4.4".into()),
        ports: vec![ServicePortSpec {
            name: Some("http".into()),
            port: 2283,
            target_port: None,
            protocol: "TCP".into(),
        }],
        annotations: all,
        labels: BTreeMap::new(),
        load_balancer_ips: vec!["10.0.0.5".into()],
    }
}

#[test]
fn services_are_discovered_per_cluster_and_failures_reported() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sim = runtime.block_on(SpawnedSim::start()).expect("sim");
    let admin = sim.admin();
    let apps = runtime
        .block_on(admin.create_cluster("apps", ClusterSpec::default()))
        .expect("sim cluster");
    let immich = exposed("photos", "immich-server", &[("fleetreg.io/name", "immich")]);
    let broken = exposed("wiki", "broken", &[("fleetreg.io/port", "nope")]);
    for service in [&immich, &broken] {
        runtime
            .block_on(admin.put_service("apps", service))
            .expect("sim service");
    }

    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "discovery.db");
    server.ok(&[
        "cluster",
        "register",
        "apps",
        "--api-server-url",
        &apps.api_server_url,
    ]);
    let out = server.ok(&["service", "sync", "--cluster", "apps"]);
    assert!(out.starts_with("apps:\n  registered: immich\n"), "{out}");
    assert!(out.contains("  not taken:\n    wiki/broken: "), "{out}");
    let listed = server.ok(&["service", "list", "--cluster", "apps"]);
    let row: Vec<&str> = listed
        .lines()
        .find(|l| l.starts_with("immich "))
        .unwrap_or_else(|| panic!("{listed}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        [
            "immich",
            "immich",
            "10.0.0.5:2283",
            "active",
            "cluster",
            "apps",
            "photos"
        ],
        "{listed}"
    );
    let again = server.json(&["service", "sync", "--cluster", "apps"]);
    assert_eq!(again["clusters"][0]["report"]["unchanged"], 1, "{again}");

    // A cluster that cannot be read: reported with its error, exit 1.
    server.ok(&[
        "cluster",
        "register",
        "gone-dark",
        "--api-server-url",
        &dead_url(),
    ]);
    let run = server.run(&["service", "sync"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stdout.contains("apps:\n  registered: -\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("gone-dark:\n  error: DISCOVERY_FAILED: "),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("error: 1 of 2 cluster(s) could not be synced: gone-dark"),
        "{}",
        run.stderr
    );
}

#[test]
fn service_sync_without_clusters_says_so() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "edge-sync.db");
    let run = server.ok_run(&["service", "sync"]);
    assert!(
        run.stderr.contains("no clusters registered"),
        "{}",
        run.all()
    );
    let json = server.json(&["service", "sync"]);
    assert_eq!(json["clusters"], serde_json::json!([]));
    let empty = server.ok_run(&["routing", "show"]);
    assert_eq!(
        empty.stdout.matches("  (none)\n").count(),
        3,
        "{}",
        empty.stdout
    );
    server
        .run(&["service", "sync", "--cluster", "nowhere"])
        .assert_error("CLUSTER_NOT_FOUND");
}
