//! The renderers of a node's desired configuration (issue 13 item 4)
//! against the real programs: the Caddy JSON loaded into a real Caddy that
//! proxies to small local upstreams (round-robin alternates, failover
//! prefers the primary, skips it while it is dead and returns to it), the
//! zone files checked by Knot's zone loader and served by a real `knotd`
//! (every hostname resolves to its record's address, a re-rendered zone with
//! a higher serial replaces the old answers), and the Traefik YAML read back
//! against the file provider's documented structure. The configurations come
//! from `RoutingPlan` over an edge snapshot, as the sync controller computes
//! them. Caddy and Knot tests skip without the programs unless
//! `FLEETREG_REQUIRE_CADDY=1` / `FLEETREG_REQUIRE_KNOT=1`.

use fleetreg_model::{
    render_caddy, render_file_set, render_traefik, render_zones, zone_serial, Balance,
    CaddyOptions, Domain, EdgeSnapshot, NodeConfig, NodeKind, NodeView, RenderOptions, RoutingPlan,
    RoutingStrategy, TraefikOptions, ZoneOptions,
};
use fleetreg_testkit::edge_fixture::{self, routing, service, view};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

fn domain(name: &str) -> Domain {
    edge_fixture::domain(name, "", None)
}

fn node(name: &str, kind: NodeKind, address: &str, up: bool) -> NodeView {
    view(&edge_fixture::node(name, kind, address, None, None), up)
}

/// The registry: `photos` (round-robin) and `chat` (primary-backup) over
/// `example.test` and `example.org`, on vps1 and vps2, plus a laptop.
fn snapshot(photos: &[String], chat: &[String], vps1_up: bool) -> EdgeSnapshot {
    let domains = ["example.test", "example.org"];
    EdgeSnapshot {
        domains: domains.iter().map(|d| domain(d)).collect(),
        nodes: vec![
            node("vps1", NodeKind::Vps, "100.64.0.1", vps1_up),
            node("vps2", NodeKind::Vps, "fd7a:115c:a1e0::2", true),
            node("laptop", NodeKind::Laptop, "100.64.0.9", true),
        ],
        services: vec![
            service("photos", "photos", photos),
            service("chat", "chat", chat),
        ],
        routings: vec![
            routing(
                "photos",
                &domains,
                &["vps1", "vps2"],
                RoutingStrategy::RoundRobin,
            ),
            routing(
                "chat",
                &domains,
                &["vps1", "vps2"],
                RoutingStrategy::PrimaryBackup,
            ),
        ],
    }
}

/// `name`'s desired configuration under `snapshot`.
fn config_of(snapshot: &EdgeSnapshot, name: &str) -> NodeConfig {
    let plan = RoutingPlan::compute(snapshot);
    let node = snapshot
        .nodes
        .iter()
        .find(|n| n.name.as_str() == name)
        .unwrap();
    plan.node_config(node)
}

/// A tiny HTTP upstream on 127.0.0.1 answering every request with its name
/// (and `Connection: close`, so the proxy keeps no connection to it that
/// would outlive [`Backend::stop`]).
struct Backend {
    name: &'static str,
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Backend {
    async fn start(name: &'static str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        Backend {
            name,
            addr,
            task: Some(tokio::spawn(serve(listener, name))),
        }
    }

    fn upstream(&self) -> String {
        self.addr.to_string()
    }

    /// Closes the listener and every connection: dials now fail.
    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same address.
    async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.task = Some(tokio::spawn(serve(listener, self.name)));
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn serve(listener: TcpListener, name: &'static str) {
    // Dropping the set (when this task is aborted) aborts the connections.
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            let answer = service_fn(move |_request| async move {
                Ok::<_, Infallible>(Response::new(name.to_owned()))
            });
            let _ = http1::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), answer)
                .await;
        });
    }
}

/// `GET http://hostname:PORT/` sent to Caddy at `addr`: the body of a 200.
async fn get(client: &reqwest::Client, hostname: &str, port: u16) -> String {
    let response = client
        .get(format!("http://{hostname}:{port}/"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {hostname}: {e}"));
    assert_eq!(response.status(), 200, "GET {hostname}");
    response.text().await.unwrap()
}

/// Round-robin alternates; failover stays on the primary, moves to the
/// backup as soon as the primary is dead, and returns when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_proxies_round_robin_and_failover() {
    let Some(caddy) = tokio::task::spawn_blocking(fleetreg_testkit::caddy)
        .await
        .unwrap()
    else {
        return;
    };
    let photos_a = Backend::start("photos-a").await;
    let photos_b = Backend::start("photos-b").await;
    let mut primary = Backend::start("chat-primary").await;
    let backup = Backend::start("chat-backup").await;
    let registry = snapshot(
        &[photos_a.upstream(), photos_b.upstream()],
        &[primary.upstream(), backup.upstream()],
        true,
    );
    let config = config_of(&registry, "vps1");
    let carried: Vec<(&str, Balance)> = config
        .routes
        .iter()
        .map(|r| (r.hostname.as_str(), r.balance))
        .collect();
    assert_eq!(
        carried,
        [
            ("chat.example.org", Balance::Failover),
            ("chat.example.test", Balance::Failover),
            ("photos.example.org", Balance::RoundRobin),
            ("photos.example.test", Balance::RoundRobin),
        ]
    );

    let port = fleetreg_testkit::free_port();
    let options = CaddyOptions {
        listen: vec![format!("127.0.0.1:{port}")],
        automatic_https: false,
        admin_listen: caddy.admin_listen().to_owned(),
        fail_duration: Duration::from_secs(1),
        ..CaddyOptions::default()
    };
    let rendered = render_caddy(&config, &options);
    tokio::task::block_in_place(|| caddy.load(&rendered))
        .unwrap_or_else(|e| panic!("{e}\n{}", caddy.log()));
    let at: SocketAddr = ([127, 0, 0, 1], port).into();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .resolve("photos.example.test", at)
        .resolve("chat.example.test", at)
        .resolve("other.example.test", at)
        .build()
        .unwrap();

    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(get(&client, "photos.example.test", port).await);
    }
    assert!(
        seen.windows(2).all(|w| w[0] != w[1]),
        "round-robin does not alternate: {seen:?}"
    );
    assert!(seen.iter().all(|s| s == "photos-a" || s == "photos-b"));

    for _ in 0..4 {
        assert_eq!(
            get(&client, "chat.example.test", port).await,
            "chat-primary"
        );
    }
    // A hostname the node does not carry reaches no upstream.
    let other = client
        .get(format!("http://other.example.test:{port}/"))
        .send()
        .await
        .unwrap();
    assert!(other.text().await.unwrap().is_empty());

    primary.stop().await;
    for _ in 0..4 {
        assert_eq!(
            get(&client, "chat.example.test", port).await,
            "chat-backup",
            "with the primary dead"
        );
    }

    primary.restart().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if get(&client, "chat.example.test", port).await == "chat-primary" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "failover never returned to the primary\n{}",
            caddy.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..3 {
        assert_eq!(
            get(&client, "chat.example.test", port).await,
            "chat-primary"
        );
    }
}

/// `name`'s records as `(hostname, record type, address)`.
fn expected_answers(config: &NodeConfig) -> Vec<(String, &'static str, String)> {
    config
        .records
        .iter()
        .map(|r| {
            let kind = match r.address {
                IpAddr::V4(_) => "A",
                IpAddr::V6(_) => "AAAA",
            };
            (r.hostname.clone(), kind, r.address.to_string())
        })
        .collect()
}

/// Every zone passes Knot's checks; served by knotd, every hostname resolves
/// to its record's address; after a change (vps1 down: its hostnames move to
/// vps2) and a re-render with a higher serial, the reloaded zones answer the
/// new addresses.
#[test]
fn knot_serves_the_rendered_zones() {
    let Some(knot) = fleetreg_testkit::knot(&[]) else {
        return;
    };
    let upstreams = |port: u16| vec![format!("127.0.0.1:{port}")];
    let options = ZoneOptions::default();
    let mut previous: Option<Vec<(String, &str, String)>> = None;
    for (revision, vps1_up) in [(41_i64, true), (57, false)] {
        let laptop = config_of(&snapshot(&upstreams(1), &upstreams(2), vps1_up), "laptop");
        assert_eq!(laptop.records.len(), 4);
        let serial = zone_serial(revision);
        let zones = render_zones(&laptop, serial, &options);
        let origins: Vec<&str> = zones.iter().map(|z| z.origin.as_str()).collect();
        assert_eq!(origins, ["example.org", "example.test"]);
        // The file set an agent writes holds the same zones.
        let files = render_file_set(&laptop, revision, &RenderOptions::default());
        for zone in &zones {
            let path = format!("zones/{}.zone", zone.origin);
            let file = files.iter().find(|f| f.path == path).expect(&path);
            assert_eq!(file.content, zone.text);
            let said = fleetreg_testkit::check_zone(zone.origin.as_str(), &zone.text)
                .unwrap_or_else(|e| panic!("{e}\n{}", zone.text));
            assert!(!said.contains("warning"), "{said}\n{}", zone.text);
        }

        let served: Vec<(&str, &str)> = zones
            .iter()
            .map(|z| (z.origin.as_str(), z.text.as_str()))
            .collect();
        knot.set_zones(&served).unwrap();
        for zone in &zones {
            assert!(
                knot.wait_for_serial(zone.origin.as_str(), serial),
                "{} not served at serial {serial}\n{}",
                zone.origin,
                knot.log()
            );
            assert_eq!(
                knot.query(&format!("ns.{}", zone.origin), "A"),
                ["127.0.0.1"]
            );
        }
        let expected = expected_answers(&laptop);
        for (hostname, kind, address) in &expected {
            assert_eq!(
                knot.query(hostname, kind),
                [address.as_str()],
                "{hostname} {kind} at revision {revision}"
            );
            let other = if *kind == "A" { "AAAA" } else { "A" };
            assert!(knot.query(hostname, other).is_empty(), "{hostname} {other}");
        }
        if let Some(before) = previous.replace(expected.clone()) {
            assert_ne!(before, expected, "the change moved no hostname");
            // photos.example.test was on vps1 (IPv4), now on vps2 (IPv6).
            assert!(before.contains(&("photos.example.test".into(), "A", "100.64.0.1".into())));
            assert!(expected.contains(&(
                "photos.example.test".into(),
                "AAAA",
                "fd7a:115c:a1e0::2".into()
            )));
        }
    }
}

/// A broken zone fails the same check (the checker is not a no-op).
#[test]
fn the_zone_checker_refuses_broken_zones() {
    if fleetreg_testkit::knot(&[]).is_none() {
        return;
    }
    let laptop = config_of(
        &snapshot(&["127.0.0.1:1".into()], &["127.0.0.1:2".into()], true),
        "laptop",
    );
    let zone = &render_zones(&laptop, 1, &ZoneOptions::default())[0];
    let broken = format!("{}photos IN CNAME elsewhere\n", zone.text);
    assert!(fleetreg_testkit::check_zone(zone.origin.as_str(), &broken).is_err());
}

/// The Traefik file for the same VPS, read back: a router per carried
/// hostname with its `Host()` rule, round-robin services listing every
/// upstream, failover services naming a health-checked main service and a
/// fallback.
#[test]
fn traefik_configuration_matches_the_routes() {
    let photos = vec!["10.0.0.5:2283".to_owned(), "10.0.0.6:2283".to_owned()];
    let chat = vec!["10.0.0.7:3000".to_owned(), "10.0.0.8:3000".to_owned()];
    let config = config_of(&snapshot(&photos, &chat, true), "vps1");
    let text = render_traefik(&config, &TraefikOptions::default());
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let http = &doc["http"];
    for route in &config.routes {
        let name = route.hostname.replace('.', "-");
        let router = &http["routers"][name.as_str()];
        assert_eq!(
            router["rule"].as_str(),
            Some(format!("Host(`{}`)", route.hostname).as_str())
        );
        assert_eq!(router["service"].as_str(), Some(name.as_str()));
        assert_eq!(router["entryPoints"][0].as_str(), Some("websecure"));
        assert_eq!(router["tls"]["certResolver"].as_str(), Some("letsencrypt"));
        let service = &http["services"][name.as_str()];
        let urls = |lb: &serde_yaml::Value| -> Vec<String> {
            lb["loadBalancer"]["servers"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|s| s["url"].as_str().unwrap().to_owned())
                .collect()
        };
        match route.balance {
            Balance::RoundRobin => assert_eq!(
                urls(service),
                ["http://10.0.0.5:2283", "http://10.0.0.6:2283"]
            ),
            Balance::Failover => {
                let main = service["failover"]["service"].as_str().unwrap();
                let fallback = service["failover"]["fallback"].as_str().unwrap();
                let main = &http["services"][main];
                assert_eq!(urls(main), ["http://10.0.0.7:3000"]);
                assert!(main["loadBalancer"]["healthCheck"]["path"].is_string());
                assert_eq!(urls(&http["services"][fallback]), ["http://10.0.0.8:3000"]);
            }
        }
    }
}
