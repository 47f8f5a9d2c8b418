//! Events published to Redis pub/sub (`fleetreg:events`) from the outbox: the
//! shared Redis at 127.0.0.1:6379, and an outage against a `redis-server` of
//! the test's own (the shared one is never stopped).

use crate::helpers::*;
use fleetreg_testkit::free_port;
use futures::StreamExt;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

const CHANNEL: &str = "fleetreg:events";
const DEADLINE: Duration = Duration::from_secs(20);

fn shared_redis_url() -> String {
    std::env::var("FLEETREG_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn redis_required() -> bool {
    std::env::var("FLEETREG_REQUIRE_REDIS").is_ok_and(|v| v == "1")
}

/// Subscribes to the channel; `None` (after a skip line) when Redis is unreachable and not required.
async fn subscribe(url: &str) -> Option<redis::aio::PubSub> {
    let connect = async {
        let client = redis::Client::open(url)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(CHANNEL).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(pubsub)) => Some(pubsub),
        Ok(Err(error)) if !redis_required() => {
            fleetreg_testkit::skip(&format!("Redis at {url} is unreachable ({error}); set FLEETREG_REQUIRE_REDIS=1 to fail instead"));
            None
        }
        Err(_) if !redis_required() => {
            fleetreg_testkit::skip(&format!(
                "Redis at {url} did not answer; set FLEETREG_REQUIRE_REDIS=1 to fail instead"
            ));
            None
        }
        Ok(Err(error)) => {
            panic!("FLEETREG_REQUIRE_REDIS=1 but Redis at {url} is unreachable: {error}")
        }
        Err(_) => panic!("FLEETREG_REQUIRE_REDIS=1 but Redis at {url} did not answer"),
    }
}

/// Receives messages until every revision in `wanted` arrived (duplicates
/// allowed: delivery is at least once), ignoring envelopes `keep` rejects;
/// returns the kept envelopes in arrival order.
async fn receive_until(
    pubsub: &mut redis::aio::PubSub,
    wanted: &[i64],
    keep: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut got: Vec<Value> = Vec::new();
    let mut missing: std::collections::BTreeSet<i64> = wanted.iter().copied().collect();
    let mut messages = pubsub.on_message();
    let deadline = Instant::now() + DEADLINE;
    while !missing.is_empty() {
        let message = tokio::time::timeout_at(deadline, messages.next())
            .await
            .unwrap_or_else(|_| {
                panic!("Redis did not deliver revisions {missing:?} in time; got {got:?}")
            })
            .expect("subscription ended");
        assert_eq!(message.get_channel_name(), CHANNEL);
        let payload: String = message.get_payload().unwrap();
        let envelope: Value = serde_json::from_str(&payload).unwrap();
        if !keep(&envelope) {
            continue;
        }
        missing.remove(&envelope["revision"].as_i64().unwrap());
        got.push(envelope);
    }
    got
}

/// The change log after `after`, through the HTTP API.
async fn logged_after(app: &TestApp, after: i64) -> Vec<Value> {
    let response = app
        .get(&format!("/api/v1/events?after={after}&limit=1000"))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["items"].as_array().unwrap().clone()
}

fn revisions(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["revision"].as_i64().unwrap())
        .collect()
}

/// Asserts that first deliveries come in revision order.
fn assert_first_deliveries_in_order(got: &[Value]) {
    let mut seen = std::collections::HashSet::new();
    let firsts: Vec<i64> = revisions(got)
        .into_iter()
        .filter(|r| seen.insert(*r))
        .collect();
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "Redis delivered out of revision order: {firsts:?}"
    );
}

async fn shared_redis_publishes_every_event(backend: Backend) {
    let url = shared_redis_url();
    let Some(mut pubsub) = subscribe(&url).await else {
        return;
    };
    let Some(app) =
        spawn_app_with(backend, |settings| settings.redis_url = Some(url.clone())).await
    else {
        return;
    };
    let created = app
        .register("redis-a", json!({ "labels": { "team": "sre" } }))
        .await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        app.put_cluster(id, &json!({ "region": "r2" }))
            .await
            .status(),
        200
    );
    for i in 0..5 {
        app.register(&format!("redis-{i}"), json!({})).await;
    }
    assert_eq!(app.delete_cluster(id).await.status(), 204);

    let logged = logged_after(&app, 0).await;
    assert_eq!(logged.len(), 8);
    let wanted = revisions(&logged);
    // Other tests may publish on the shared channel: keep only this app's clusters.
    let ours: std::collections::HashSet<&str> = logged
        .iter()
        .map(|e| e["resource_id"].as_str().unwrap())
        .collect();
    let got = receive_until(&mut pubsub, &wanted, |e| {
        e["resource_id"]
            .as_str()
            .is_some_and(|id| ours.contains(id))
    })
    .await;
    assert_first_deliveries_in_order(&got);
    let mut first = Vec::new();
    for envelope in got {
        if !first.contains(&envelope) {
            first.push(envelope);
        }
    }
    assert_eq!(
        first, logged,
        "Redis carries the same JSON envelopes as the change log, in revision order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_redis_publishes_every_event_sqlite() {
    shared_redis_publishes_every_event(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_redis_publishes_every_event_postgres() {
    shared_redis_publishes_every_event(Backend::Postgres).await;
}

// ---------------------------------------------------------------------------
// Outage: a redis-server of our own, killed and restarted on the same port.

const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// A `redis-server` child process, killed on drop.
struct OwnRedis {
    child: Child,
    port: u16,
}

impl OwnRedis {
    /// Starts `redis-server` on `port` (persistence off), optionally with a
    /// password, and waits until it answers.
    async fn start(port: u16, password: Option<&str>) -> OwnRedis {
        let mut command = Command::new(REDIS_SERVER);
        command.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        if let Some(password) = password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let redis = OwnRedis { child, port };
        let url = redis.url(password);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ping = async {
                let client = redis::Client::open(url.as_str())?;
                let mut connection = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
            };
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), ping).await {
                return redis;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, password: Option<&str>) -> String {
        match password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of an unlabelled metric in `/metrics`, 0 when absent.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

async fn redis_outage_delays_but_loses_nothing(backend: Backend) {
    if !std::path::Path::new(REDIS_SERVER).exists() {
        assert!(
            !redis_required(),
            "FLEETREG_REQUIRE_REDIS=1 but {REDIS_SERVER} is missing"
        );
        fleetreg_testkit::skip(&format!(
            "{REDIS_SERVER} is missing (apt-get install redis-server)"
        ));
        return;
    }
    let port = free_port();
    let redis = OwnRedis::start(port, None).await;
    let url = redis.url(None);
    let mut pubsub = subscribe(&url).await.expect("own redis answers");
    let Some(app) =
        spawn_app_with(backend, |settings| settings.redis_url = Some(url.clone())).await
    else {
        return;
    };

    // Publishing works before the outage.
    app.register("outage-0", json!({})).await;
    let before = revisions(&logged_after(&app, 0).await);
    receive_until(&mut pubsub, &before, |_| true).await;
    drop(pubsub);

    // Redis dies; writes still succeed.
    let failures_before = metric(&app, "fleetreg_redis_publish_failures_total").await;
    redis.kill();
    let mut created = Vec::new();
    for i in 1..=10 {
        created.push(app.register(&format!("outage-{i}"), json!({})).await);
    }
    let logged = logged_after(&app, 0).await;
    assert_eq!(logged.len(), 11);
    let after_outage = revisions(&logged[1..]);
    // Retention never removes what the outbox has yet to publish.
    app.retention
        .prune_older_than(Duration::ZERO)
        .await
        .unwrap();
    let kept = logged_after(&app, after_outage[0] - 1).await;
    assert_eq!(kept, logged[1..], "retention removed unpublished events");

    // The outage shows in /metrics.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let failures = metric(&app, "fleetreg_redis_publish_failures_total").await;
        if failures > failures_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fleetreg_redis_publish_failures_total stayed at {failures}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains("fleetreg_redis_outbox_backlog"),
        "backlog gauge missing from /metrics"
    );

    // Redis comes back on the same port. It starts with a password so the
    // outbox cannot publish until this test has subscribed; then it opens up.
    let redis = OwnRedis::start(port, Some("letmein")).await;
    let mut pubsub = subscribe(&redis.url(Some("letmein")))
        .await
        .expect("restarted redis answers");
    let admin = redis::Client::open(redis.url(Some("letmein"))).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();

    let got = receive_until(&mut pubsub, &after_outage, |_| true).await;
    assert_first_deliveries_in_order(&got);
    for envelope in &got {
        let revision = envelope["revision"].as_i64().unwrap();
        let expected = logged
            .iter()
            .find(|e| e["revision"] == revision)
            .expect("a logged revision");
        assert_eq!(
            envelope, expected,
            "Redis carries the change log's envelope"
        );
    }
    let names: Vec<&str> = got
        .iter()
        .filter_map(|e| e["payload"]["name"].as_str())
        .collect();
    for cluster in &created {
        assert!(
            names.contains(&cluster["name"].as_str().unwrap()),
            "{} never reached Redis",
            cluster["name"]
        );
    }
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_delays_but_loses_nothing_sqlite() {
    redis_outage_delays_but_loses_nothing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_delays_but_loses_nothing_postgres() {
    redis_outage_delays_but_loses_nothing(Backend::Postgres).await;
}
