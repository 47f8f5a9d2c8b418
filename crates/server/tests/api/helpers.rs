//! `spawn_app`, `TestApp` and the `api_test!` macro.

use fleetreg_server::settings::Settings;
use fleetreg_server::Application;
use fleetreg_sim::{AddToken, AuthSpec, ClusterSpec, ClusterView, SpawnedSim};
use fleetreg_store::Store;
use reqwest::Response;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Emits `$name::sqlite` and `$name::postgres`, running the body once per store.
/// The PostgreSQL variant prints a skip line when no server is reachable, unless
/// `FLEETREG_REQUIRE_POSTGRES=1`, where that fails.
macro_rules! api_test {
    ($name:ident, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite)
                    .await
                    .expect("sqlite app");
                $body
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some($app) = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await
                else {
                    return;
                };
                $body
            }
        }
    };
}

/// Inside a module with `async fn body(app: TestApp)`: emits its `sqlite` and
/// `postgres` tests on an app whose settings `$adjust` changed first.
macro_rules! on_both_stores {
    ($adjust:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn sqlite() {
            let app = crate::helpers::spawn_app_with(crate::helpers::Backend::Sqlite, $adjust)
                .await
                .expect("sqlite app");
            body(app).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn postgres() {
            if let Some(app) =
                crate::helpers::spawn_app_with(crate::helpers::Backend::Postgres, $adjust).await
            {
                body(app).await;
            }
        }
    };
}

/// A running server and a client for it.
pub struct TestApp {
    pub address: String,
    pub backend: Backend,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub retention: fleetreg_server::retention::Retention,
    /// The health scheduler, when the settings enable it.
    pub health: Option<fleetreg_server::health::HealthScheduler>,
    /// The automatic credential rotation worker, when the settings enable it.
    pub rotation: Option<fleetreg_server::credentials::auto_rotate::AutoRotation>,
    /// The periodic client health checks, when the settings enable them.
    pub client_health: Option<fleetreg_server::client_health::ClientHealthMonitor>,
    /// The server's clock: the system clock, or the `Clock::manual` the
    /// settings gave (`settings.clock`), which the test then sets or advances.
    pub clock: fleetreg_model::Clock,
    pub database_url: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    resources: Option<TestResources>,
}

/// What a test app owns outside the process: a temp dir or a PostgreSQL database.
pub enum TestResources {
    /// Held for its `Drop`, which removes the directory.
    Dir(#[allow(dead_code)] tempfile::TempDir),
    /// Held for its `Drop`, which drops the database; the audit head file
    /// named after it goes first.
    PgDatabase(fleetreg_testkit::PostgresDatabase),
    /// Nothing to clean up (a replica on another app's store).
    None,
}

impl Drop for TestResources {
    fn drop(&mut self) {
        if let TestResources::PgDatabase(database) = self {
            let _ = std::fs::remove_file(audit_head_file(&database.url));
        }
    }
}

/// Runs one SQL statement on `app`'s database behind the server's back (an
/// attacker with database access, or what an older version stored).
pub async fn run_sql(app: &TestApp, statement: &str) {
    match app.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
            sqlx::query(statement).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
            sqlx::query(statement).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

/// Settings for a test server on a random port with the given store. Health
/// checks and discovery on registration are off (test clusters point at hosts
/// that do not exist); `health.rs` turns them on where it needs them.
pub fn test_settings(database_url: &str) -> Settings {
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.to_owned(),
        ..Settings::default()
    };
    settings.health_check.enabled = false;
    settings.discovery.on_registration = false;
    // Test clients' URLs name hosts that do not exist: no periodic checks
    // unless a test turns them on (`client_health.rs`).
    settings.client_health.interval_seconds = 0;
    // Nor services read from them (`service_sync.rs` turns it on).
    settings.edge.service_sync_seconds = 0;
    // Test nodes' addresses run no proxy: no HTTP checks through them.
    settings.edge.http_check.enabled = false;
    settings.credentials.master_key = Some(TEST_MASTER_KEY.into());
    settings.auth.admin_token = Some(TEST_ADMIN_TOKEN.into());
    settings.audit.head_file = Some(audit_head_file(database_url));
    settings
}

/// The audit head file of a test database: beside the SQLite file and named
/// after it, or in the temp directory named after the PostgreSQL database
/// (removed with it), so restarts and replicas of one database share it and
/// two databases never do.
pub fn audit_head_file(database_url: &str) -> std::path::PathBuf {
    match database_url.strip_prefix("sqlite://") {
        Some(path) => {
            let mut head = std::path::PathBuf::from(path).into_os_string();
            head.push(".audit.head");
            head.into()
        }
        None => {
            let name = database_url.rsplit('/').next().unwrap_or("fleetreg");
            std::env::temp_dir().join(format!("{name}.audit.head"))
        }
    }
}

/// The bootstrap admin token of every test server (FLEETREG_ADMIN_TOKEN's
/// role in CI); `TestApp::client` sends it.
pub const TEST_ADMIN_TOKEN: &str = "frg_test-admin-token-0123456789abcdef";

/// A client that sends `token` as its bearer token.
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// The master key every test server uses (base64 of 32 bytes), so a restarted
/// server opens what the previous one sealed.
pub const TEST_MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Starts a server on a random port with a fresh store.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

/// Like [`spawn_app`], letting the test adjust the settings first.
pub async fn spawn_app_with(
    backend: Backend,
    adjust: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    init_logging();
    let (database_url, resources) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("fleetreg.db").display());
            (url, TestResources::Dir(dir))
        }
        Backend::Postgres => {
            let database = fleetreg_testkit::postgres_database().await?;
            (database.url.clone(), TestResources::PgDatabase(database))
        }
    };
    Some(start(backend, database_url, resources, adjust).await)
}

async fn start(
    backend: Backend,
    database_url: String,
    resources: TestResources,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = test_settings(&database_url);
    adjust(&mut settings);
    let app = Application::build(settings).await.expect("server starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let store = app.store();
    let retention = app.retention();
    let health = app.health_scheduler();
    let rotation = app.credential_rotation();
    let client_health = app.client_health_monitor();
    let clock = app.clock();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        backend,
        client: client_with_token(TEST_ADMIN_TOKEN),
        store,
        retention,
        health,
        rotation,
        client_health,
        clock,
        database_url,
        stop: Some(stop),
        server: Some(server),
        resources: Some(resources),
    }
}

fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("info,sqlx=warn")
                .with_test_writer()
                .try_init();
        }
    });
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_cluster(&self, body: &Value) -> Response {
        self.client
            .post(self.url("/api/v1/clusters"))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_raw(&self, path: &str, body: &str) -> Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: Value) -> Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn get_cluster(&self, id: &str) -> Response {
        self.get(&format!("/api/v1/clusters/{id}")).await
    }

    pub async fn list(&self, query: &str) -> Response {
        self.get(&format!("/api/v1/clusters{query}")).await
    }

    pub async fn put_cluster(&self, id: &str, body: &Value) -> Response {
        self.client
            .put(self.url(&format!("/api/v1/clusters/{id}")))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete_cluster(&self, id: &str) -> Response {
        self.client
            .delete(self.url(&format!("/api/v1/clusters/{id}")))
            .send()
            .await
            .unwrap()
    }

    /// Registers a cluster from a minimal body plus `extra` fields; panics unless 201.
    pub async fn register(&self, name: &str, extra: Value) -> Value {
        let mut body = json!({ "name": name, "api_server_url": format!("https://api.{name}.example.com:6443") });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let response = self.post_cluster(&body).await;
        let status = response.status();
        let json: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "register {name}: {json}");
        json
    }

    /// Starts a second server on the same database (a replica); it owns nothing.
    pub async fn spawn_replica(&self) -> TestApp {
        self.spawn_replica_with(|_| {}).await
    }

    /// Like [`TestApp::spawn_replica`], letting the test adjust the settings first.
    pub async fn spawn_replica_with(&self, adjust: impl FnOnce(&mut Settings)) -> TestApp {
        let mut replica = start(
            self.backend,
            self.database_url.clone(),
            TestResources::None,
            adjust,
        )
        .await;
        replica.resources = None;
        replica
    }

    /// Stops the server gracefully, waits for it, and starts a new one on the same store.
    pub async fn restart(self) -> TestApp {
        self.restart_with(|_| {}).await
    }

    /// Like [`TestApp::restart`], letting the test adjust the new server's settings.
    pub async fn restart_with(mut self, adjust: impl FnOnce(&mut Settings)) -> TestApp {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
        let resources = self.resources.take().expect("resources");
        start(self.backend, self.database_url.clone(), resources, adjust).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Asserts a 2xx answer; its JSON body (`null` when empty).
pub async fn ok_json(response: Response) -> Value {
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Asserts an error envelope with `code` and `status`; returns the body.
pub async fn assert_error(response: Response, status: u16, code: &str) -> Value {
    let actual = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(actual, status, "status of {body}");
    assert_eq!(body["error"]["code"], code, "code in {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message in {body}"
    );
    assert!(body["error"]["details"].is_object(), "details in {body}");
    body
}

// ---- Shared by the health, rotation and credential tests ----

/// Background checks on, every cluster type every `interval` seconds, with
/// `timeout` seconds per check.
pub fn scheduled(settings: &mut Settings, interval: u64, timeout: u64) {
    let h = &mut settings.health_check;
    h.enabled = true;
    h.hub_interval_seconds = interval;
    h.spoke_interval_seconds = interval;
    h.edge_interval_seconds = interval;
    h.far_edge_interval_seconds = interval;
    h.timeout_seconds = Some(timeout);
}

/// Whether `path` is a health check's one API server call,
/// `GET /api/v1/namespaces?limit=1` (kube-rs may write the query as
/// `?&limit=1`; discovery lists namespaces without a limit).
pub fn is_check_api_call(path: &str) -> bool {
    path.split_once('?').is_some_and(|(path, query)| {
        path == "/api/v1/namespaces" && query.split('&').any(|pair| pair == "limit=1")
    })
}

/// `POST /clusters/{id}/credentials` with `body`, asserting 200.
pub async fn upload(app: &TestApp, id: &str, body: Value) -> Value {
    let response = app
        .client
        .post(app.url(&format!("/api/v1/clusters/{id}/credentials")))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// `POST /clusters/{id}/refresh`.
pub async fn refresh(app: &TestApp, id: &str) -> Response {
    app.client
        .post(app.url(&format!("/api/v1/clusters/{id}/refresh")))
        .send()
        .await
        .unwrap()
}

/// `POST /clusters/{id}/refresh`, asserting 200; the body.
pub async fn refresh_ok(app: &TestApp, id: &str) -> Value {
    let response = refresh(app, id).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "refresh: {body}");
    body
}

/// The `credentials` object of `GET /clusters/{id}/status`.
pub async fn credentials_of(app: &TestApp, id: &str) -> Value {
    let response = app.get(&format!("/api/v1/clusters/{id}/status")).await;
    assert_eq!(response.status(), 200);
    let status: Value = response.json().await.unwrap();
    status["credentials"].clone()
}

/// The sequence number of the last request the simulator logged so far (a
/// page of no cluster's requests still moves `next_after` over every entry).
pub fn log_position(sim: &fleetreg_sim::SpawnedSim) -> u64 {
    sim.sim.requests(0, Some(""), usize::MAX).next_after
}

/// Polls `probe` every 50 ms until it yields a value; panics with `what`
/// after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: std::time::Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A target cluster accepting `token` on its API server and `prom` on Prometheus.
pub async fn target(sim: &SpawnedSim, name: &str, token: &str, prom: &str) -> ClusterView {
    let view = sim
        .admin()
        .create_cluster_with_auth(
            name,
            ClusterSpec::default(),
            AuthSpec {
                required: true,
                prometheus_tokens: vec![prom.into()],
                ..AuthSpec::default()
            },
        )
        .await
        .unwrap();
    add_token(sim, name, token).await;
    view
}

/// Makes `cluster` accept `token` on its API server.
pub async fn add_token(sim: &SpawnedSim, cluster: &str, token: &str) {
    let add = AddToken {
        token: Some(token.into()),
        ..AddToken::default()
    };
    sim.admin().add_token(cluster, &add).await.unwrap();
}

/// Registers `view` with its Prometheus endpoint; returns the id.
pub async fn register_with_prometheus(app: &TestApp, view: &ClusterView) -> String {
    let body = json!({
        "api_server_url": view.api_server_url,
        "endpoints": { "prometheus_url": view.prometheus_url },
    });
    let cluster = app.register(&view.name, body).await;
    cluster["id"].as_str().unwrap().to_owned()
}

/// Stores (`path` "") or rotates (`"/rotate"`) a TOKEN credential of `token`
/// and Prometheus token `prom` through the API; asserts 200.
pub async fn put_token(app: &TestApp, id: &str, token: &str, prom: &str, path: &str) -> Value {
    let body = json!({ "auth_type": "TOKEN", "token": token, "prometheus_token": prom });
    let response = app
        .client
        .post(app.url(&format!("/api/v1/clusters/{id}/credentials{path}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// An `io::Write` into a shared buffer: a log capture or a response body
/// collected while it streams.
#[derive(Clone, Default)]
pub struct SharedBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuffer {
    /// What was written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }

    /// What was written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
}

/// Captures everything logged on this thread at TRACE, without colours,
/// until the guard drops. On a current-thread runtime (`#[tokio::test]`'s
/// default) every task the server spawns runs here, so this is all it logs.
pub fn capture_trace_log() -> (SharedBuffer, tracing::subscriber::DefaultGuard) {
    let log = SharedBuffer::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (log, tracing::subscriber::set_default(subscriber))
}
