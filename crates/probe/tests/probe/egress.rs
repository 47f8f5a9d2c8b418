//! `health_check.allowed_networks` against real sockets. Loopback gives real
//! allowed and blocked addresses on Linux (127.0.0.1 and 127.0.0.2 are different
//! hosts): a "trap" listener on a blocked address counts every connection it
//! accepts, and each refused check must leave it at zero.

use axum::http::{header::LOCATION, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use fleetreg_model::{Component, Endpoints};
use fleetreg_probe::{BlockReason, ClusterCredential, EgressPolicy, Error, Prober, Target};
use fleetreg_sim::{ClusterSpec, ClusterView, SpawnedSim};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const TIMEOUT: Duration = Duration::from_secs(5);
const BLOCKED: &str = "blocked by health_check.allowed_networks";

/// A listener that accepts and drops connections, counting them; on 127.0.0.1
/// (and on ::1 at the same port when that is free).
struct Trap {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Trap {
    async fn start() -> Trap {
        let v4 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = v4.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let mut listeners = vec![v4];
        if let Ok(v6) = TcpListener::bind(("::1", port)).await {
            listeners.push(v6);
        }
        for listener in listeners {
            let accepted = accepted.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    drop(stream);
                }
            });
        }
        Trap { port, accepted }
    }

    /// Connections accepted so far (after letting a pending accept land).
    async fn accepted(&self) -> usize {
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.accepted.load(Ordering::SeqCst)
    }
}

fn policy(entries: &[&str]) -> EgressPolicy {
    let entries: Vec<String> = entries.iter().map(|e| (*e).to_owned()).collect();
    EgressPolicy::parse(&entries).unwrap()
}

/// Only 127.0.0.2 is allowed: 127.0.0.1 and ::1 (the trap) are not.
fn only_127_0_0_2() -> Prober {
    Prober::new(policy(&["127.0.0.2/32"])).unwrap()
}

/// A target whose API server and every endpoint is `base`.
fn everything_at(base: &str) -> Target {
    Target {
        api_server_url: base.to_owned(),
        endpoints: Endpoints {
            prometheus_url: Some(format!("{base}/prometheus")),
            tempo_url: Some(format!("{base}/tempo")),
            loki_url: Some(format!("{base}/loki")),
        },
        credential: Some(Arc::new(
            ClusterCredential::from_token("s3cret-token".into(), None, false).unwrap(),
        )),
    }
}

/// [`everything_at`] without credentials: for the policy alone, since a
/// token is refused over plain http to any address that is not loopback.
fn anonymous_at(base: &str) -> Target {
    Target {
        credential: None,
        ..everything_at(base)
    }
}

fn cause(report: &fleetreg_probe::HealthReport, component: Component) -> String {
    report
        .failures
        .iter()
        .find(|f| f.component == component)
        .map(|f| f.cause.clone())
        .unwrap_or_else(|| panic!("{component} did not fail: {report:?}"))
}

/// Checks and discovers `base` (API server and all endpoints): every component
/// fails as blocked, discovery is `Error::Blocked`, the trap sees nothing.
async fn assert_blocked(prober: &Prober, trap: &Trap, base: &str, expected: &str) {
    let target = everything_at(base);
    let report = prober.check(&target, TIMEOUT).await;
    assert!(!report.results.api_server, "{base}: {report:?}");
    for component in Component::ALL {
        let cause = cause(&report, component);
        assert!(cause.starts_with(BLOCKED), "{base} {component}: {cause}");
        assert!(cause.contains(expected), "{base} {component}: {cause}");
        assert!(!cause.contains("s3cret"), "{cause}");
    }
    let error = prober.discover(&target, TIMEOUT).await.unwrap_err();
    assert!(
        matches!(error, Error::Blocked { .. }),
        "{base}: discovery failed otherwise: {error:?}"
    );
    assert!(error.to_string().contains(expected), "{error}");
    assert_eq!(trap.accepted().await, 0, "{base}: the trap was contacted");
}

#[tokio::test]
async fn the_trap_counts_connections_when_nothing_blocks_them() {
    // Without this the zero counts below would prove nothing.
    let trap = Trap::start().await;
    let prober = Prober::new(EgressPolicy::default()).unwrap();
    let report = prober
        .check(
            &everything_at(&format!("http://127.0.0.1:{}", trap.port)),
            TIMEOUT,
        )
        .await;
    assert!(!report.results.api_server);
    assert!(trap.accepted().await >= 4, "{report:?}");
}

#[tokio::test]
async fn a_blocked_ip_literal_is_never_contacted() {
    let trap = Trap::start().await;
    let base = format!("http://127.0.0.1:{}", trap.port);
    assert_blocked(
        &only_127_0_0_2(),
        &trap,
        &base,
        "127.0.0.1 is not in an allowed network",
    )
    .await;
}

#[tokio::test]
async fn a_name_resolving_to_a_blocked_address_is_never_contacted() {
    let trap = Trap::start().await;
    let base = format!("http://localhost:{}", trap.port);
    assert_blocked(
        &only_127_0_0_2(),
        &trap,
        &base,
        "is not in an allowed network",
    )
    .await;
    let error = only_127_0_0_2()
        .discover(&everything_at(&base), TIMEOUT)
        .await
        .unwrap_err();
    match error {
        Error::Blocked {
            host,
            address,
            reason,
        } => {
            assert_eq!(host.as_deref(), Some("localhost"));
            assert!(address.is_loopback(), "{address}");
            assert_eq!(reason, BlockReason::NotAllowed);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_ipv4_mapped_ipv6_literal_is_judged_as_ipv4() {
    let trap = Trap::start().await;
    let base = format!("http://[::ffff:127.0.0.1]:{}", trap.port);
    assert_blocked(
        &only_127_0_0_2(),
        &trap,
        &base,
        "127.0.0.1 is not in an allowed network",
    )
    .await;
}

#[tokio::test]
async fn a_decimal_ip_literal_is_judged_by_the_address_it_denotes() {
    let trap = Trap::start().await;
    let prober = only_127_0_0_2();
    for host in ["2130706433", "0x7f000001", "127.1"] {
        let base = format!("http://{host}:{}", trap.port);
        assert_blocked(
            &prober,
            &trap,
            &base,
            "127.0.0.1 is not in an allowed network",
        )
        .await;
    }
}

/// A server on 127.0.0.2 (allowed) whose readiness endpoints redirect.
async fn redirector(trap_port: u16) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let to = |location: String| {
        move || {
            let location = location.clone();
            async move { (StatusCode::FOUND, [(LOCATION, location)]).into_response() }
        }
    };
    let app = Router::new()
        .route(
            "/to-trap/-/ready",
            get(to(format!("http://127.0.0.1:{trap_port}/-/ready"))),
        )
        .route(
            "/to-trap-mapped/-/ready",
            get(to(format!("http://[::ffff:7f00:1]:{trap_port}/-/ready"))),
        )
        .route(
            "/to-trap-by-name/-/ready",
            get(to(format!("http://localhost:{trap_port}/-/ready"))),
        )
        .route(
            "/to-allowed/-/ready",
            get(to(format!("http://{addr}/hop/-/ready"))),
        )
        .route("/hop/-/ready", get(to("/ready-here".to_owned())))
        .route("/ready-here", get(|| async { "ready" }))
        .route("/loop/-/ready", get(to("/loop/-/ready".to_owned())));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn prometheus_only(api_server_url: String, prometheus_url: String) -> Target {
    Target {
        api_server_url,
        endpoints: Endpoints {
            prometheus_url: Some(prometheus_url),
            tempo_url: None,
            loki_url: None,
        },
        credential: None,
    }
}

#[tokio::test]
async fn redirects_are_followed_only_where_allowed() {
    let trap = Trap::start().await;
    let server = redirector(trap.port).await;
    let prober = only_127_0_0_2();
    let api = format!("http://{server}/api");

    for (path, expected) in [
        ("to-trap", "127.0.0.1 is not in an allowed network"),
        ("to-trap-mapped", "127.0.0.1 is not in an allowed network"),
        ("to-trap-by-name", "is not in an allowed network"),
    ] {
        let target = prometheus_only(api.clone(), format!("http://{server}/{path}"));
        let report = prober.check(&target, TIMEOUT).await;
        assert_eq!(report.results.prometheus, Some(false), "{path}: {report:?}");
        let cause = cause(&report, Component::Prometheus);
        assert!(cause.starts_with(BLOCKED), "{path}: {cause}");
        assert!(cause.contains(expected), "{path}: {cause}");
    }
    assert_eq!(trap.accepted().await, 0, "a redirect reached the trap");

    // Two hops to allowed places are followed and pass.
    let target = prometheus_only(api.clone(), format!("http://{server}/to-allowed"));
    let report = prober.check(&target, TIMEOUT).await;
    assert_eq!(report.results.prometheus, Some(true), "{report:?}");

    // A redirect loop ends after five hops.
    let target = prometheus_only(api, format!("http://{server}/loop"));
    let report = prober.check(&target, TIMEOUT).await;
    assert_eq!(report.results.prometheus, Some(false));
    assert!(
        cause(&report, Component::Prometheus).contains("more than 5 redirects"),
        "{report:?}"
    );
}

#[tokio::test]
async fn the_default_policy_refuses_cloud_metadata_at_once() {
    let prober = Prober::new(EgressPolicy::default()).unwrap();
    let slow = Duration::from_secs(30);
    for base in [
        "http://169.254.169.254",
        "http://[::ffff:a9fe:a9fe]",
        "http://2852039166",
        "http://0xa9fea9fe",
        "http://[fd00:ec2::254]",
    ] {
        let started = Instant::now();
        let report = prober.check(&anonymous_at(base), slow).await;
        for component in Component::ALL {
            let cause = cause(&report, component);
            assert!(cause.starts_with(BLOCKED), "{base} {component}: {cause}");
            assert!(cause.contains("metadata"), "{base}: {cause}");
        }
        let error = prober
            .discover(&anonymous_at(base), slow)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Blocked { .. }), "{base}: {error:?}");
        // Refused before any connection attempt, so nowhere near the timeout.
        assert!(started.elapsed() < Duration::from_secs(5), "{base}");
    }
    let report = prober
        .check(&anonymous_at("http://169.254.169.254"), slow)
        .await;
    assert_eq!(
        cause(&report, Component::ApiServer),
        "blocked by health_check.allowed_networks: 169.254.169.254 (link-local/cloud metadata)"
    );
}

/// Every IPv6 form that embeds 169.254.169.254 (issue 11, item 15): each is
/// refused by the default policy and by an open one, before any connection,
/// through the prober as a URL literal too.
const METADATA_IN_IPV6: [(&str, &str); 12] = [
    ("::ffff:a9fe:a9fe", "IPv4-mapped"),
    ("::ffff:0:a9fe:a9fe", "SIIT IPv4-translated"),
    ("::a9fe:a9fe", "IPv4-compatible"),
    ("64:ff9b::a9fe:a9fe", "well-known NAT64"),
    ("64:ff9b:1::a9fe:a9fe", "local-use NAT64 /96"),
    ("64:ff9b:1:a9fe:a9:fe00::", "local-use NAT64 /48"),
    ("64:ff9b:1:0:a9:fea9:fe00::", "local-use NAT64 /64"),
    ("2002:a9fe:a9fe::1", "6to4"),
    ("2001:0:a9fe:a9fe::1", "Teredo server"),
    (
        "2001:0:4136:e378:8000:63bf:5601:5601",
        "Teredo client (inverted)",
    ),
    ("2001:db8::5efe:a9fe:a9fe", "ISATAP"),
    ("2001:db8::200:5efe:a9fe:a9fe", "ISATAP (universal)"),
];

#[test]
fn every_ipv6_form_embedding_the_metadata_address_is_blocked() {
    let metadata: std::net::Ipv4Addr = "169.254.169.254".parse().unwrap();
    let open = policy(&["0.0.0.0/0", "::/0"]);
    for (form, kind) in METADATA_IN_IPV6 {
        let addr: std::net::Ipv6Addr = form.parse().unwrap();
        assert!(
            fleetreg_probe::embedded_ipv4(addr).contains(&metadata),
            "{kind} {form}: {:?}",
            fleetreg_probe::embedded_ipv4(addr)
        );
        for p in [&EgressPolicy::default(), &open] {
            let error = p.check(None, addr.into()).unwrap_err();
            assert_eq!(
                error.reason,
                BlockReason::AlwaysBlocked("link-local/cloud metadata"),
                "{kind} {form}"
            );
        }
    }
}

#[test]
fn embedded_forms_of_ordinary_addresses_stay_allowed() {
    let default = EgressPolicy::default();
    for form in [
        "64:ff9b::a00:1",
        "64:ff9b:1::a00:1",
        "2002:a00:1::1",
        "2001:db8::1",
        "2001:0:a00:1::1",
        "::1",
        "::ffff:0:a00:1",
    ] {
        assert!(default.check(None, form.parse().unwrap()).is_ok(), "{form}");
    }
    // The translated forms are judged as the IPv4 address they stand for.
    let only_10 = policy(&["10.0.0.0/8"]);
    for form in ["::ffff:0:a00:1", "64:ff9b:1::a00:1", "64:ff9b::a00:1"] {
        let addr: std::net::IpAddr = form.parse().unwrap();
        assert!(only_10.check(None, addr).is_ok(), "{form}");
        assert_eq!(
            fleetreg_probe::canonical(addr),
            "10.0.0.1".parse::<std::net::IpAddr>().unwrap()
        );
    }
}

#[tokio::test]
async fn urls_with_embedded_metadata_literals_are_refused_before_connecting() {
    let prober = Prober::new(EgressPolicy::default()).unwrap();
    let slow = Duration::from_secs(30);
    for (form, kind) in METADATA_IN_IPV6 {
        let base = format!("http://[{form}]");
        let started = Instant::now();
        // Anonymous: the egress policy alone must refuse it.
        let target = Target {
            credential: None,
            ..everything_at(&base)
        };
        let report = prober.check(&target, slow).await;
        for component in Component::ALL {
            let cause = cause(&report, component);
            assert!(cause.starts_with(BLOCKED), "{kind} {component}: {cause}");
            assert!(cause.contains("metadata"), "{kind}: {cause}");
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{kind}");
    }
}

async fn sim_cluster() -> (SpawnedSim, ClusterView) {
    let sim = SpawnedSim::start().await.unwrap();
    let view = sim
        .admin()
        .create_cluster("allowed", ClusterSpec::default())
        .await
        .unwrap();
    (sim, view)
}

fn sim_target(view: &ClusterView, host: &str) -> Target {
    let at = |url: &str| url.replacen("127.0.0.1", host, 1);
    Target {
        api_server_url: at(&view.api_server_url),
        endpoints: Endpoints {
            prometheus_url: Some(at(&view.prometheus_url)),
            tempo_url: Some(at(&view.tempo_url)),
            loki_url: Some(at(&view.loki_url)),
        },
        credential: None,
    }
}

#[tokio::test]
async fn allowed_addresses_and_hosts_still_work() {
    let (_sim, view) = sim_cluster().await;
    assert!(view.api_server_url.starts_with("http://127.0.0.1:"));
    for (entries, host) in [
        (&["127.0.0.0/8"][..], "127.0.0.1"),
        (&["127.0.0.1"][..], "127.0.0.1"),
        (&["localhost"][..], "localhost"),
        (&["10.0.0.0/8", "::1", "127.0.0.1/32"][..], "localhost"),
        (&[][..], "127.0.0.1"),
    ] {
        let prober = Prober::new(policy(entries)).unwrap();
        let target = sim_target(&view, host);
        let report = prober.check(&target, TIMEOUT).await;
        assert!(report.failures.is_empty(), "{entries:?} {host}: {report:?}");
        assert!(report.results.api_server);
        prober.discover(&target, TIMEOUT).await.unwrap();
    }
    // The same cluster, not allowed: refused.
    let prober = Prober::new(policy(&["*.example.com"])).unwrap();
    let report = prober.check(&sim_target(&view, "localhost"), TIMEOUT).await;
    assert!(!report.results.api_server);
    assert!(cause(&report, Component::ApiServer).contains("matches no allowed host pattern"));
}

#[test]
fn invalid_entries_fail_at_start_up() {
    let error = EgressPolicy::parse(&["10.0.0.0/8".into(), "10.0.0.300".into()]).unwrap_err();
    assert_eq!(error.entry, "10.0.0.300");
    let message = Error::from(error).to_string();
    assert!(message.contains("\"10.0.0.300\""), "{message}");
}
