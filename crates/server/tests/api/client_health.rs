//! Live health of clients (`GET /api/v1/clients/{name}/health` and the
//! periodic checks) against real HTTP(S) servers the test starts on
//! loopback: a healthy https site with a certificate from the test's own CA
//! (trusted through `client_health.ca_file`), a slow one, one with an
//! untrusted certificate, one answering 500, and ones outside
//! `health_check.allowed_networks`, which must never see a connection.

use crate::helpers::{client_with_token, spawn_app_with, Backend, TestApp};
use chrono::{DateTime, Datelike, Duration as Days, NaiveDate, TimeZone, Utc};
use fleetreg_model::Clock;
use fleetreg_server::settings::Settings;
use fleetreg_server::tls::{server_config, TlsFiles};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// `client_health.timeout_seconds` in these tests.
const TIMEOUT_SECONDS: u64 = 2;

/// A certificate authority of the test's own.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new() -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "client-health test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    /// A server certificate for 127.0.0.1 valid until midnight (UTC) of
    /// `not_after`, written with its key to `dir`.
    fn server_files(&self, dir: &Path, not_after: NaiveDate) -> TlsFiles {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(
            not_after.year(),
            u8::try_from(not_after.month()).unwrap(),
            u8::try_from(not_after.day()).unwrap(),
        );
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        write_files(dir, "trusted", &cert.pem(), &key.serialize_pem())
    }
}

/// A self-signed certificate for 127.0.0.1 that nothing trusts.
fn untrusted_files(dir: &Path) -> TlsFiles {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    write_files(
        dir,
        "untrusted",
        &certified.cert.pem(),
        &certified.signing_key.serialize_pem(),
    )
}

fn write_files(dir: &Path, name: &str, cert: &str, key: &str) -> TlsFiles {
    let files = TlsFiles {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&files.cert, cert).unwrap();
    std::fs::write(&files.key, key).unwrap();
    files
}

/// A loopback HTTP(S) server answering every request with `status` after
/// `delay`, counting the connections it accepts.
struct Site {
    url: String,
    accepted: Arc<AtomicUsize>,
    status: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Site {
    async fn start(ip: &str, tls: Option<&TlsFiles>, status: u16, delay: Duration) -> Site {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // `answer` speaks HTTP/1.1 only: offer nothing else by ALPN.
        let acceptor = tls.map(|files| {
            let mut config = (*server_config(files).unwrap()).clone();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let accepted = Arc::new(AtomicUsize::new(0));
        let status = Arc::new(AtomicU16::new(status));
        let (count, answer_with) = (accepted.clone(), status.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                let status = answer_with.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                answer(stream, status, delay).await;
                            }
                        }
                        None => answer(tcp, status, delay).await,
                    }
                });
            }
        });
        Site {
            url: format!("{scheme}://{ip}:{port}/"),
            accepted,
            status,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Reads a request head, waits `delay`, answers `status` and closes.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, status: u16, delay: Duration) {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65_536 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    tokio::time::sleep(delay).await;
    let response =
        format!("HTTP/1.1 {status} Test\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The settings of these tests: loopback 127.0.0.1 only, a short timeout,
/// the test CA trusted, the manual clock.
fn adjust(settings: &mut Settings, ca_file: &Path, clock: &Clock) {
    settings.health_check.allowed_networks = vec!["127.0.0.1/32".into()];
    settings.client_health.timeout_seconds = TIMEOUT_SECONDS;
    settings.client_health.ca_file = Some(ca_file.to_owned());
    settings.clock = clock.clone();
}

/// Creates a client with `status` and `urls`; panics unless 201.
async fn create_client(app: &TestApp, name: &str, status: &str, urls: Value) -> Value {
    let response = app
        .client
        .post(app.url("/api/v1/clients"))
        .json(&json!({ "name": name, "status": status, "urls": urls }))
        .send()
        .await
        .unwrap();
    let code = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(code, 201, "{body}");
    body
}

/// The URL results of a health answer, by app.
fn by_app(health: &Value) -> std::collections::BTreeMap<String, Value> {
    health["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["app"].as_str().unwrap().to_owned(), u.clone()))
        .collect()
}

/// The `CLIENT_HEALTH_CHANGED` events so far.
async fn health_events(app: &TestApp) -> Vec<Value> {
    let page: Value = app
        .get("/api/v1/events?after=0&limit=1000")
        .await
        .json()
        .await
        .unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "CLIENT_HEALTH_CHANGED")
        .cloned()
        .collect()
}

/// Midnight (UTC) of `date`.
fn midnight(date: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).unwrap())
}

macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(crate::helpers::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(crate::helpers::Backend::Postgres).await;
            }
        }
    };
}

on_both_backends!(live_check_of_every_kind_of_url);

async fn live_check_of_every_kind_of_url(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let clock = Clock::manual(Utc::now());
    // As the clock keeps it (microseconds).
    let now = clock.now();
    let Some(app) = spawn_app_with(backend, |s| adjust(s, &ca_file, &clock)).await else {
        return;
    };
    let expires = now.date_naive() + Days::days(91);
    let trusted = ca.server_files(dir.path(), expires);
    let untrusted = untrusted_files(dir.path());
    let no_wait = Duration::ZERO;
    let healthy = Site::start("127.0.0.1", Some(&trusted), 200, no_wait).await;
    let slow = Site::start("127.0.0.1", None, 200, Duration::from_secs(30)).await;
    let bad_tls = Site::start("127.0.0.1", Some(&untrusted), 200, no_wait).await;
    let broken = Site::start("127.0.0.1", None, 500, no_wait).await;
    let outside = Site::start("127.0.0.2", None, 200, no_wait).await;
    let asleep = Site::start("127.0.0.1", None, 200, no_wait).await;
    let redirect = Site::start("127.0.0.1", None, 302, no_wait).await;
    let client = create_client(
        &app,
        "acme",
        "deployed",
        json!({
            "nextcloud": healthy.url, "slow": slow.url, "selfsigned": bad_tls.url,
            "broken": broken.url, "outside": outside.url, "moved": redirect.url,
        }),
    )
    .await;

    // A viewer may check (a read).
    let viewer = crate::rbac::create_token(&app, "health-viewer", "viewer", None).await;
    let viewer = client_with_token(viewer["token"].as_str().unwrap());
    let started = Instant::now();
    let response = viewer
        .get(app.url("/api/v1/clients/acme/health"))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), 200);
    let health: Value = response.json().await.unwrap();
    // All URLs at once, each bounded: about one timeout, never the slow site's 30 s.
    assert!(
        took < Duration::from_secs(TIMEOUT_SECONDS + 3),
        "took {took:?}"
    );
    assert!(
        took >= Duration::from_secs(TIMEOUT_SECONDS),
        "took {took:?}"
    );

    assert_eq!(health["client"], "acme");
    assert_eq!(health["client_id"], client["id"]);
    assert_eq!(
        health["checked_at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        now,
        "dated by the server's clock"
    );
    assert_eq!(health["state"], "DEGRADED", "{health}");
    assert_eq!(
        health["reason"],
        "4 of 6 URLs failed: broken (HTTP_STATUS), outside (REFUSED), selfsigned (TLS_ERROR), slow (TIMEOUT)"
    );
    let urls = by_app(&health);
    assert_eq!(urls.len(), 6);

    let ok = &urls["nextcloud"];
    assert_eq!(ok["healthy"], true, "{ok}");
    assert_eq!(ok["outcome"], "OK");
    assert_eq!(ok["status_code"], 200);
    assert!(ok["latency_ms"].as_u64().unwrap() < TIMEOUT_SECONDS * 1000);
    assert_eq!(ok["error"], Value::Null);
    let not_after = midnight(expires);
    assert_eq!(
        ok["tls_not_after"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        not_after
    );
    assert_eq!(
        ok["tls_days_left"].as_i64().unwrap(),
        (not_after - now).num_days()
    );
    assert!((90..=91).contains(&ok["tls_days_left"].as_i64().unwrap()));

    let moved = &urls["moved"];
    assert_eq!(moved["healthy"], true, "a 3xx is an answer: {moved}");
    assert_eq!(moved["status_code"], 302);
    assert_eq!(moved["tls_not_after"], Value::Null, "plain http");

    let timed_out = &urls["slow"];
    assert_eq!(timed_out["healthy"], false);
    assert_eq!(timed_out["outcome"], "TIMEOUT");
    assert_eq!(timed_out["status_code"], Value::Null);
    assert!(
        timed_out["error"]
            .as_str()
            .unwrap()
            .contains("no answer within"),
        "{timed_out}"
    );
    assert_eq!(slow.accepted(), 1, "it was asked");

    let tls = &urls["selfsigned"];
    assert_eq!(tls["healthy"], false);
    assert_eq!(tls["outcome"], "TLS_ERROR", "{tls}");
    assert!(
        tls["error"].as_str().unwrap().contains("certificate"),
        "{tls}"
    );
    assert_eq!(tls["tls_not_after"], Value::Null);

    let failed = &urls["broken"];
    assert_eq!(failed["healthy"], false);
    assert_eq!(failed["outcome"], "HTTP_STATUS");
    assert_eq!(failed["status_code"], 500);
    assert_eq!(failed["error"], "answered HTTP 500");

    let refused = &urls["outside"];
    assert_eq!(refused["healthy"], false);
    assert_eq!(refused["outcome"], "REFUSED");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("blocked by health_check.allowed_networks: 127.0.0.2"),
        "{refused}"
    );
    assert_eq!(outside.accepted(), 0, "never connected to");

    // A check on demand records nothing.
    assert_eq!(app.store.client_health("acme").await.unwrap(), None);
    assert!(health_events(&app).await.is_empty());

    // All failing: DOWN; none at all: NOT_CHECKED, nothing fetched.
    create_client(&app, "down", "deployed", json!({ "broken": broken.url })).await;
    let down: Value = app
        .get("/api/v1/clients/down/health")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(down["state"], "DOWN");
    create_client(
        &app,
        "resting",
        "maintenance",
        json!({ "site": asleep.url }),
    )
    .await;
    let resting: Value = app
        .get("/api/v1/clients/resting/health")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(resting["state"], "NOT_CHECKED");
    assert!(
        resting["reason"].as_str().unwrap().contains("maintenance"),
        "{resting}"
    );
    assert_eq!(resting["urls"], json!([]));
    assert_eq!(
        asleep.accepted(),
        0,
        "a client in maintenance is not checked"
    );
    create_client(&app, "bare", "deployed", json!({})).await;
    let bare: Value = app
        .get("/api/v1/clients/bare/health")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bare["state"], "NOT_CHECKED");
    assert!(bare["reason"].as_str().unwrap().contains("no URLs"));

    let missing = app.get("/api/v1/clients/ghost/health").await;
    crate::helpers::assert_error(missing, 404, "CLIENT_NOT_FOUND").await;
    let invalid = app.get("/api/v1/clients/Not_A_Name/health").await;
    crate::helpers::assert_error(invalid, 404, "CLIENT_NOT_FOUND").await;
}

on_both_backends!(a_name_resolving_outside_allowed_networks_is_refused);

async fn a_name_resolving_outside_allowed_networks_is_refused(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| {
        s.health_check.allowed_networks = vec!["10.0.0.0/8".into()];
        s.client_health.timeout_seconds = TIMEOUT_SECONDS;
    })
    .await
    else {
        return;
    };
    let site = Site::start("127.0.0.1", None, 200, Duration::ZERO).await;
    let port = site.url.rsplit(':').next().unwrap().trim_end_matches('/');
    let by_name = format!("http://localhost:{port}/");
    create_client(&app, "named", "deployed", json!({ "app": by_name })).await;
    let health: Value = app
        .get("/api/v1/clients/named/health")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(health["state"], "DOWN", "{health}");
    let url = &health["urls"][0];
    assert_eq!(url["outcome"], "REFUSED", "{url}");
    assert!(
        url["error"]
            .as_str()
            .unwrap()
            .contains("resolved from localhost")
            || url["error"]
                .as_str()
                .unwrap()
                .contains("localhost matches no"),
        "{url}"
    );
    assert_eq!(site.accepted(), 0, "never connected to");
}

on_both_backends!(periodic_checks_record_each_change_once);

async fn periodic_checks_record_each_change_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let start = Utc::now();
    let clock = Clock::manual(start);
    let Some(app) = spawn_app_with(backend, |s| {
        adjust(s, &ca_file, &clock);
        // Hourly: with the clock standing still the server's own loop finds
        // nothing due; the test runs the rounds.
        s.client_health.interval_seconds = 3600;
    })
    .await
    else {
        return;
    };
    let monitor = app.client_health.clone().expect("periodic checks are on");
    let trusted = ca.server_files(dir.path(), start.date_naive() + Days::days(30));
    let site = Site::start("127.0.0.1", Some(&trusted), 200, Duration::ZERO).await;
    let resting = Site::start("127.0.0.1", None, 200, Duration::ZERO).await;
    let alpha = create_client(&app, "alpha", "deployed", json!({ "app": site.url })).await;
    create_client(&app, "beta", "maintenance", json!({ "app": resting.url })).await;
    create_client(&app, "gamma", "pending", json!({ "app": resting.url })).await;

    let hours = |h: i64| start + Days::hours(h);
    let first = monitor.tick_at(hours(2)).await;
    assert_eq!(first.checked, 1, "only the deployed client: {first:?}");
    assert_eq!(
        monitor.scheduled().await,
        [alpha["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap()]
    );
    let recorded = app.store.client_health("alpha").await.unwrap().unwrap();
    assert_eq!(recorded.state.as_str(), "HEALTHY");
    assert_eq!(
        recorded.urls[0].tls_days_left,
        Some(29),
        "29 days and a part of one left at the check"
    );

    // The site fails: one HEALTHY -> DOWN event, then nothing while it stays down.
    site.status.store(503, Ordering::SeqCst);
    let second = monitor.tick_at(hours(4)).await;
    assert_eq!((second.checked, second.changed), (1, 1), "{second:?}");
    let third = monitor.tick_at(hours(6)).await;
    assert_eq!((third.checked, third.changed), (1, 0), "{third:?}");
    // Nothing is due again within the hour.
    assert_eq!(
        monitor.tick_at(hours(6) + Days::minutes(30)).await.checked,
        0
    );

    let events = health_events(&app).await;
    let moves: Vec<(Value, Value)> = events
        .iter()
        .map(|e| {
            (
                e["payload"]["old_state"].clone(),
                e["payload"]["new_state"].clone(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            (json!("NOT_CHECKED"), json!("HEALTHY")),
            (json!("HEALTHY"), json!("DOWN")),
        ]
    );
    let down = &events[1];
    assert_eq!(down["resource"], "client");
    assert_eq!(down["resource_id"], alpha["id"]);
    assert_eq!(down["payload"]["name"], "alpha");
    assert_eq!(down["payload"]["client_id"], alpha["id"]);
    assert_eq!(down["payload"]["health"]["state"], "DOWN");
    assert_eq!(down["payload"]["health"]["urls"][0]["status_code"], 503);

    // An observation: the client's revision did not move.
    let now: Value = app.get("/api/v1/clients/alpha").await.json().await.unwrap();
    assert_eq!(now["revision"], alpha["revision"]);
    assert_eq!(
        resting.accepted(),
        0,
        "maintenance and pending clients are not checked"
    );
    assert_eq!(site.accepted(), 3);

    // Moved to maintenance: no longer scheduled, not checked.
    let response = app
        .client
        .post(app.url("/api/v1/clients/alpha/status"))
        .json(&json!({ "status": "maintenance" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let fourth = monitor.tick_at(hours(10)).await;
    assert_eq!(fourth.checked, 0, "{fourth:?}");
    assert!(monitor.scheduled().await.is_empty());
    assert_eq!(site.accepted(), 3);

    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("fleetreg_client_health_checks_total{state=\"DOWN\"}"),
        "{metrics}"
    );
}
