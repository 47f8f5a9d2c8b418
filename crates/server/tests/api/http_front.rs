//! The HTTP front door under hostile clients (issue 11, items 2, 4, 11, 13):
//! metric labels from closed sets, bounded request ids, timeouts and a
//! connection limit for plain and TLS connections, and the error envelope on
//! answers hyper writes by itself.

use crate::helpers::{assert_error, spawn_app_with, Backend, TestApp, TEST_ADMIN_TOKEN};
use crate::tls::self_signed;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single wait in these tests may take before it fails.
const PATIENCE: Duration = Duration::from_secs(10);

fn socket_of(app: &TestApp) -> SocketAddr {
    app.address
        .trim_start_matches("http://")
        .parse()
        .expect("host:port")
}

async fn start(adjust: impl FnOnce(&mut fleetreg_server::settings::Settings)) -> TestApp {
    spawn_app_with(Backend::Sqlite, adjust)
        .await
        .expect("sqlite app")
}

/// Writes `request` on `stream` and reads until the server closes it.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, request: &[u8]) -> String {
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes in time");
    String::from_utf8_lossy(&answer).into_owned()
}

async fn raw(app: &TestApp, request: &[u8]) -> String {
    exchange(TcpStream::connect(socket_of(app)).await.unwrap(), request).await
}

/// Asserts that the raw `answer` is one complete error envelope with
/// `status` and `code`, a JSON content type and a plain request id; returns
/// the body.
fn assert_raw_error(answer: &str, status: u16, code: &str) -> Value {
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in {answer:?}"));
    assert!(
        head.starts_with(&format!("HTTP/1.1 {status} ")),
        "status of {head:?}"
    );
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    assert_eq!(
        header("content-type").as_deref(),
        Some("application/json"),
        "{head}"
    );
    let id = header("x-request-id").unwrap_or_else(|| panic!("no request id in {head}"));
    assert!(
        (1..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)),
        "{id:?}"
    );
    let body: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: body of {answer:?}"));
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(body["error"]["details"].is_object(), "{body}");
    body
}

/// Series of `metric` in a `/metrics` text.
fn series<'a>(text: &'a str, metric: &str) -> Vec<&'a str> {
    let prefix = format!("{metric}{{");
    text.lines().filter(|l| l.starts_with(&prefix)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_labels_come_from_closed_sets() {
    let app = start(|_| {}).await;
    // 2,000 requests, each with a method and (half of them) a path never seen
    // before, pipelined on four connections.
    let mut connections = Vec::new();
    for batch in 0..4 {
        let address = socket_of(&app);
        connections.push(tokio::spawn(async move {
            let mut requests = String::new();
            for i in 0..500 {
                let n = batch * 500 + i;
                let path = if n % 2 == 0 {
                    "/health".to_owned()
                } else {
                    format!("/nope-{n:05}")
                };
                let close = if i == 499 {
                    "connection: close\r\n"
                } else {
                    ""
                };
                requests.push_str(&format!(
                    "M{n:05}X {path} HTTP/1.1\r\nhost: x\r\n{close}\r\n"
                ));
            }
            let (mut read, mut write) = TcpStream::connect(address).await.unwrap().into_split();
            // The write half stays open (dropping it would end the connection early).
            let writer = tokio::spawn(async move {
                write.write_all(requests.as_bytes()).await.unwrap();
                write
            });
            let mut answers = Vec::new();
            tokio::time::timeout(PATIENCE * 3, read.read_to_end(&mut answers))
                .await
                .expect("all answered in time")
                .unwrap();
            drop(writer.await.unwrap());
            String::from_utf8_lossy(&answers)
                .matches("HTTP/1.1 ")
                .count()
        }));
    }
    for connection in connections {
        assert_eq!(connection.await.unwrap(), 500, "every request answered");
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let requests = series(&metrics, "fleetreg_http_requests_total");
    let counts = series(&metrics, "fleetreg_http_request_duration_seconds_count");
    // Other tests share the process-wide recorder: the bound is generous,
    // but 2,000 new series would be far beyond it.
    assert!(requests.len() < 400, "{} series", requests.len());
    assert!(counts.len() < 400, "{} series", counts.len());
    for line in requests.iter().chain(&counts) {
        assert!(!line.contains("M0") && !line.contains("/nope-"), "{line}");
    }
    assert!(
        requests.iter().any(|l| l.contains("method=\"other\"")
            && l.contains("route=\"/health\"")
            && l.contains("status=\"405\"")),
        "{requests:#?}"
    );
    assert!(
        requests.iter().any(|l| l.contains("method=\"other\"")
            && l.contains("route=\"unmatched\"")
            && l.contains("status=\"404\"")),
        "{requests:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_request_id_is_kept_only_when_plain() {
    let app = start(|_| {}).await;
    let echoed = |id: &str| {
        let request = app
            .client
            .get(app.url("/health"))
            .header("x-request-id", id);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    let plain = "trace-me_42.a:B";
    assert_eq!(echoed(plain).await, plain);
    let longest = "x".repeat(128);
    assert_eq!(echoed(&longest).await, longest);
    for hostile in [
        "x".repeat(5_000),
        "x".repeat(129),
        "a b\" INFO fleetreg_server::auth: granted".to_owned(),
        "id/with/slashes".to_owned(),
    ] {
        let replaced = echoed(&hostile).await;
        assert_ne!(replaced, hostile);
        assert!(
            uuid::Uuid::parse_str(&replaced).is_ok(),
            "{hostile:.40} → {replaced}"
        );
    }
    // Two ids are no id.
    let answer = raw(
        &app,
        b"GET /health HTTP/1.1\r\nhost: x\r\nx-request-id: a\r\nx-request-id: b\r\nconnection: close\r\n\r\n",
    )
    .await;
    let id = answer
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_declared_too_large_is_refused_before_it_is_sent() {
    let app = start(|_| {}).await;
    // The client waits for `100 Continue` before sending the body: it gets
    // the 413 at once, neither a `100 Continue` nor a wait for a body that
    // never comes.
    let request = format!(
        "POST /api/v1/clusters HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TEST_ADMIN_TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: 2000000\r\n\
         expect: 100-continue\r\n\r\n"
    );
    let started = Instant::now();
    let answer = raw(&app, request.as_bytes()).await;
    assert_raw_error(&answer, 413, "PAYLOAD_TOO_LARGE");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "answered after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_of_the_http_layer_use_the_envelope() {
    let app = start(|_| {}).await;
    // A byte that may not stand in a header value.
    let answer = raw(
        &app,
        b"GET /health HTTP/1.1\r\nhost: x\r\nx-a: b\x01c\r\n\r\n",
    )
    .await;
    assert_raw_error(&answer, 400, "MALFORMED_REQUEST");
    // A method that is not a token, a header name with a space.
    let answer = raw(&app, b"G@T /health HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_raw_error(&answer, 400, "MALFORMED_REQUEST");
    let answer = raw(
        &app,
        b"GET /health HTTP/1.1\r\nhost: x\r\nbad name: y\r\n\r\n",
    )
    .await;
    assert_raw_error(&answer, 400, "MALFORMED_REQUEST");
    // A long target: refused by the server's own limit, routed as usual.
    let long = format!("/api/v1/clusters?name={}", "a".repeat(9_000));
    let response = app.get(&long).await;
    assert!(response.headers().contains_key("x-request-id"));
    let body = assert_error(response, 414, "URI_TOO_LONG").await;
    assert_eq!(body["error"]["details"]["limit_bytes"], 8192);
    // Targets and heads beyond what hyper parses.
    let huge = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(70_000));
    assert_raw_error(&raw(&app, huge.as_bytes()).await, 431, "HEADERS_TOO_LARGE");
    let big_header = format!(
        "GET /health HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "b".repeat(40_000)
    );
    assert_raw_error(
        &raw(&app, big_header.as_bytes()).await,
        431,
        "HEADERS_TOO_LARGE",
    );
    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let many = format!("GET /health HTTP/1.1\r\nhost: x\r\n{many}\r\n");
    let body = assert_raw_error(&raw(&app, many.as_bytes()).await, 431, "HEADERS_TOO_LARGE");
    assert_eq!(body["error"]["details"]["limit_fields"], 100);
    // After a good answer on the same connection, the bad request still
    // gets the envelope and the good answer is intact.
    let answer = raw(
        &app,
        b"GET /health HTTP/1.1\r\nhost: x\r\n\r\nGET /health HTTP/1.1\r\nhost: x\r\nx-a: \x7f\r\n\r\n",
    )
    .await;
    let second = answer.find("HTTP/1.1 400 ").unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert_raw_error(&answer[second..], 400, "MALFORMED_REQUEST");
    // Such refusals are counted without new series.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        series(&metrics, "fleetreg_http_requests_total")
            .iter()
            .any(|l| l.contains("route=\"unmatched\"") && l.contains("status=\"431\"")),
        "{metrics}"
    );
}

/// Sends `head` one byte every 250 ms until the server closes the
/// connection; the time from the first byte to the close.
async fn trickle_until_closed<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Duration {
    let (mut read, mut write) = tokio::io::split(stream);
    let start = Instant::now();
    let trickle = async move {
        for byte in b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: "
            .iter()
            .cycle()
        {
            if write.write_all(&[*byte]).await.is_err() || write.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        std::future::pending::<()>().await;
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        if let Ok(n @ 1..) = read.read(&mut buf).await {
            panic!(
                "unexpected answer: {:?}",
                String::from_utf8_lossy(&buf[..n])
            );
        }
    };
    tokio::select! {
        () = trickle => unreachable!(),
        () = closed => {}
        () = tokio::time::sleep(PATIENCE) => panic!("still open after {PATIENCE:?}"),
    }
    start.elapsed()
}

/// Waits for the server to close `stream` without a word; how long it took.
async fn closed_after<S: AsyncRead + Unpin>(stream: &mut S) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
        Ok(Ok(0) | Err(_)) => start.elapsed(),
        Ok(Ok(n)) => panic!(
            "unexpected answer: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(_) => panic!("still open after {PATIENCE:?}"),
    }
}

/// Reads one complete answer with a `content-length` from `stream`.
async fn read_answer<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("answer in time")
            .unwrap();
        assert!(
            n > 0,
            "closed early: {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.parse().unwrap())
                })
                .expect("content-length");
            if body.len() >= length {
                return text.into_owned();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed() {
    let app = start(|s| {
        s.http.header_read_timeout_seconds = 1;
        s.http.idle_timeout_seconds = 2;
    })
    .await;
    let address = socket_of(&app);
    let (trickled, silent, kept_alive) = tokio::join!(
        async { trickle_until_closed(TcpStream::connect(address).await.unwrap()).await },
        async { closed_after(&mut TcpStream::connect(address).await.unwrap()).await },
        async {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream
                .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            assert!(read_answer(&mut stream).await.starts_with("HTTP/1.1 200 "));
            closed_after(&mut stream).await
        },
    );
    eprintln!("closed after: trickler {trickled:?}, silent {silent:?}, idle {kept_alive:?}");
    // Header timeout 1 s, for a trickler and for a connection that never speaks.
    assert!(trickled >= Duration::from_millis(900) && trickled < Duration::from_secs(5));
    assert!(silent >= Duration::from_millis(900) && silent < Duration::from_secs(5));
    // Idle timeout 2 s between requests.
    assert!(kept_alive >= Duration::from_millis(1_800) && kept_alive < Duration::from_secs(6));

    // A long answer in progress is not idle: an event stream outlives both.
    let response = app
        .client
        .get(app.url("/api/v1/events/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    app.register("outlives-timeouts", json!({})).await;
    let mut stream = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("CLUSTER_REGISTERED") {
        use futures::StreamExt;
        let chunk = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("event in time")
            .expect("stream still open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_lock_out_new_clients() {
    let app = start(|s| {
        s.http.max_connections = Some(200);
        s.http.header_read_timeout_seconds = 60;
    })
    .await;
    let address = socket_of(&app);
    // One client holds 400 idle connections (blocking sockets, read later
    // without blocking).
    let held = tokio::task::spawn_blocking(move || {
        (0..400)
            .map(|_| std::net::TcpStream::connect(address).unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let started = Instant::now();
    let health = tokio::time::timeout(
        Duration::from_secs(1),
        reqwest::Client::new().get(app.url("/health")).send(),
    )
    .await
    .expect("/health answers within a second")
    .unwrap();
    let took = started.elapsed();
    assert_eq!(health.status(), 200);
    // The server closed (or refused) all but about 200 of them.
    let closed = crate::helpers::wait_for("connections shed", PATIENCE, || {
        let closed = held
            .iter()
            .filter(|socket| {
                socket.set_nonblocking(true).unwrap();
                let mut buf = [0u8; 512];
                !matches!((&**socket).read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count();
        std::future::ready((closed >= 175).then_some(closed))
    })
    .await;
    eprintln!("/health took {took:?} with 400 idle connections; {closed} of them closed");
    assert!(
        closed <= 400 - 150,
        "{closed} closed: the limit is 200, not lower"
    );
}

/// A TLS client trusting `cert_pem`.
fn tls_connector(cert_pem: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_have_the_same_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let (files, cert_pem) = self_signed(dir.path());
    let app = start(|s| {
        s.tls = Some(files);
        s.http.header_read_timeout_seconds = 1;
        s.http.tls_handshake_timeout_seconds = 1;
    })
    .await;
    let address = socket_of(&app);
    let connector = tls_connector(&cert_pem);
    let handshaken = || async {
        let tcp = TcpStream::connect(address).await.unwrap();
        connector
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap()
    };
    let (no_handshake, trickled, silent) = tokio::join!(
        async { closed_after(&mut TcpStream::connect(address).await.unwrap()).await },
        async { trickle_until_closed(handshaken().await).await },
        async { closed_after(&mut handshaken().await).await },
    );
    eprintln!(
        "TLS closed after: no handshake {no_handshake:?}, trickler {trickled:?}, silent {silent:?}"
    );
    for took in [no_handshake, trickled, silent] {
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5));
    }
    let answer = exchange(
        handshaken().await,
        b"GET /health HTTP/1.1\r\nhost: x\r\nx-a: \x01\r\n\r\n",
    )
    .await;
    assert_raw_error(&answer, 400, "MALFORMED_REQUEST");
    // Still serving.
    let answer = exchange(
        handshaken().await,
        format!("GET /api/v1/clusters HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TEST_ADMIN_TOKEN}\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_limit_with_nothing_idle_a_new_connection_gets_a_503_envelope() {
    let app = start(|s| s.http.max_connections = Some(2)).await;
    // Two event streams keep both places busy.
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(socket_of(&app)).await.unwrap();
        stream
            .write_all(
                format!("GET /api/v1/events/stream HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TEST_ADMIN_TOKEN}\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
        streams.push(stream);
    }
    let answer = raw(&app, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let body = assert_raw_error(&answer, 503, "SERVICE_UNAVAILABLE");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("too many open connections"));
    drop(streams);
    crate::helpers::wait_for("a place again", PATIENCE, || async {
        let answer = raw(
            &app,
            b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        answer.starts_with("HTTP/1.1 200 ").then_some(())
    })
    .await;
}

/// A client of the test server over HTTP/2 with prior knowledge (h2c),
/// sending `token` if given.
fn h2c_client(token: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
    }
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// The status and error code (`""` on success) of `request`; asserts the
/// protocol it was answered in.
async fn answer_of(request: reqwest::RequestBuilder, version: reqwest::Version) -> (u16, String) {
    let response = request.send().await.unwrap();
    assert_eq!(response.version(), version);
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, code)
}

/// Asserts that the same request, sent over HTTP/1.1 and over HTTP/2, gets
/// `expected` (status, error code) both times.
async fn same_answer(
    what: &str,
    over_http1: reqwest::RequestBuilder,
    over_http2: reqwest::RequestBuilder,
    expected: (u16, &str),
) {
    let http1 = answer_of(over_http1, reqwest::Version::HTTP_11).await;
    let http2 = answer_of(over_http2, reqwest::Version::HTTP_2).await;
    assert_eq!(
        http1,
        (expected.0, expected.1.to_owned()),
        "{what} over HTTP/1.1"
    );
    assert_eq!(http2, http1, "{what} over HTTP/2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_one_date_over_both_protocols() {
    let app = start(|_| {}).await;
    let h2 = h2c_client(None);
    for (client, version) in [
        (&app.client, reqwest::Version::HTTP_11),
        (&h2, reqwest::Version::HTTP_2),
    ] {
        let response = client.get(app.url("/health")).send().await.unwrap();
        assert_eq!(response.version(), version);
        let dates: Vec<_> = response.headers().get_all("date").iter().collect();
        assert_eq!(dates.len(), 1, "{version:?}: {dates:?}");
        let date = httpdate::parse_http_date(dates[0].to_str().unwrap()).unwrap();
        let skew = std::time::SystemTime::now()
            .duration_since(date)
            .unwrap_or_default();
        assert!(
            skew < std::time::Duration::from_secs(5),
            "{version:?}: {dates:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_get_the_same_answers_as_http1() {
    let app = start(|_| {}).await;
    let (h1, h2) = (&app.client, &h2c_client(Some(TEST_ADMIN_TOKEN)));
    let (health, clusters) = (app.url("/health"), app.url("/api/v1/clusters"));
    let long = app.url(&format!("/api/v1/clusters?name={}", "a".repeat(9_000)));
    let many_fields: reqwest::header::HeaderMap = (0..150)
        .map(|i| {
            (
                reqwest::header::HeaderName::try_from(format!("x-h{i}")).unwrap(),
                reqwest::header::HeaderValue::from_static("v"),
            )
        })
        .collect();
    let big_field = "b".repeat(33_000);
    let huge_body = format!(
        "{{\"name\":\"abc\",\"display_name\":\"{}\"}}",
        "x".repeat(2 << 20)
    );
    type Request<'a> = Box<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + 'a>;
    let cases: Vec<(&str, Request, (u16, &str))> = vec![
        ("health", Box::new(|c| c.get(&health)), (200, "")),
        ("a list", Box::new(|c| c.get(&clusters)), (200, "")),
        (
            "a long target",
            Box::new(|c| c.get(&long)),
            (414, "URI_TOO_LONG"),
        ),
        (
            "150 header fields",
            Box::new(|c| c.get(&health).headers(many_fields.clone())),
            (431, "HEADERS_TOO_LARGE"),
        ),
        (
            "a 33,000-byte field",
            Box::new(|c| c.get(&health).header("x-big", big_field.as_str())),
            (431, "HEADERS_TOO_LARGE"),
        ),
        (
            "a 2 MiB body",
            Box::new(|c| {
                c.post(&clusters)
                    .header("content-type", "application/json")
                    .body(huge_body.clone())
            }),
            (413, "PAYLOAD_TOO_LARGE"),
        ),
        (
            "malformed JSON",
            Box::new(|c| {
                c.post(&clusters)
                    .header("content-type", "application/json")
                    .body("{")
            }),
            (400, "MALFORMED_JSON"),
        ),
    ];
    for (what, request, expected) in &cases {
        same_answer(what, request(h1), request(h2), *expected).await;
    }
    same_answer(
        "no token",
        reqwest::Client::new().get(&clusters),
        h2c_client(None).get(&clusters),
        (401, "UNAUTHENTICATED"),
    )
    .await;
}

/// The HTTP/2 connection preface and an empty SETTINGS frame.
const H2_START: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Reads (and drops) what the server sends until it closes the connection;
/// how long that took.
async fn drained_until_closed<S: AsyncRead + Unpin>(stream: &mut S) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("still open after {PATIENCE:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_have_the_same_bounds() {
    let app = start(|s| {
        s.http.header_read_timeout_seconds = 1;
        s.http.idle_timeout_seconds = 2;
    })
    .await;
    let address = socket_of(&app);
    let (silent, trickled) = tokio::join!(
        // The preface, then no request.
        async {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.write_all(H2_START).await.unwrap();
            drained_until_closed(&mut stream).await
        },
        // A HEADERS frame of 100 bytes, one byte every 250 ms.
        async {
            let stream = TcpStream::connect(address).await.unwrap();
            let (mut read, mut write) = tokio::io::split(stream);
            write.write_all(H2_START).await.unwrap();
            write
                .write_all(b"\x00\x00\x64\x01\x04\x00\x00\x00\x01")
                .await
                .unwrap();
            let trickle = async move {
                for _ in 0..100 {
                    if write.write_all(b"\x00").await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                std::future::pending::<()>().await;
            };
            tokio::select! {
                () = trickle => unreachable!(),
                took = drained_until_closed(&mut read) => took,
            }
        },
    );
    eprintln!("HTTP/2 closed after: silent {silent:?}, trickler {trickled:?}");
    for took in [silent, trickled] {
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5));
    }

    // A stream is busy on its connection: it outlives both timeouts.
    let h2 = h2c_client(Some(TEST_ADMIN_TOKEN));
    let response = h2
        .get(app.url("/api/v1/events/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (response.status().as_u16(), response.version()),
        (200, reqwest::Version::HTTP_2)
    );
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    app.register("outlives-on-http2", json!({})).await;
    let mut stream = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("CLUSTER_REGISTERED") {
        use futures::StreamExt;
        let chunk = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("event in time")
            .expect("stream still open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}
