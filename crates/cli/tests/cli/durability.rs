//! Durability: `fleetreg serve` is killed with SIGKILL in the middle of
//! concurrent registrations and restarted on the same database; every
//! registration that was acknowledged with 201 must be there, with its event.
//! Runs on SQLite and on PostgreSQL (a database of its own, dropped after).

use crate::common::{fleetreg_in, ADMIN_TOKEN};
use fleetreg_testkit::free_port;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Concurrent registering clients.
const WRITERS: usize = 16;
/// Acknowledged registrations to wait for before the kill.
const KILL_AFTER: usize = 300;

/// A `fleetreg serve` child process, killed on drop.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    /// Starts `fleetreg serve` and waits until `/health` answers.
    async fn start(database_url: &str, port: u16, log: &Path) -> Server {
        let stderr = File::options().create(true).append(true).open(log).unwrap();
        let child = fleetreg_in(log.parent().unwrap())
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--database-url",
                database_url,
                "--no-health-checks",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start fleetreg serve");
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: log.to_owned(),
        };
        server.wait_healthy().await;
        server
    }

    async fn wait_healthy(&mut self) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = client.get(format!("{}/health", self.base)).send().await {
                if response.status() == 200 {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "fleetreg serve exited with {status}:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "fleetreg serve did not become healthy:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap it.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Registers clusters from `WRITERS` tasks until the server goes away; records
/// each name acknowledged with 201 (at the status line, before the body) and
/// its id when the body could still be read.
fn start_writers(
    base: &str,
    acked: Arc<Mutex<HashMap<String, Option<String>>>>,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..WRITERS)
        .map(|t| {
            let url = format!("{base}/api/v1/clusters");
            let (acked, count, stop) = (acked.clone(), count.clone(), stop.clone());
            tokio::spawn(async move {
                let client = authed().timeout(Duration::from_secs(10)).build().unwrap();
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let name = format!("dur-{t}-{i}");
                    let body = json!({ "name": name, "api_server_url": format!("https://api.{name}.example.com:6443") });
                    let Ok(response) = client.post(&url).json(&body).send().await else {
                        return; // the server is gone
                    };
                    let status = response.status().as_u16();
                    if status != 201 {
                        // Anything but 201 is never acknowledged; it must not be a 4xx.
                        assert!(status >= 500, "register {name} got {status}");
                        return;
                    }
                    acked.lock().unwrap().insert(name.clone(), None);
                    count.fetch_add(1, Ordering::SeqCst);
                    if let Ok(created) = response.json::<Value>().await {
                        let id = created["id"].as_str().map(str::to_owned);
                        acked.lock().unwrap().insert(name, id);
                    }
                }
            })
        })
        .collect()
}

/// Every event in the log.
async fn all_events(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let mut cursor = 0;
    let mut all = Vec::new();
    loop {
        let response = client
            .get(format!("{base}/api/v1/events?after={cursor}&limit=1000"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        if items.is_empty() {
            return all;
        }
        cursor = page["next_after"].as_i64().unwrap();
        all.extend(items.iter().cloned());
    }
}

async fn kill_mid_registrations_loses_nothing(database_url: &str, dir: &Path) {
    let log = dir.join("serve.log");
    let port = free_port();
    let mut server = Server::start(database_url, port, &log).await;

    let acked = Arc::new(Mutex::new(HashMap::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(&server.base, acked.clone(), count.clone(), stop.clone());

    // Let registrations run, then kill the server while they are in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "only {} registrations in 30 s",
            count.load(Ordering::SeqCst)
        );
        assert!(
            !writers.iter().all(|w| w.is_finished()),
            "all writers stopped before the kill"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        tokio::time::timeout(Duration::from_secs(20), writer)
            .await
            .expect("writers end after the kill")
            .expect("writer task");
    }
    let acked: HashMap<String, Option<String>> = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() >= KILL_AFTER);

    // Same database, same port.
    let server = Server::start(database_url, port, &log).await;
    let client = authed().build().unwrap();
    let events = all_events(&client, &server.base).await;
    let registered: HashSet<&str> = events
        .iter()
        .filter(|e| e["type"] == "CLUSTER_REGISTERED")
        .map(|e| e["resource_id"].as_str().unwrap())
        .collect();
    let revisions: Vec<i64> = events
        .iter()
        .map(|e| e["revision"].as_i64().unwrap())
        .collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "revisions strictly increase after recovery"
    );

    let mut missing = Vec::new();
    for (name, id) in &acked {
        let response = client
            .get(format!("{}/api/v1/clusters/by-name/{name}", server.base))
            .send()
            .await
            .unwrap();
        if response.status() != 200 {
            missing.push(name.clone());
            continue;
        }
        let cluster: Value = response.json().await.unwrap();
        let found_id = cluster["id"].as_str().unwrap().to_owned();
        if let Some(id) = id {
            assert_eq!(&found_id, id, "{name} has the id it was acknowledged with");
            let by_id = client
                .get(format!("{}/api/v1/clusters/{id}", server.base))
                .send()
                .await
                .unwrap();
            assert_eq!(by_id.status(), 200, "{name} by id");
        }
        assert!(
            registered.contains(found_id.as_str()),
            "{name} ({found_id}) has no CLUSTER_REGISTERED event"
        );
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged registrations were lost: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );

    // Whatever was in flight either fully happened or not at all: every
    // registered event has its cluster.
    let list: Value = client
        .get(format!("{}/api/v1/clusters?page_size=1", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["total"].as_u64().unwrap() as usize,
        registered.len(),
        "clusters and REGISTERED events agree"
    );

    // And the recovered server takes new writes after the old revisions.
    let body = json!({ "name": "after-restart", "api_server_url": "https://api.after-restart.example.com:6443" });
    let response = client
        .post(format!("{}/api/v1/clusters", server.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let latest = all_events(&client, &server.base).await.last().unwrap()["revision"]
        .as_i64()
        .unwrap();
    assert!(latest > *revisions.last().unwrap());
    eprintln!(
        "durability: {} acknowledged before SIGKILL, {} registered after recovery, none lost",
        acked.len(),
        registered.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_registration_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fleetreg.db").display());
    kill_mid_registrations_loses_nothing(&url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_registration_postgres() {
    let Some(database) = fleetreg_testkit::postgres_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    kill_mid_registrations_loses_nothing(&database.url, dir.path()).await;
}

/// A client builder that sends the admin token.
fn authed() -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
    );
    reqwest::Client::builder().default_headers(headers)
}
