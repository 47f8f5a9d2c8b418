//! Event fan-out: many subscribers on `/api/v1/events/stream`, then writes one
//! at a time; for each write, the time from its acknowledgement (the HTTP
//! response) until the last subscriber has received the whole frame.

use crate::load::describe_failure;
use crate::procfs;
use crate::scenarios::{authed, mb, Context};
use crate::stats::{Latencies, Row};
use crate::BenchError;
use futures::StreamExt;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

/// Subscribers connecting at once.
pub(crate) const CONNECT_PARALLELISM: usize = 128;
/// Longest wait for all subscribers to connect.
pub(crate) const CONNECT_TIME_LIMIT: Duration = Duration::from_secs(120);
/// Longest wait for one event to reach every subscriber.
const DELIVERY_TIME_LIMIT: Duration = Duration::from_secs(10);
/// Pause between two timed writes.
const WRITE_GAP: Duration = Duration::from_millis(50);
/// Descriptors kept free for everything else.
pub(crate) const SPARE_FILES: u64 = 256;

/// Arrivals per revision: how many subscribers have it and when the last got it.
#[derive(Default)]
struct Arrivals {
    // std Mutex: held for one map update, never across an await.
    by_revision: Mutex<HashMap<i64, (usize, Instant)>>,
}

impl Arrivals {
    fn record(&self, revision: i64, at: Instant) {
        let mut map = self.by_revision.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(revision).or_insert((0, at));
        entry.0 += 1;
        if at > entry.1 {
            entry.1 = at;
        }
    }

    fn get(&self, revision: i64) -> (usize, Option<Instant>) {
        let map = self.by_revision.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&revision)
            .map_or((0, None), |(n, at)| (*n, Some(*at)))
    }
}

/// Counts of subscribers by phase.
#[derive(Default)]
pub(crate) struct Connections {
    pub(crate) connected: AtomicUsize,
    pub(crate) failed: AtomicUsize,
    pub(crate) changed: Notify,
    pub(crate) first_failure: Mutex<Option<String>>,
}

impl Connections {
    pub(crate) fn fail(&self, why: String) {
        let mut first = self.first_failure.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(why);
        drop(first);
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// Waits until `expected` have connected or failed, or until `deadline`.
    pub(crate) async fn wait_for(&self, expected: usize, deadline: Instant) {
        loop {
            let done = self.connected.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed);
            if done >= expected || Instant::now() >= deadline {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), self.changed.notified()).await;
        }
    }

    /// The first failure recorded, taken.
    pub(crate) fn take_failure(&self) -> Option<String> {
        self.first_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// Parses the `id:` of a complete SSE frame (without its blank line).
fn frame_id(frame: &[u8]) -> Option<i64> {
    frame.split(|b| *b == b'\n').find_map(|line| {
        std::str::from_utf8(line.strip_prefix(b"id: ")?)
            .ok()?
            .trim()
            .parse()
            .ok()
    })
}

/// One subscriber: connects, reports `: connected`, then records every frame's arrival.
async fn subscribe(
    client: reqwest::Client,
    url: String,
    token: Option<Arc<str>>,
    gate: Arc<Semaphore>,
    connections: Arc<Connections>,
    arrivals: Arc<Arrivals>,
) {
    let permit = gate.acquire_owned().await;
    let response = match authed(client.get(url), &token).send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => return connections.fail(describe_failure(r).await),
        Err(e) => return connections.fail(e.to_string()),
    };
    let mut stream = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::with_capacity(4096);
    let mut permit = Some(permit);
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { break };
        let at = Instant::now();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let frame = &buffer[..end];
            if frame.starts_with(b": connected") {
                if permit.take().is_some() {
                    connections.connected.fetch_add(1, Ordering::Relaxed);
                    connections.changed.notify_one();
                }
            } else if let Some(revision) = frame_id(frame) {
                arrivals.record(revision, at);
            }
            buffer.drain(..end + 2);
        }
    }
    if permit.is_some() {
        connections.fail("stream ended before `: connected`".into());
    }
}

/// Reads `fleetreg_event_stream_subscribers` from `/metrics`.
async fn server_subscribers(ctx: &Context) -> Option<f64> {
    let response = authed(ctx.control.get(format!("{}/metrics", ctx.base)), &ctx.token)
        .send()
        .await
        .ok()?;
    let text = response.text().await.ok()?;
    text.lines()
        .find(|l| l.starts_with("fleetreg_event_stream_subscribers"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

/// Registers the cluster whose updates are fanned out; returns its id.
async fn target_cluster(ctx: &Context) -> Result<String, BenchError> {
    let name = format!(
        "bench-{}-fanout-{}",
        ctx.run,
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..6)
            .unwrap_or("x")
    );
    let body = json!({ "name": name, "api_server_url": crate::scenarios::UNREACHABLE_API_SERVER, "environment": "LAB" });
    let response = authed(
        ctx.control.post(format!("{}/api/v1/clusters", ctx.base)),
        &ctx.token,
    )
    .json(&body)
    .send()
    .await?;
    if response.status() != reqwest::StatusCode::CREATED {
        return Err(BenchError::Server {
            what: "POST /api/v1/clusters (fan-out target)".into(),
            detail: describe_failure(response).await,
        });
    }
    let created: serde_json::Value = response.json().await?;
    created["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| BenchError::Unexpected {
            what: "POST /api/v1/clusters".into(),
            detail: "no id in the answer".into(),
        })
}

/// Runs the fan-out scenario for every `--subscribers` count.
pub(crate) async fn run(ctx: &mut Context) -> Result<Vec<Row>, BenchError> {
    let mut rows = Vec::new();
    let target = target_cluster(ctx).await?;
    let limit = procfs::open_files_limit();
    for &subscribers in &ctx.args.subscribers.clone() {
        let mut row = Row::new(
            format!("fanout-{subscribers}"),
            format!(
                "{subscribers} SSE subscribers, {} PUTs one at a time",
                ctx.args.fanout_writes
            ),
        );
        let target_ms = if subscribers <= 1000 { 40.0 } else { 150.0 };
        row.target = Some(format!("p50 <= {target_ms:.0} ms"));
        if let Some(limit) = limit.filter(|l| *l < subscribers as u64 + SPARE_FILES) {
            row.notes.push(format!("skipped: open-files limit {limit} is below {subscribers} + {SPARE_FILES}; raise it with `ulimit -n`"));
            rows.push(row);
            continue;
        }
        measure(ctx, &target, subscribers, target_ms, &mut row).await?;
        crate::report::progress(&row);
        rows.push(row);
    }
    Ok(rows)
}

async fn measure(
    ctx: &Context,
    target: &str,
    subscribers: usize,
    target_ms: f64,
    row: &mut Row,
) -> Result<(), BenchError> {
    eprintln!("fanout: connecting {subscribers} subscribers to /api/v1/events/stream ...");
    let before = ctx.server_pid.and_then(procfs::memory);
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .no_proxy()
        .build()?;
    let connections = Arc::new(Connections::default());
    let arrivals = Arc::new(Arrivals::default());
    let gate = Arc::new(Semaphore::new(CONNECT_PARALLELISM));
    let url = format!("{}/api/v1/events/stream", ctx.base);
    // Dropping the set aborts every subscriber task, closing its connection.
    let mut tasks = tokio::task::JoinSet::new();
    let connect_started = Instant::now();
    for _ in 0..subscribers {
        tasks.spawn(subscribe(
            client.clone(),
            url.clone(),
            ctx.token.clone(),
            gate.clone(),
            connections.clone(),
            arrivals.clone(),
        ));
    }
    connections
        .wait_for(subscribers, connect_started + CONNECT_TIME_LIMIT)
        .await;
    let connected = connections.connected.load(Ordering::Relaxed);
    let refused = subscribers - connected;
    eprintln!(
        "  {connected} connected in {:.1} s ({refused} failed)",
        connect_started.elapsed().as_secs_f64()
    );
    if let Some(why) = connections.take_failure() {
        row.notes.push(format!("subscriber failure: {why}"));
    }
    // Let the server settle (buffers allocated, tasks parked) before reading memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_connect = ctx.server_pid.and_then(procfs::memory);

    // One untimed write first: it also makes the server drop streams closed by an
    // earlier step (it notices a closed connection only when writing to it).
    let warm_up = json!({ "display_name": "fan-out warm-up" });
    let response = authed(
        ctx.control
            .put(format!("{}/api/v1/clusters/{target}", ctx.base)),
        &ctx.token,
    )
    .json(&warm_up)
    .send()
    .await?;
    response.bytes().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(n) = server_subscribers(ctx).await {
        row.notes
            .push(format!("server reports {n} stream subscribers"));
    }

    let mut fanout = Latencies::with_capacity(ctx.args.fanout_writes as usize);
    let mut acks = Latencies::with_capacity(ctx.args.fanout_writes as usize);
    let mut failed = 0u64;
    let started = Instant::now();
    for k in 0..ctx.args.fanout_writes {
        let body = json!({ "display_name": format!("fan-out write {k}") });
        let sent = Instant::now();
        let response = authed(
            ctx.control
                .put(format!("{}/api/v1/clusters/{target}", ctx.base)),
            &ctx.token,
        )
        .json(&body)
        .send()
        .await?;
        let acked = Instant::now();
        if !response.status().is_success() {
            failed += 1;
            row.notes.push(format!(
                "write failed: {}",
                describe_failure(response).await
            ));
            continue;
        }
        acks.record(acked - sent);
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_owned());
        let body = response.bytes().await?;
        let revision = etag.and_then(|e| e.parse::<i64>().ok()).or_else(|| {
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["revision"].as_i64())
        });
        let Some(revision) = revision else {
            failed += 1;
            row.notes.push("write answer carried no revision".into());
            continue;
        };
        let wait_until = acked + DELIVERY_TIME_LIMIT;
        loop {
            let (have, last) = arrivals.get(revision);
            if have >= connected {
                fanout.record(
                    last.map_or(Duration::ZERO, |last| last.saturating_duration_since(acked)),
                );
                break;
            }
            if Instant::now() >= wait_until {
                failed += 1;
                row.notes.push(format!("revision {revision}: only {have} of {connected} subscribers got it within {} s", DELIVERY_TIME_LIMIT.as_secs()));
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        tokio::time::sleep(WRITE_GAP).await;
    }
    row.requests = u64::from(ctx.args.fanout_writes);
    row.failed = failed + refused as u64;
    row.elapsed_secs = started.elapsed().as_secs_f64();
    row.set_latencies(&mut fanout);
    row.met = Some(row.p50_ms.is_some_and(|p| p <= target_ms) && row.failed == 0);
    if let Some(p50) = acks.percentile(50.0) {
        row.notes.push(format!(
            "write acknowledged in p50 {:.1} ms",
            crate::stats::ms(p50)
        ));
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    drop(client);
    let after_disconnect = released_memory(ctx, target).await;
    match (before, after_connect) {
        (Some(before), Some(after)) if connected > 0 => {
            let delta = after.rss.saturating_sub(before.rss);
            row.value = Some(format!(
                "{:.1} KB/subscriber (RSS {:.1} -> {:.1} MB)",
                delta as f64 / connected as f64 / 1e3,
                mb(before.rss),
                mb(after.rss)
            ));
            if let Some(released) = after_disconnect {
                let within = released.rss as f64 <= before.rss as f64 * 1.25;
                row.notes.push(format!(
                    "RSS {:.1} MB after they disconnected: {} 25 % of the {:.1} MB before they connected",
                    mb(released.rss),
                    if within { "within" } else { "NOT within" },
                    mb(before.rss)
                ));
            }
        }
        _ => row
            .notes
            .push("server memory unknown (no --server-pid)".into()),
    }
    Ok(())
}

/// The server's memory once it has dropped the closed streams: it notices a
/// closed connection only when writing to it, so one write goes out first;
/// then it is read when the server reports no subscriber (at most 10 s).
async fn released_memory(ctx: &Context, target: &str) -> Option<procfs::Memory> {
    let pid = ctx.server_pid?;
    let nudge = json!({ "display_name": "fan-out released" });
    let _ = authed(
        ctx.control
            .put(format!("{}/api/v1/clusters/{target}", ctx.base)),
        &ctx.token,
    )
    .json(&nudge)
    .send()
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if server_subscribers(ctx).await == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The allocator returns freed pages a moment later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    procfs::memory(pid)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_frame_ids() {
        assert_eq!(
            super::frame_id(b"id: 42\nevent: CLUSTER_UPDATED\ndata: {}"),
            Some(42)
        );
        assert_eq!(super::frame_id(b": keep-alive"), None);
    }
}
