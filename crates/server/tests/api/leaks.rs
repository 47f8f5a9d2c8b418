//! The marker leak test of issue 5: credentials carrying unique marker strings
//! are uploaded, rotated, validated and used against a simulated cluster that
//! really receives them (proved from its request log); then every response body,
//! the event stream, the log output at TRACE level, the database (SQLite files
//! with `-wal`/`-shm`, or a `pg_dump` plus every row as text) and the Redis
//! messages are searched for the markers, plain or base64 at any alignment:
//! none may appear.
//!
//! Not covered: the Kubernetes-Secrets credential backend (it does not exist yet),
//! and log lines emitted on threads other than the test's (the SQLite driver's
//! worker thread, `spawn_blocking`): the log capture is a thread-local subscriber,
//! since the test binary is shared and its global subscriber can be set only once.
//! `crates/cli/tests/cli/leaks.rs` covers those: it searches the complete TRACE
//! log of the real `fleetreg serve` run as a child process. The markers and the
//! search are `fleetreg_testkit::leak_search`, shared by both.

use crate::helpers::*;
use fleetreg_server::settings::Settings;
use fleetreg_sim::{AddToken, AuthSpec, ClusterSpec, Service, SpawnedSim};
use fleetreg_testkit::leak_search::{assert_search_finds_markers, marker, LeakReport};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const CHANNEL: &str = "fleetreg:events";
const DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The client registry, hosts, deployments and rollouts: every route once,
// while the credentials are stored, so their answers are searched too.

/// `(method, route, path, body)` → the answer, asserting `expected`.
async fn step(
    ex: &mut Exercise<'_>,
    method: Method,
    route: &str,
    path: &str,
    body: Value,
    expected: u16,
) -> Value {
    let (status, answer) = ex.send(method.clone(), route, path, &body).await;
    assert_eq!(status, expected, "{method} {path}: {answer}");
    answer
}

async fn exercise_registry(ex: &mut Exercise<'_>) {
    let client = "/api/v1/clients/leak-client";
    let named = "/api/v1/clients/{name}";
    step(ex, Method::POST, "/api/v1/clients", "/api/v1/clients",
         json!({"name": "leak-client", "role": "canary", "status": "deployed", "apps": ["nextcloud"]}), 201).await;
    for (route, path) in [
        ("/api/v1/clients", "/api/v1/clients".to_owned()),
        (
            "/api/v1/clients/summary",
            "/api/v1/clients/summary".to_owned(),
        ),
        (
            "/api/v1/clients/export",
            "/api/v1/clients/export".to_owned(),
        ),
        (named, client.to_owned()),
        (
            "/api/v1/clients/{name}/history",
            format!("{client}/history"),
        ),
        ("/api/v1/clients/{name}/health", format!("{client}/health")),
    ] {
        ex.get(route, &path).await;
    }
    step(
        ex,
        Method::PUT,
        named,
        client,
        json!({"notes": "leak test"}),
        200,
    )
    .await;
    for (action, body) in [
        ("deploy", json!({"role": "canary"})),
        ("status", json!({"status": "maintenance"})),
        ("rebuild", json!({})),
        ("maintenance", json!({"field": "last_os_update"})),
        ("versions", json!({"versions": {"nextcloud": "1"}})),
        ("notes", json!({"notes": "n"})),
    ] {
        let route = format!("{named}/{action}");
        step(
            ex,
            Method::POST,
            &route,
            &format!("{client}/{action}"),
            body,
            200,
        )
        .await;
    }
    step(
        ex,
        Method::POST,
        "/api/v1/clients/{name}/status",
        &format!("{client}/status"),
        json!({"status": "deployed"}),
        200,
    )
    .await;
    step(
        ex,
        Method::POST,
        "/api/v1/clients/import",
        "/api/v1/clients/import",
        json!({"clients": {"leak-two": {}}}),
        200,
    )
    .await;

    let cluster = step(
        ex,
        Method::POST,
        "/api/v1/clusters",
        "/api/v1/clusters",
        json!({"name": "leak-hosts", "api_server_url": "https://127.0.0.1:1"}),
        201,
    )
    .await;
    let cluster = format!("/api/v1/clusters/{}", cluster["id"].as_str().unwrap());
    let host = step(
        ex,
        Method::POST,
        "/api/v1/clusters/{id}/hosts",
        &format!("{cluster}/hosts"),
        json!({"hostname": "leak-node"}),
        201,
    )
    .await;
    let host_id = host["id"].as_str().unwrap().to_owned();
    ex.get("/api/v1/clusters/{id}/hosts", &format!("{cluster}/hosts"))
        .await;
    step(
        ex,
        Method::POST,
        "/api/v1/hosts/{host_id}/heartbeat",
        &format!("/api/v1/hosts/{host_id}/heartbeat"),
        json!({}),
        200,
    )
    .await;
    let deployment = step(
        ex,
        Method::POST,
        "/api/v1/hosts/{host_id}/deployments",
        &format!("/api/v1/hosts/{host_id}/deployments"),
        json!({"client": "leak-client", "container_name": "leak"}),
        201,
    )
    .await;
    let d = format!("/api/v1/deployments/{}", deployment["id"].as_str().unwrap());
    let dr = "/api/v1/deployments/{deployment_id}";
    ex.get(dr, &d).await;
    step(
        ex,
        Method::POST,
        &format!("{dr}/enable"),
        &format!("{d}/enable"),
        json!({}),
        200,
    )
    .await;
    let job = step(
        ex,
        Method::POST,
        &format!("{dr}/sync"),
        &format!("{d}/sync"),
        json!({"kind": "full"}),
        201,
    )
    .await;
    step(
        ex,
        Method::POST,
        "/api/v1/sync-jobs/{job_id}/finish",
        &format!("/api/v1/sync-jobs/{}/finish", job["id"].as_str().unwrap()),
        json!({"status": "success", "rows": 1}),
        200,
    )
    .await;
    step(
        ex,
        Method::POST,
        &format!("{dr}/conflicts"),
        &format!("{d}/conflicts"),
        json!({"table_name": "t", "row_key": "1", "resolution": "remote_wins"}),
        201,
    )
    .await;
    ex.get(&format!("{dr}/conflicts"), &format!("{d}/conflicts"))
        .await;
    step(
        ex,
        Method::POST,
        &format!("{dr}/move"),
        &format!("{d}/move"),
        json!({"host_id": host_id}),
        200,
    )
    .await;
    step(
        ex,
        Method::POST,
        &format!("{dr}/pause"),
        &format!("{d}/pause"),
        json!({}),
        200,
    )
    .await;
    step(
        ex,
        Method::POST,
        "/api/v1/clusters/{id}/leader",
        &format!("{cluster}/leader"),
        json!({"host_id": host_id, "lease_seconds": 30}),
        200,
    )
    .await;
    ex.get(
        "/api/v1/clusters/{id}/sync-status",
        &format!("{cluster}/sync-status"),
    )
    .await;
    ex.get("/api/v1/hosts/orphaned", "/api/v1/hosts/orphaned")
        .await;

    let rollout = step(
        ex,
        Method::POST,
        "/api/v1/rollouts",
        "/api/v1/rollouts",
        json!({"app": "nextcloud", "version": "2"}),
        201,
    )
    .await;
    let r = format!("/api/v1/rollouts/{}", rollout["id"].as_str().unwrap());
    let rr = "/api/v1/rollouts/{rollout_id}";
    ex.get("/api/v1/rollouts", "/api/v1/rollouts").await;
    ex.get(rr, &r).await;
    for (command, expected) in [
        ("pause", 200),
        ("resume", 200),
        ("promote", 409),
        ("abort", 200),
    ] {
        step(
            ex,
            Method::POST,
            &format!("{rr}/{command}"),
            &format!("{r}/{command}"),
            json!({}),
            expected,
        )
        .await;
    }
    let (status, _) = ex.call(Method::DELETE, dr, &d, None).await;
    assert_eq!(status, 204);
    step(
        ex,
        Method::POST,
        "/api/v1/clients/{name}/destroy",
        &format!("{client}/destroy"),
        json!({}),
        200,
    )
    .await;
    let (status, _) = ex
        .call(Method::DELETE, named, "/api/v1/clients/leak-two", None)
        .await;
    assert_eq!(status, 204);
}

/// The edge registry and push-sync: every route once.
async fn exercise_edge(ex: &mut Exercise<'_>) {
    let post = |route: &'static str, body: Value| (Method::POST, route, route.to_owned(), body);
    for (method, route, path, body) in [
        post(
            "/api/v1/domains",
            json!({"name": "leak.example.test", "description": "d", "region": "eu"}),
        ),
        post(
            "/api/v1/nodes",
            json!({"name": "leak-vps", "kind": "vps", "overlay_address": "100.64.9.1",
                                     "public_address": "192.0.2.9", "region": "eu"}),
        ),
        post(
            "/api/v1/nodes",
            json!({"name": "leak-laptop", "kind": "laptop", "overlay_address": "100.64.9.2"}),
        ),
        post(
            "/api/v1/services",
            json!({"name": "leak-svc", "upstreams": ["127.0.0.1:9"]}),
        ),
    ] {
        step(ex, method, route, &path, body, 201).await;
    }
    let routing = json!({"domains": ["leak.example.test"], "nodes": ["leak-vps"], "strategy": "primary-backup"});
    step(
        ex,
        Method::PUT,
        "/api/v1/routing/{service}",
        "/api/v1/routing/leak-svc",
        routing,
        200,
    )
    .await;
    for (route, path) in [
        ("/api/v1/domains", "/api/v1/domains"),
        (
            "/api/v1/domains/{name}",
            "/api/v1/domains/leak.example.test",
        ),
        ("/api/v1/nodes", "/api/v1/nodes"),
        ("/api/v1/nodes/{name}", "/api/v1/nodes/leak-vps"),
        (
            "/api/v1/nodes/{name}/config",
            "/api/v1/nodes/leak-vps/config?format=caddy",
        ),
        ("/api/v1/services", "/api/v1/services"),
        ("/api/v1/services/{name}", "/api/v1/services/leak-svc"),
        ("/api/v1/routing", "/api/v1/routing"),
        ("/api/v1/routing/{service}", "/api/v1/routing/leak-svc"),
        ("/api/v1/routes", "/api/v1/routes"),
        ("/api/v1/sync/health", "/api/v1/sync/health"),
    ] {
        ex.get(route, path).await;
    }
    for (method, route, path, body) in [
        (
            Method::PUT,
            "/api/v1/domains/{name}",
            "/api/v1/domains/leak.example.test",
            json!({"description": "e"}),
        ),
        (
            Method::PUT,
            "/api/v1/nodes/{name}",
            "/api/v1/nodes/leak-laptop",
            json!({"overlay_address": "100.64.9.3"}),
        ),
        (
            Method::PUT,
            "/api/v1/services/{name}",
            "/api/v1/services/leak-svc",
            json!({"upstreams": ["127.0.0.1:10"]}),
        ),
        (
            Method::POST,
            "/api/v1/nodes/{name}/ack",
            "/api/v1/nodes/leak-laptop/ack",
            json!({}),
        ),
        (
            Method::POST,
            "/api/v1/nodes/{name}/token",
            "/api/v1/nodes/leak-laptop/token",
            json!({}),
        ),
        (
            Method::POST,
            "/api/v1/sync/push",
            "/api/v1/sync/push",
            json!({}),
        ),
        (
            Method::POST,
            "/api/v1/sync/reconcile",
            "/api/v1/sync/reconcile",
            json!({}),
        ),
        // Reads the simulated cluster's services with the stored credentials.
        (
            Method::POST,
            "/api/v1/services/sync",
            "/api/v1/services/sync",
            json!({}),
        ),
    ] {
        let expected = if route.ends_with("/token") { 201 } else { 200 };
        step(ex, method, route, path, body, expected).await;
    }
    // The stream: its first frame is kept with the other answers.
    let response = ex
        .app
        .client
        .get(ex.app.url("/api/v1/nodes/leak-vps/config/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let first = tokio::time::timeout(DEADLINE, body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    ex.responses
        .push(("GET config/stream".into(), first.to_vec()));
    ex.covered
        .insert(("get".into(), "/api/v1/nodes/{name}/config/stream".into()));
    for (route, path) in [
        ("/api/v1/routing/{service}", "/api/v1/routing/leak-svc"),
        ("/api/v1/services/{name}", "/api/v1/services/leak-svc"),
        ("/api/v1/nodes/{name}", "/api/v1/nodes/leak-laptop"),
        (
            "/api/v1/domains/{name}",
            "/api/v1/domains/leak.example.test",
        ),
    ] {
        let (status, text) = ex.call(Method::DELETE, route, path, None).await;
        assert_eq!(status, 204, "DELETE {path}: {text}");
    }
}

// ---------------------------------------------------------------------------
// Markers (searched for with `leak_search`).

/// The secrets of one run, each unique.
struct Markers {
    /// The API token first uploaded (accepted by the cluster).
    api: String,
    /// The API token rotated to (accepted by the cluster).
    rotated: String,
    /// The Prometheus token (accepted by the cluster's Prometheus).
    prom: String,
    /// A token the cluster refuses: it travels only through failure paths.
    rejected: String,
}

impl Markers {
    fn new() -> Markers {
        Markers {
            api: marker("api"),
            rotated: marker("rot"),
            prom: marker("prom"),
            rejected: marker("rej"),
        }
    }

    fn all(&self) -> [&str; 4] {
        [&self.api, &self.rotated, &self.prom, &self.rejected]
    }
}

// ---------------------------------------------------------------------------
// Capturing everything the server says.

/// Calls the API, keeping every response (status line and body) and which
/// documented endpoint each call covered.
struct Exercise<'a> {
    app: &'a TestApp,
    responses: Vec<(String, Vec<u8>)>,
    covered: BTreeSet<(String, String)>,
}

impl Exercise<'_> {
    async fn call(
        &mut self,
        method: reqwest::Method,
        route: &str,
        path: &str,
        body: Option<String>,
    ) -> (u16, String) {
        let mut request = self.app.client.request(method.clone(), self.app.url(path));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let mut kept = format!("HTTP {status}\n").into_bytes();
        for (name, value) in response.headers() {
            kept.extend_from_slice(format!("{name}: ").as_bytes());
            kept.extend_from_slice(value.as_bytes());
            kept.push(b'\n');
        }
        let text = response.text().await.unwrap();
        kept.extend_from_slice(text.as_bytes());
        self.responses.push((format!("{method} {path}"), kept));
        self.covered
            .insert((method.as_str().to_lowercase(), route.to_owned()));
        (status, text)
    }

    async fn get(&mut self, route: &str, path: &str) -> Value {
        let (status, text) = self.call(reqwest::Method::GET, route, path, None).await;
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }

    async fn send(
        &mut self,
        method: reqwest::Method,
        route: &str,
        path: &str,
        body: &Value,
    ) -> (u16, Value) {
        let (status, text) = self.call(method, route, path, Some(body.to_string())).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// Reads a response body (the event stream) into a buffer until aborted.
fn collect_stream(response: reqwest::Response) -> (SharedBuffer, tokio::task::JoinHandle<()>) {
    let buffer = SharedBuffer::default();
    let mut sink = buffer.clone();
    let task = tokio::spawn(async move {
        let mut stream = response.bytes_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            std::io::Write::write_all(&mut sink, &chunk).unwrap();
        }
    });
    (buffer, task)
}

fn shared_redis_url() -> String {
    std::env::var("FLEETREG_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn redis_required() -> bool {
    std::env::var("FLEETREG_REQUIRE_REDIS").is_ok_and(|v| v == "1")
}

/// Subscribes to `fleetreg:events` and collects every message's payload;
/// `None` (after a skip line) when Redis is unreachable and not required.
async fn redis_collector(
    url: &str,
) -> Option<(Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>)> {
    let connect = async {
        let client = redis::Client::open(url)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(CHANNEL).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let pubsub = match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(pubsub)) => pubsub,
        outcome => {
            let why = match outcome {
                Ok(Err(error)) => error.to_string(),
                _ => "no answer".into(),
            };
            assert!(
                !redis_required(),
                "FLEETREG_REQUIRE_REDIS=1 but Redis at {url} is unreachable: {why}"
            );
            fleetreg_testkit::skip(&format!("the Redis part of the leak test: Redis at {url} is unreachable ({why}); set FLEETREG_REQUIRE_REDIS=1 to fail instead"));
            return None;
        }
    };
    let messages = Arc::new(Mutex::new(Vec::new()));
    let sink = messages.clone();
    let task = tokio::spawn(async move {
        let mut stream = pubsub.into_on_message();
        while let Some(message) = stream.next().await {
            let payload: String = message.get_payload().unwrap_or_default();
            sink.lock().unwrap().push(payload);
        }
    });
    Some((messages, task))
}

/// The PostgreSQL database as text: `pg_dump` (when it runs) and every row of
/// every table in `public` as `row::text` (always).
async fn postgres_contents(database_url: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    match tokio::process::Command::new("pg_dump")
        .arg("--no-owner")
        .arg(format!("--dbname={database_url}"))
        .output()
        .await
    {
        Ok(dump) if dump.status.success() => {
            assert!(!dump.stdout.is_empty(), "pg_dump wrote nothing");
            out.push(("pg_dump".to_owned(), dump.stdout));
        }
        Ok(dump) => eprintln!(
            "pg_dump failed ({}): {}; searching the rows only",
            dump.status,
            String::from_utf8_lossy(&dump.stderr)
        ),
        Err(error) => eprintln!("pg_dump did not run ({error}); searching the rows only"),
    }
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(database_url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(!tables.is_empty(), "no tables in {database_url}");
    for table in tables {
        let rows = sqlx::query(&format!("SELECT t::text FROM \"{table}\" t"))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let mut text = Vec::new();
        for row in rows {
            let line: Option<String> = row.get(0);
            text.extend_from_slice(line.unwrap_or_default().as_bytes());
            text.push(b'\n');
        }
        out.push((format!("PostgreSQL table {table} (rows as text)"), text));
    }
    out
}

/// Every file the SQLite store (and the audit head) left in its directory.
fn sqlite_files(database_url: &str) -> Vec<(String, Vec<u8>)> {
    let path = std::path::PathBuf::from(database_url.strip_prefix("sqlite://").unwrap());
    let dir = path.parent().unwrap();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // The audit head is replaced by writing a temporary file and renaming it,
            // so a file listed a moment ago may be gone; what it held is in the head.
            match std::fs::read(entry.path()) {
                Ok(bytes) => files.push((format!("SQLite dir file {name}"), bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("reading {name}: {e}"),
            }
        }
    }
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.iter().any(|n| n.ends_with("fleetreg.db")),
        "no database file among {names:?}"
    );
    files
}

async fn database_contents(app: &TestApp) -> Vec<(String, Vec<u8>)> {
    let mut out = match app.backend {
        Backend::Sqlite => sqlite_files(&app.database_url),
        Backend::Postgres => {
            let mut out = postgres_contents(&app.database_url).await;
            let head = audit_head_file(&app.database_url);
            if let Ok(bytes) = std::fs::read(&head) {
                out.push((format!("audit head {}", head.display()), bytes));
            }
            out
        }
    };
    out.retain(|(_, bytes)| !bytes.is_empty());
    out
}

// ---------------------------------------------------------------------------
// The test.

async fn no_marker_leaks(backend: Backend) {
    let markers = Markers::new();
    assert_search_finds_markers(&markers.all());

    // Everything logged on this thread, at TRACE, from the server's start on.
    // The runtime is current-thread, so every task the server spawns runs here.
    let (log, _capture) = capture_trace_log();

    let redis_url = shared_redis_url();
    let redis = redis_collector(&redis_url).await;
    let outbox = redis.as_ref().map(|_| redis_url.clone());
    let Some(app) = spawn_app_with(backend, move |settings: &mut Settings| {
        settings.health_check.enabled = true;
        settings.health_check.timeout_seconds = Some(3);
        settings.discovery.on_registration = true;
        settings.redis_url = outbox;
    })
    .await
    else {
        return;
    };

    let sim = SpawnedSim::start().await.unwrap();
    let name = format!("leak-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let view = sim
        .admin()
        .create_cluster_with_auth(
            &name,
            ClusterSpec::default(),
            AuthSpec {
                required: true,
                prometheus_tokens: vec![markers.prom.clone()],
                ..AuthSpec::default()
            },
        )
        .await
        .unwrap();
    for token in [&markers.api, &markers.rotated] {
        sim.admin()
            .add_token(
                &name,
                &AddToken {
                    token: Some(token.clone()),
                    ..AddToken::default()
                },
            )
            .await
            .unwrap();
    }

    // The event stream, live from before the first write to the end.
    let live = app
        .client
        .get(app.url("/api/v1/events/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let (live_frames, live_task) = collect_stream(live);

    let mut ex = Exercise {
        app: &app,
        responses: Vec::new(),
        covered: BTreeSet::new(),
    };
    ex.covered
        .insert(("get".into(), "/api/v1/events/stream".into()));

    // Register, with the Prometheus endpoint the token is for.
    let (status, cluster) = ex
        .send(
            Method::POST,
            "/api/v1/clusters",
            "/api/v1/clusters",
            &json!({
                "name": name,
                "api_server_url": view.api_server_url,
                "endpoints": { "prometheus_url": view.prometheus_url },
                "labels": { "team": "leaks" },
            }),
        )
        .await;
    assert_eq!(status, 201, "{cluster}");
    let id = cluster["id"].as_str().unwrap().to_owned();
    let creds = format!("/api/v1/clusters/{id}/credentials");
    let creds_route = "/api/v1/clusters/{id}/credentials";

    // Failure paths first, each carrying a secret: refused by the cluster, a
    // token pasted as a kubeconfig, an unsafe kubeconfig, malformed JSON, a
    // rotation with nothing stored.
    let rejected = json!({ "auth_type": "TOKEN", "token": markers.rejected,
                           "prometheus_token": markers.prom });
    let (status, body) = ex.send(Method::POST, creds_route, &creds, &rejected).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "CREDENTIALS_INVALID", "{body}");
    let (status, body) = ex
        .send(
            Method::POST,
            &format!("{creds_route}/rotate"),
            &format!("{creds}/rotate"),
            &rejected,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = ex
        .send(
            Method::POST,
            creds_route,
            &creds,
            &json!({ "auth_type": "KUBECONFIG", "kubeconfig": markers.rejected }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let unsafe_kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n\
         contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n\
         users:\n- name: u\n  user:\n    token: {}\n    exec:\n      command: /bin/sh\n      \
         apiVersion: client.authentication.k8s.io/v1\n      args: [\"{}\"]\n",
        view.api_server_url, markers.rejected, markers.rejected
    );
    let (status, body) = ex
        .send(
            Method::POST,
            creds_route,
            &creds,
            &json!({ "auth_type": "KUBECONFIG", "kubeconfig": unsafe_kubeconfig }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = ex
        .call(
            Method::POST,
            creds_route,
            &creds,
            Some(format!(
                "{{\"auth_type\":\"TOKEN\",\"token\":\"{}\",",
                markers.rejected
            )),
        )
        .await;
    assert_eq!(status, 400);

    // Upload the accepted credentials.
    let good = json!({ "auth_type": "TOKEN", "token": markers.api,
                       "prometheus_token": markers.prom });
    let (status, body) = ex.send(Method::POST, creds_route, &creds, &good).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["validation"],
        json!({ "api_server": "success", "prometheus": "success" })
    );

    // Every read, and the operations.
    let one = format!("/api/v1/clusters/{id}");
    ex.get("/api/v1/clusters", "/api/v1/clusters?label=team=leaks")
        .await;
    ex.get("/api/v1/clusters/{id}", &one).await;
    ex.get(
        "/api/v1/clusters/by-name/{name}",
        &format!("/api/v1/clusters/by-name/{name}"),
    )
    .await;
    let (status, body) = ex
        .send(
            Method::PUT,
            "/api/v1/clusters/{id}",
            &one,
            &json!({ "region": "leak-region" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = ex
        .send(
            Method::POST,
            "/api/v1/clusters/{id}/refresh",
            &format!("{one}/refresh"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"]["state"], "ONLINE", "{body}");
    let (status, body) = ex
        .send(
            Method::POST,
            &format!("{creds_route}/validate"),
            &format!("{creds}/validate"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Re-binding to the origins they are already bound to: validated again.
    let (status, body) = ex
        .send(
            Method::POST,
            &format!("{creds_route}/rebind"),
            &format!("{creds}/rebind"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "rebound", "{body}");
    let (status, body) = ex
        .send(
            Method::POST,
            &format!("{creds_route}/rotate"),
            &format!("{creds}/rotate"),
            &rejected,
        )
        .await;
    assert_eq!(status, 400, "a failed rotation: {body}");
    let rotated = json!({ "auth_type": "TOKEN", "token": markers.rotated,
                          "prometheus_token": markers.prom });
    let (status, body) = ex
        .send(
            Method::POST,
            &format!("{creds_route}/rotate"),
            &format!("{creds}/rotate"),
            &rotated,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = ex
        .send(
            Method::POST,
            "/api/v1/clusters/{id}/refresh",
            &format!("{one}/refresh"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    ex.get("/api/v1/clusters/{id}/status", &format!("{one}/status"))
        .await;
    ex.get(
        "/api/v1/clusters/{id}/health/history",
        &format!("{one}/health/history?limit=1000"),
    )
    .await;
    ex.get(
        "/api/v1/credentials/expiring",
        "/api/v1/credentials/expiring?within_days=36500",
    )
    .await;
    for view in ["summary", "health", "capabilities"] {
        let route = format!("/api/v1/fleet/{view}");
        ex.get(&route, &route).await;
    }
    exercise_registry(&mut ex).await;
    exercise_edge(&mut ex).await;
    let (status, token) = ex
        .send(
            Method::POST,
            "/api/v1/tokens",
            "/api/v1/tokens",
            &json!({ "name": "leak-bot", "role": "operator" }),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    ex.get("/api/v1/tokens", "/api/v1/tokens").await;
    let (status, _) = ex
        .call(
            Method::DELETE,
            "/api/v1/tokens/{id}",
            &format!("/api/v1/tokens/{}", token["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 204);
    for route in ["/health", "/ready", "/metrics", "/api/v1/openapi.json"] {
        ex.get(route, route).await;
    }

    // The simulator really received each secret, each where it belongs.
    let seen = sim.admin().requests(0, Some(&name)).await.unwrap();
    let carried = |service: Service, token: &str| {
        seen.items
            .iter()
            .any(|r| r.service == service && r.bearer_token.as_deref() == Some(token))
    };
    for token in [&markers.api, &markers.rotated, &markers.rejected] {
        assert!(
            carried(Service::ApiServer, token),
            "the API server never saw {token}: {:?}",
            seen.items
        );
    }
    assert!(
        carried(Service::Prometheus, &markers.prom),
        "Prometheus never saw its token: {:?}",
        seen.items
    );

    // The database while the credentials are stored.
    let mut report = LeakReport::new(&markers.all());
    for (place, bytes) in database_contents(&app).await {
        report.search(&format!("{place} (credentials stored)"), &bytes);
    }

    // Then the deletions, and every read once more.
    let (status, _) = ex.call(Method::DELETE, creds_route, &creds, None).await;
    assert_eq!(status, 204);
    ex.get("/api/v1/events", "/api/v1/events?after=0&limit=1000")
        .await;
    ex.get("/api/v1/audit", "/api/v1/audit?limit=1000").await;
    let (status, _) = ex
        .call(Method::DELETE, "/api/v1/clusters/{id}", &one, None)
        .await;
    assert_eq!(status, 204);
    let events = ex
        .get("/api/v1/events", "/api/v1/events?after=0&limit=1000")
        .await;
    let latest = events["latest_revision"].as_i64().unwrap();
    ex.get("/api/v1/audit", "/api/v1/audit?limit=1000").await;

    // Every documented endpoint was called.
    let openapi: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let documented: BTreeSet<(String, String)> = openapi["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "post", "put", "delete", "patch"].contains(&m.as_str()))
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    let missed: Vec<_> = documented.difference(&ex.covered).collect();
    assert!(missed.is_empty(), "endpoints not exercised: {missed:?}");

    // The event stream from the start (catch-up from the store), for a second.
    let replay = app
        .client
        .get(app.url("/api/v1/events/stream"))
        .header("Last-Event-ID", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 200);
    let (replay_frames, replay_task) = collect_stream(replay);
    tokio::time::sleep(Duration::from_secs(1)).await;
    replay_task.abort();
    live_task.abort();
    let replayed = replay_frames.bytes();
    let lived = live_frames.bytes();
    for (place, frames) in [
        ("event stream (replay)", &replayed),
        ("event stream (live)", &lived),
    ] {
        let text = String::from_utf8_lossy(frames);
        assert!(
            text.contains("CLUSTER_CREDENTIALS_UPDATED") && text.contains(&id),
            "{place} carried no credential events: {text}"
        );
        report.search(place, frames);
    }

    // Redis: every message, once the outbox published the last revision.
    if let Some((messages, task)) = redis {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let done = messages.lock().unwrap().iter().any(|m| {
                serde_json::from_str::<Value>(m).is_ok_and(|e| {
                    e["resource_id"] == id.as_str() && e["revision"].as_i64() == Some(latest)
                })
            });
            if done {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Redis never delivered revision {latest} of {id}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        task.abort();
        let all = messages.lock().unwrap().join("\n");
        report.search("Redis fleetreg:events messages", all.as_bytes());
    }

    for (place, bytes) in &ex.responses {
        report.search(&format!("response to {place}"), bytes);
    }
    for (place, bytes) in database_contents(&app).await {
        report.search(&format!("{place} (after deletion)"), &bytes);
    }

    // The log capture worked: it holds TRACE and DEBUG lines and this test's
    // requests, checks and credential handling.
    let logged = log.bytes();
    let text = String::from_utf8_lossy(&logged);
    // Only TRACE/DEBUG presence is required: in a test binary shared with other
    // tests, tracing caches a callsite's interest the first time any thread hits
    // it, so a callsite first reached on a thread without this capture stays off
    // here (the request spans often are). The complete search of a TRACE log
    // needs `serve` as a child process (issue 5 follow-up).
    for expected in [" TRACE ", " DEBUG "] {
        assert!(
            text.contains(expected),
            "the log capture holds no {expected:?} ({} bytes)",
            logged.len()
        );
    }
    report.search("log output at TRACE", &logged);
    eprintln!("leak search over: {:#?}", report.searched);
    report.assert_clean();
}

#[tokio::test(flavor = "current_thread")]
async fn no_marker_leaks_sqlite() {
    no_marker_leaks(Backend::Sqlite).await;
}

#[tokio::test(flavor = "current_thread")]
async fn no_marker_leaks_postgres() {
    no_marker_leaks(Backend::Postgres).await;
}

#[test]
fn the_search_finds_every_form() {
    assert_search_finds_markers(&Markers::new().all());
}
