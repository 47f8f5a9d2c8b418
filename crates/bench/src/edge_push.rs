//! Edge push (issue 13): `--edge-agents` simulated edge agents in this
//! process, each with its own HTTP client, hold
//! `GET /api/v1/nodes/{name}/config/stream` open on one `serve`. On every
//! `config` frame an agent does what `fleetreg agent` does but the proxy
//! reload: it renders its file set with the model's renderers
//! (`render_file_set`), writes each file beside its place and renames it over
//! (no fsync: a thousand agents here share one disk, real ones have their
//! own), then acknowledges the revision (`POST /api/v1/nodes/{name}/ack`).
//! After 10 s without an acknowledgement it sends a heartbeat with the
//! revision applied, as the real agent does. The stream and the
//! acknowledgements share one HTTP/2 connection, as the real agent's do
//! (`--edge-transport h1` for two HTTP/1.1 connections). Measured:
//!
//! - per routing change (`PUT /api/v1/routing/{service}`, alternating
//!   primary-backup and round-robin so that every node's configuration
//!   changes), the time from the PUT's answer to each agent's acknowledgement
//!   being answered, and to the last agent's;
//! - the server's RSS before the agents connect and with them connected and
//!   idle (per agent), and its CPU time over an idle window;
//! - an agent whose stream is dropped while a change is made, then
//!   reconnects: the time from its reconnect to its acknowledgement;
//! - a full reconciliation (`POST /api/v1/sync/reconcile`): from its answer
//!   until every agent acknowledged the re-sent configuration.
//!
//! Two VPS nodes and `--edge-agents` − 2 laptops; every laptop gets every
//! hostname's DNS record, so a routing change reaches every agent. Addresses
//! are IP literals (laptops 10.R.x.y, VPS 127.1.R.x and 127.2.R.x, upstreams
//! on 127.0.0.1) and nothing resolves a name. What the scenario registered is
//! deleted at the end.

use crate::fanout::{Connections, CONNECT_PARALLELISM, CONNECT_TIME_LIMIT, SPARE_FILES};
use crate::load::{self, describe_failure, Limits, Rng};
use crate::procfs;
use crate::scenarios::{authed, mb, Context};
use crate::stats::{ms, Latencies, Row};
use crate::{BenchError, EdgeTransport};
use fleetreg_model::{render_file_set, NodeConfig, RenderOptions, RenderedFile};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};
use tokio::task::{AbortHandle, JoinSet};

/// An agent's heartbeat period (the real agent's default).
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Longest an acknowledgement or heartbeat may take.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for every agent to acknowledge one change.
const DELIVERY_TIME_LIMIT: Duration = Duration::from_secs(30);
/// Longest wait for every node to be in sync after the agents connected.
const SETTLE_TIME_LIMIT: Duration = Duration::from_secs(120);
/// Pause after each timed change.
const CHANGE_GAP: Duration = Duration::from_secs(1);
/// Agents dropped and restarted, one after the other.
const RESTARTS: usize = 3;
/// Connections registering (and removing) the nodes.
const SETUP_CONCURRENCY: usize = 16;
/// VPS nodes; the other agents are laptops.
const VPS_NODES: usize = 2;
/// Issue 13's targets.
const TARGET_P99_MS: f64 = 300.0;
const TARGET_LAST_MS: f64 = 500.0;
const TARGET_KB_PER_AGENT: f64 = 40.0;
/// tmpfs on Linux, for the agents' files.
const SHARED_MEMORY: &str = "/dev/shm";
/// The benchmark service's upstreams (nothing needs to listen there).
const UPSTREAMS: [&str; 2] = ["127.0.0.1:18001", "127.0.0.1:18002"];
/// The strategies the timed changes alternate between (the routing starts
/// round-robin): every node's configuration differs between the two.
const STRATEGIES: [&str; 2] = ["primary-backup", "round-robin"];

/// Which acknowledgement of an agent the current wait counts.
#[derive(Debug, Clone, Copy)]
enum Arm {
    /// The first of a revision above this one (a routing change).
    NewerThan(i64),
    /// The first of a frame that arrived after this instant (a re-send).
    FrameAfter(Instant),
}

impl Arm {
    fn counts(self, revision: i64, frame_at: Instant) -> bool {
        match self {
            Arm::NewerThan(before) => revision > before,
            Arm::FrameAfter(after) => frame_at >= after,
        }
    }
}

/// When the counted frame arrived and when its acknowledgement was answered.
#[derive(Debug, Clone, Copy)]
struct Hit {
    frame_at: Instant,
    acked_at: Instant,
}

/// One agent as the measuring loop sees it.
#[derive(Debug, Default)]
struct Slot {
    /// The revision it last applied and acknowledged.
    applied: Option<i64>,
    /// Whether its stream is open (it received a frame and has not ended).
    connected: bool,
    /// What the current wait counts, when this agent is part of it.
    armed: Option<Arm>,
    /// The counted acknowledgement.
    hit: Option<Hit>,
}

/// The agents' acknowledgements, and the wait for a set of them.
#[derive(Default)]
struct Board {
    slots: Vec<Mutex<Slot>>,
    /// Armed agents whose counted acknowledgement has not come yet.
    pending: AtomicUsize,
    done: Notify,
    heartbeats: AtomicU64,
    failures: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

impl Board {
    fn new(agents: usize) -> Board {
        Board {
            slots: (0..agents).map(|_| Mutex::default()).collect(),
            ..Board::default()
        }
    }

    fn slot(&self, index: usize) -> MutexGuard<'_, Slot> {
        // std Mutex: held for a few field updates, never across an await.
        self.slots[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, why: String) {
        self.first_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    fn set_connected(&self, index: usize, connected: bool) {
        self.slot(index).connected = connected;
    }

    /// Records that agent `index` applied `revision` (from a frame that
    /// arrived at `hit.frame_at`) and had its acknowledgement answered.
    fn acknowledged(&self, index: usize, revision: i64, hit: Hit) {
        let mut slot = self.slot(index);
        slot.applied = Some(revision);
        if slot.hit.is_none()
            && slot
                .armed
                .is_some_and(|arm| arm.counts(revision, hit.frame_at))
        {
            slot.hit = Some(hit);
            drop(slot);
            if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.done.notify_one();
            }
        }
    }

    /// Arms the agents `pick` chooses (by index and state) for the next
    /// [`Board::wait`]; returns how many. Each is counted in `pending` under
    /// its own lock, before it can be hit.
    fn arm(&self, mut pick: impl FnMut(usize, &Slot) -> Option<Arm>) -> usize {
        self.pending.store(0, Ordering::SeqCst);
        let mut armed = 0;
        for index in 0..self.slots.len() {
            let mut slot = self.slot(index);
            slot.hit = None;
            slot.armed = pick(index, &slot);
            if slot.armed.is_some() {
                self.pending.fetch_add(1, Ordering::SeqCst);
                armed += 1;
            }
        }
        armed
    }

    /// Waits until every armed agent's counted acknowledgement came, or
    /// `limit`; disarms them and returns each with its hit (`None`: missing).
    async fn wait(&self, limit: Duration) -> Vec<(usize, Option<Hit>)> {
        let _ = tokio::time::timeout(limit, async {
            while self.pending.load(Ordering::Acquire) > 0 {
                self.done.notified().await;
            }
        })
        .await;
        (0..self.slots.len())
            .filter_map(|index| {
                let mut slot = self.slot(index);
                slot.armed.take()?;
                Some((index, slot.hit.take()))
            })
            .collect()
    }
}

/// What every agent task shares.
struct Agents {
    base: Arc<str>,
    token: Option<Arc<str>>,
    /// Every agent's node: the VPSs first, then the laptops.
    names: Vec<Arc<str>>,
    /// The agents' output directories are below this one.
    root: PathBuf,
    options: RenderOptions,
    /// How agents talk to the server (`--edge-transport`).
    transport: EdgeTransport,
    board: Board,
    connections: Connections,
}

/// The `data` of a `config` frame.
#[derive(Deserialize)]
struct ConfigDocument {
    revision: i64,
    config: NodeConfig,
}

/// The client of one agent: its own connections (one HTTP/2 connection, or
/// over HTTP/1.1 the stream's and, unless acknowledgements close theirs, one
/// kept for acknowledgements), no TLS roots (the server is plain HTTP on
/// loopback).
fn agent_client(transport: EdgeTransport) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .tls_built_in_root_certs(false)
        .no_proxy();
    match transport {
        EdgeTransport::Http2 => builder.http2_prior_knowledge(),
        EdgeTransport::Http1 => builder.http1_only(),
        EdgeTransport::Http1CloseAcks => builder.http1_only().pool_max_idle_per_host(0),
    }
    .build()
}

/// The end of the first complete SSE frame in `buffer` (the index of its blank line).
fn frame_end(buffer: &[u8]) -> Option<usize> {
    buffer.windows(2).position(|w| w == b"\n\n")
}

/// The data of a `config` frame; `None` for other frames and comments.
fn config_data(frame: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(frame).ok()?;
    let mut event = None;
    let mut data = None;
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            event = Some(value.trim());
        } else if let Some(value) = line.strip_prefix("data:") {
            data = Some(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    (event? == "config").then_some(data?)
}

/// Writes `files` below `dir`: each to a temporary file beside it, renamed over it.
fn write_files(dir: &Path, files: &[RenderedFile]) -> std::io::Result<()> {
    for file in files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut temp = path.clone().into_os_string();
        temp.push(".tmp");
        std::fs::write(&temp, &file.content)?;
        std::fs::rename(&temp, &path)?;
    }
    Ok(())
}

/// Posts an acknowledgement or heartbeat and reads the whole answer.
async fn post_ack(
    client: &reqwest::Client,
    token: &Option<Arc<str>>,
    url: &str,
    body: &Value,
) -> Result<(), String> {
    let response = authed(client.post(url), token)
        .timeout(ACK_TIMEOUT)
        .json(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(describe_failure(response).await);
    }
    response.bytes().await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Applies one `config` frame and acknowledges it: the revision and when
/// the acknowledgement was answered.
async fn apply_and_ack(
    agents: &Agents,
    client: &reqwest::Client,
    dir: &Path,
    ack_url: &str,
    data: &str,
) -> Result<(i64, Instant), String> {
    let document: ConfigDocument =
        serde_json::from_str(data).map_err(|e| format!("a config frame does not decode: {e}"))?;
    let files = render_file_set(&document.config, document.revision, &agents.options);
    write_files(dir, &files).map_err(|e| format!("writing its files: {e}"))?;
    let ack = json!({ "applied_revision": document.revision });
    post_ack(client, &agents.token, ack_url, &ack).await?;
    Ok((document.revision, Instant::now()))
}

/// One simulated agent: connects (from `applied`, as the real agent
/// resumes), then applies and acknowledges every `config` frame and sends a
/// heartbeat after [`HEARTBEAT`] without an acknowledgement (the first
/// after `phase` unless an acknowledgement came first), as the real agent
/// does. Releases its `gate` permit at its first frame.
async fn agent(
    agents: Arc<Agents>,
    index: usize,
    mut applied: Option<i64>,
    gate: Option<Arc<Semaphore>>,
    phase: Duration,
) {
    let mut permit = match gate {
        Some(gate) => gate.acquire_owned().await.ok(),
        None => None,
    };
    let name = agents.names[index].clone();
    let client = match agent_client(agents.transport) {
        Ok(client) => client,
        Err(e) => return agents.connections.fail(format!("{name}: {e}")),
    };
    let mut url = format!("{}/api/v1/nodes/{name}/config/stream", agents.base);
    if let Some(revision) = applied {
        url.push_str(&format!("?applied={revision}"));
    }
    let request =
        authed(client.get(url), &agents.token).header(reqwest::header::ACCEPT, "text/event-stream");
    let response = match request.send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            let why = describe_failure(r).await;
            return agents.connections.fail(format!("{name}: {why}"));
        }
        Err(e) => return agents.connections.fail(format!("{name}: {e}")),
    };
    let dir = agents.root.join(&*name);
    let ack_url = format!("{}/api/v1/nodes/{name}/ack", agents.base);
    let mut stream = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::with_capacity(4096);
    let mut first = true;
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + phase, HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            chunk = stream.next() => {
                let Some(Ok(chunk)) = chunk else { break };
                let frame_at = Instant::now();
                buffer.extend_from_slice(&chunk);
                while let Some(end) = frame_end(&buffer) {
                    let frame: Vec<u8> = buffer.drain(..end + 2).collect();
                    let Some(data) = config_data(&frame[..end]) else {
                        continue;
                    };
                    if std::mem::take(&mut first) {
                        agents.board.set_connected(index, true);
                        agents.connections.connected.fetch_add(1, Ordering::Relaxed);
                        agents.connections.changed.notify_one();
                        permit.take();
                    }
                    match apply_and_ack(&agents, &client, &dir, &ack_url, data).await {
                        Ok((revision, acked_at)) => {
                            applied = Some(revision);
                            heartbeat.reset();
                            agents.board.acknowledged(index, revision, Hit { frame_at, acked_at });
                        }
                        Err(why) => agents.board.fail(format!("{name}: {why}")),
                    }
                }
            }
            _ = heartbeat.tick() => {
                let body = match applied {
                    Some(revision) => json!({ "applied_revision": revision }),
                    None => json!({}),
                };
                match post_ack(&client, &agents.token, &ack_url, &body).await {
                    Ok(()) => {
                        agents.board.heartbeats.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(why) => agents.board.fail(format!("{name}: heartbeat: {why}")),
                }
            }
        }
    }
    agents.board.set_connected(index, false);
    if first {
        agents
            .connections
            .fail(format!("{name}: the stream ended before its first frame"));
    }
}

/// Where the agents' directories go: a temporary directory on tmpfs
/// (`/dev/shm`) when there is one. Creating and renaming 3,000 files per
/// change on one ext4 file system spent half of this process's CPU in ext4's
/// inode allocator (`find_get_block_common`, `recently_deleted` in `perf`),
/// work a thousand agents on their own machines do not share with the server.
fn agents_root() -> std::io::Result<tempfile::TempDir> {
    let builder = tempfile::Builder::new()
        .prefix("fleetreg-bench-edge-")
        .clone();
    let shm = Path::new(SHARED_MEMORY);
    if shm.is_dir() {
        if let Ok(dir) = builder.tempdir_in(shm) {
            return Ok(dir);
        }
    }
    builder.tempdir()
}

/// What the scenario registers.
struct Fleet {
    service: String,
    domains: Vec<String>,
    /// Every agent's node: the VPSs first, then the laptops.
    nodes: Vec<Arc<str>>,
}

impl Fleet {
    fn new(run: &str, agents: usize) -> Fleet {
        let vps = (1..=VPS_NODES).map(|i| format!("edge-{run}-vps{i}"));
        let laptops = (0..agents - VPS_NODES).map(|i| format!("edge-{run}-l{i:05}"));
        Fleet {
            service: format!("edge-{run}"),
            domains: ["a", "b"]
                .iter()
                .map(|d| format!("edge-{run}-{d}.test"))
                .collect(),
            nodes: vps.chain(laptops).map(Arc::from).collect(),
        }
    }

    fn vps(&self) -> &[Arc<str>] {
        &self.nodes[..VPS_NODES]
    }
}

/// Sends `request` (authenticated) and expects a 2xx answer; its JSON body.
async fn send_ok(
    ctx: &Context,
    request: reqwest::RequestBuilder,
    what: String,
) -> Result<Value, BenchError> {
    let response = authed(request, &ctx.token).send().await?;
    if !response.status().is_success() {
        return Err(BenchError::Server {
            what,
            detail: describe_failure(response).await,
        });
    }
    let body = response.bytes().await?;
    Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A second octet R no stored node uses in 10.R.*, 127.1.R.* or 127.2.R.*,
/// so this run's addresses are unique on a server that already holds nodes.
async fn free_block(ctx: &Context) -> Result<u8, BenchError> {
    let nodes = send_ok(
        ctx,
        ctx.control.get(format!("{}/api/v1/nodes", ctx.base)),
        "GET /api/v1/nodes".into(),
    )
    .await?;
    let used: Vec<String> = nodes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|n| [&n["overlay_address"], &n["public_address"]])
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    (1..=254u8)
        .find(|r| {
            let prefixes = [
                format!("10.{r}."),
                format!("127.1.{r}."),
                format!("127.2.{r}."),
            ];
            !used
                .iter()
                .any(|a| prefixes.iter().any(|p| a.starts_with(p.as_str())))
        })
        .ok_or_else(|| BenchError::Usage("no free 10.R.0.0/16 block for the laptops".into()))
}

/// Registers the domains, the VPS nodes, the laptops (over
/// [`SETUP_CONCURRENCY`] connections), the service and its routing.
async fn register(ctx: &Context, fleet: &Fleet) -> Result<(), BenchError> {
    let block = free_block(ctx).await?;
    let base = &ctx.base;
    for domain in &fleet.domains {
        let body = json!({ "name": domain, "description": "fleetreg bench edge-push" });
        let request = ctx
            .control
            .post(format!("{base}/api/v1/domains"))
            .json(&body);
        send_ok(ctx, request, "POST /api/v1/domains".into()).await?;
    }
    for (i, name) in fleet.vps().iter().enumerate() {
        let body = json!({
            "name": &**name,
            "kind": "vps",
            "overlay_address": format!("127.1.{block}.{}", i + 1),
            "public_address": format!("127.2.{block}.{}", i + 1),
            "region": "eu",
        });
        let request = ctx.control.post(format!("{base}/api/v1/nodes")).json(&body);
        send_ok(ctx, request, "POST /api/v1/nodes (vps)".into()).await?;
    }
    let laptops = fleet.nodes.len() - VPS_NODES;
    let names = Arc::new(fleet.nodes.clone());
    let (base, token) = (ctx.base.clone(), ctx.token.clone());
    let outcome = load::run(
        Limits {
            concurrency: SETUP_CONCURRENCY,
            duration: Duration::from_secs(3600),
            max_requests: laptops as u64,
        },
        move |client, sequence, _| {
            let host = sequence + 1;
            let body = json!({
                "name": &*names[VPS_NODES + sequence as usize],
                "kind": "laptop",
                "overlay_address": format!("10.{block}.{}.{}", host / 256, host % 256),
            });
            let request = authed(client.post(format!("{base}/api/v1/nodes")), &token).json(&body);
            async move {
                let response = request.send().await.map_err(|e| e.to_string())?;
                if response.status() != reqwest::StatusCode::CREATED {
                    return Err(describe_failure(response).await);
                }
                response.bytes().await.map_err(|e| e.to_string())?;
                Ok(())
            }
        },
    )
    .await?;
    if outcome.failed > 0 {
        return Err(BenchError::Server {
            what: "POST /api/v1/nodes (laptops)".into(),
            detail: format!(
                "{} of {laptops} failed: {:?}",
                outcome.failed, outcome.failures
            ),
        });
    }
    let base = &ctx.base;
    let body = json!({
        "name": fleet.service,
        "subdomain": "app",
        "upstreams": UPSTREAMS,
        "description": "fleetreg bench edge-push",
    });
    let request = ctx
        .control
        .post(format!("{base}/api/v1/services"))
        .json(&body);
    send_ok(ctx, request, "POST /api/v1/services".into()).await?;
    let request = ctx
        .control
        .put(format!("{base}/api/v1/routing/{}", fleet.service))
        .json(&routing_body(fleet, "round-robin"));
    send_ok(ctx, request, "PUT /api/v1/routing".into()).await?;
    Ok(())
}

fn routing_body(fleet: &Fleet, strategy: &str) -> Value {
    let vps: Vec<&str> = fleet.vps().iter().map(|n| &**n).collect();
    json!({ "domains": fleet.domains, "nodes": vps, "strategy": strategy })
}

/// Removes what [`register`] created (what is missing is skipped); a note.
async fn remove(ctx: &Context, fleet: &Fleet) -> String {
    let started = Instant::now();
    let base = ctx.base.clone();
    let mut problems = Vec::new();
    let delete = |url: String| {
        let request = authed(ctx.control.delete(url.clone()), &ctx.token);
        async move {
            match request.send().await {
                Ok(r)
                    if r.status().is_success() || r.status() == reqwest::StatusCode::NOT_FOUND =>
                {
                    None
                }
                Ok(r) => Some(format!("DELETE {url}: {}", describe_failure(r).await)),
                Err(e) => Some(format!("DELETE {url}: {e}")),
            }
        }
    };
    problems.extend(delete(format!("{base}/api/v1/routing/{}", fleet.service)).await);
    problems.extend(delete(format!("{base}/api/v1/services/{}", fleet.service)).await);
    let names = Arc::new(fleet.nodes.clone());
    let token = ctx.token.clone();
    let nodes_base = base.clone();
    let outcome = load::run(
        Limits {
            concurrency: SETUP_CONCURRENCY,
            duration: Duration::from_secs(3600),
            max_requests: names.len() as u64,
        },
        move |client, sequence, _| {
            let url = format!("{nodes_base}/api/v1/nodes/{}", names[sequence as usize]);
            let request = authed(client.delete(url), &token);
            async move {
                let response = request.send().await.map_err(|e| e.to_string())?;
                let status = response.status();
                if !status.is_success() && status != reqwest::StatusCode::NOT_FOUND {
                    return Err(describe_failure(response).await);
                }
                Ok(())
            }
        },
    )
    .await;
    match outcome {
        Ok(outcome) if outcome.failed > 0 => problems.push(format!(
            "{} node deletions failed: {:?}",
            outcome.failed, outcome.failures
        )),
        Ok(_) => {}
        Err(e) => problems.push(format!("node deletions: {e}")),
    }
    for domain in &fleet.domains {
        problems.extend(delete(format!("{base}/api/v1/domains/{domain}")).await);
    }
    if problems.is_empty() {
        format!(
            "removed the service, its routing, {} nodes and 2 domains in {:.1} s",
            fleet.nodes.len(),
            started.elapsed().as_secs_f64()
        )
    } else {
        format!("cleanup incomplete: {}", problems.join("; "))
    }
}

#[derive(Deserialize)]
struct SyncHealth {
    items: Vec<NodeSyncItem>,
}

#[derive(Deserialize, PartialEq)]
struct NodeSyncItem {
    node: String,
    desired_revision: i64,
    applied_revision: Option<i64>,
}

/// Waits until every node of `fleet` runs its desired revision by
/// `GET /api/v1/sync/health`, twice in a row 0.5 s apart with the same
/// revisions (connecting agents may re-route, e.g. a VPS coming up); how
/// long that took, or how many were still out of sync.
async fn settle(ctx: &Context, fleet: &Fleet) -> Result<Duration, String> {
    let started = Instant::now();
    let ours: HashSet<&str> = fleet.nodes.iter().map(|n| &**n).collect();
    let mut previous: Option<Vec<i64>> = None;
    loop {
        let health = send_ok(
            ctx,
            ctx.control.get(format!("{}/api/v1/sync/health", ctx.base)),
            "GET /api/v1/sync/health".into(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let health: SyncHealth = serde_json::from_value(health).map_err(|e| e.to_string())?;
        let mine: Vec<&NodeSyncItem> = health
            .items
            .iter()
            .filter(|i| ours.contains(i.node.as_str()))
            .collect();
        let behind = fleet.nodes.len()
            - mine
                .iter()
                .filter(|i| i.applied_revision == Some(i.desired_revision))
                .count();
        let revisions: Vec<i64> = mine.iter().map(|i| i.desired_revision).collect();
        if behind == 0 && previous.as_ref() == Some(&revisions) {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= SETTLE_TIME_LIMIT {
            return Err(format!(
                "{behind} of {} nodes still not in sync after {} s",
                fleet.nodes.len(),
                SETTLE_TIME_LIMIT.as_secs()
            ));
        }
        previous = (behind == 0).then_some(revisions);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One timed change or re-send: when the request was answered, and every
/// armed agent's hit.
struct Wave {
    answered_at: Instant,
    request: Duration,
    hits: Vec<(usize, Option<Hit>)>,
}

impl Wave {
    /// Each acknowledgement and frame after the answer (acknowledgements
    /// answered before it count as 0), and how many came before it.
    fn latencies(&self) -> (Vec<Duration>, Vec<Duration>, usize) {
        let mut acks = Vec::with_capacity(self.hits.len());
        let mut frames = Vec::with_capacity(self.hits.len());
        let mut early = 0;
        for hit in self.hits.iter().filter_map(|(_, h)| *h) {
            if hit.acked_at < self.answered_at {
                early += 1;
            }
            acks.push(hit.acked_at.saturating_duration_since(self.answered_at));
            frames.push(hit.frame_at.saturating_duration_since(self.answered_at));
        }
        (acks, frames, early)
    }

    fn missing(&self) -> usize {
        self.hits.iter().filter(|(_, h)| h.is_none()).count()
    }
}

/// Arms the connected agents (but `skip`) for a new revision, changes the
/// routing's strategy and waits for their acknowledgements.
async fn change(
    ctx: &Context,
    fleet: &Fleet,
    board: &Board,
    strategy: &str,
    skip: Option<usize>,
) -> Result<Wave, BenchError> {
    board.arm(|index, slot| {
        (slot.connected && Some(index) != skip).then(|| Arm::NewerThan(slot.applied.unwrap_or(-1)))
    });
    let request = authed(
        ctx.control
            .put(format!("{}/api/v1/routing/{}", ctx.base, fleet.service)),
        &ctx.token,
    )
    .json(&routing_body(fleet, strategy));
    let sent = Instant::now();
    let response = request.send().await;
    let answered_at = Instant::now();
    let failure = match response {
        Ok(r) if r.status().is_success() => {
            r.bytes().await?;
            None
        }
        Ok(r) => Some(describe_failure(r).await),
        Err(e) => Some(e.to_string()),
    };
    if let Some(detail) = failure {
        board.wait(Duration::ZERO).await;
        return Err(BenchError::Server {
            what: format!("PUT /api/v1/routing/{}", fleet.service),
            detail,
        });
    }
    Ok(Wave {
        answered_at,
        request: answered_at - sent,
        hits: board.wait(DELIVERY_TIME_LIMIT).await,
    })
}

fn latencies_of(samples: &[Duration]) -> Latencies {
    let mut latencies = Latencies::with_capacity(samples.len());
    samples.iter().for_each(|d| latencies.record(*d));
    latencies
}

/// "p50 A / p99 B / max C ms" of `samples`.
fn spread(samples: &[Duration]) -> String {
    let mut latencies = latencies_of(samples);
    let show = |d: Option<Duration>| d.map_or_else(|| "-".to_owned(), |d| format!("{:.1}", ms(d)));
    format!(
        "p50 {} / p99 {} / max {} ms",
        show(latencies.percentile(50.0)),
        show(latencies.percentile(99.0)),
        show(latencies.max())
    )
}

/// CPU times around a phase: the server's, this process's, the machine's.
struct CpuMark {
    server: Option<Duration>,
    own: Option<Duration>,
    machine: Option<procfs::MachineCpu>,
}

impl CpuMark {
    fn now(server_pid: Option<u32>) -> CpuMark {
        CpuMark {
            server: server_pid.and_then(procfs::process_cpu),
            own: procfs::process_cpu(std::process::id()),
            machine: procfs::machine_cpu(),
        }
    }

    /// "server X s, this process Y s, machine Z % busy" since `self`.
    fn since(&self, server_pid: Option<u32>) -> (Option<Duration>, String) {
        let later = CpuMark::now(server_pid);
        let server = self
            .server
            .zip(later.server)
            .map(|(a, b)| b.saturating_sub(a));
        let own = self.own.zip(later.own).map(|(a, b)| b.saturating_sub(a));
        let busy = self.machine.zip(later.machine).and_then(|(a, b)| {
            let total = b.total.saturating_sub(a.total).as_secs_f64();
            (total > 0.0).then(|| 100.0 * b.busy.saturating_sub(a.busy).as_secs_f64() / total)
        });
        let secs = |d: Option<Duration>| {
            d.map_or_else(|| "?".to_owned(), |d| format!("{:.2}", d.as_secs_f64()))
        };
        let text = format!(
            "server CPU {} s, this process {} s, machine {} % busy",
            secs(server),
            secs(own),
            busy.map_or_else(|| "?".to_owned(), |b| format!("{b:.0}"))
        );
        (server, text)
    }
}

/// Runs the edge-push scenario.
pub(crate) async fn run(ctx: &mut Context) -> Result<Vec<Row>, BenchError> {
    let agents = ctx.args.edge_agents as usize;
    // Each agent holds its stream and one connection for acknowledgements.
    if let Some(limit) = procfs::open_files_limit().filter(|l| *l < 2 * agents as u64 + SPARE_FILES)
    {
        let mut row = Row::new("edge-push", format!("{agents} agents"));
        row.notes.push(format!(
            "skipped: open-files limit {limit} is below 2 x {agents} + {SPARE_FILES}; raise it with `ulimit -n`"
        ));
        return Ok(vec![row]);
    }
    let fleet = Fleet::new(&ctx.run, agents);
    eprintln!(
        "edge-push: registering 2 domains, {VPS_NODES} VPS nodes, {} laptops, a service and its routing ...",
        agents - VPS_NODES
    );
    let started = Instant::now();
    let registered = register(ctx, &fleet).await;
    let setup = started.elapsed();
    let measured = match registered {
        Ok(()) => measure(ctx, &fleet, setup).await,
        Err(e) => Err(e),
    };
    eprintln!("edge-push: removing what it registered ...");
    let cleanup = remove(ctx, &fleet).await;
    let mut rows = measured?;
    if let Some(last) = rows.last_mut() {
        last.notes.push(cleanup);
    }
    Ok(rows)
}

async fn measure(ctx: &Context, fleet: &Fleet, setup: Duration) -> Result<Vec<Row>, BenchError> {
    let n = fleet.nodes.len();
    let pid = ctx.server_pid;
    let root = agents_root()
        .map_err(|e| BenchError::Usage(format!("cannot create a temporary directory: {e}")))?;
    let shared = Arc::new(Agents {
        base: ctx.base.clone(),
        token: ctx.token.clone(),
        names: fleet.nodes.clone(),
        root: root.path().to_owned(),
        options: RenderOptions::default(),
        transport: ctx.args.edge_transport,
        board: Board::new(n),
        connections: Connections::default(),
    });
    let board = &shared.board;
    let mut rng = Rng::new(0xED6E_0000 + n as u64);
    let mut phase = move || HEARTBEAT.mul_f64((rng.next_u64() % 1000) as f64 / 1000.0);

    // Connect.
    let before = pid.and_then(procfs::memory);
    eprintln!("edge-push: {n} agents connecting to their config streams ...");
    let gate = Arc::new(Semaphore::new(CONNECT_PARALLELISM));
    let mut tasks = JoinSet::new();
    let connect_started = Instant::now();
    let mut handles: Vec<AbortHandle> = (0..n)
        .map(|index| {
            tasks.spawn(agent(
                shared.clone(),
                index,
                None,
                Some(gate.clone()),
                phase(),
            ))
        })
        .collect();
    shared
        .connections
        .wait_for(n, connect_started + CONNECT_TIME_LIMIT)
        .await;
    let connect_time = connect_started.elapsed();
    let connected = shared.connections.connected.load(Ordering::Relaxed);
    eprintln!(
        "  {connected} connected in {:.1} s ({} failed); waiting until every node is in sync ...",
        connect_time.as_secs_f64(),
        n - connected
    );
    let mut idle = Row::new(
        "edge-idle",
        format!(
            "{connected} agents connected and idle (heartbeat every {} s{}), {} s CPU window",
            HEARTBEAT.as_secs(),
            match shared.transport {
                EdgeTransport::Http2 => ", one HTTP/2 connection each",
                EdgeTransport::Http1 => ", HTTP/1.1, ack connection kept",
                EdgeTransport::Http1CloseAcks => ", HTTP/1.1, acks close their connection",
            },
            ctx.args.edge_idle_secs
        ),
    );
    idle.failed = (n - connected) as u64;
    if let Some(why) = shared.connections.take_failure() {
        idle.notes.push(format!("agent connection failure: {why}"));
    }
    idle.notes.push(format!(
        "agents write their files (write + rename, no fsync) below {}",
        root.path().display()
    ));
    idle.notes.push(format!(
        "setup: {n} nodes, 2 domains, service and routing registered in {:.1} s; {connected} streams open in {:.1} s ({CONNECT_PARALLELISM} connecting at once)",
        setup.as_secs_f64(),
        connect_time.as_secs_f64()
    ));
    match settle(ctx, fleet).await {
        Ok(took) => idle.notes.push(format!(
            "every node in sync (sync/health) {:.1} s after the last stream opened",
            took.as_secs_f64()
        )),
        Err(why) => {
            idle.failed += 1;
            idle.notes.push(format!("not settled: {why}"));
        }
    }

    // Idle: memory, descriptors, CPU.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = pid.and_then(procfs::memory);
    let files = pid.and_then(procfs::open_files);
    let window = Duration::from_secs(ctx.args.edge_idle_secs);
    eprintln!("edge-push: idle window of {} s ...", window.as_secs());
    let heartbeats = board.heartbeats.load(Ordering::Relaxed);
    let mark = CpuMark::now(pid);
    tokio::time::sleep(window).await;
    let (server_cpu, cpu_text) = mark.since(pid);
    let heartbeats = board.heartbeats.load(Ordering::Relaxed) - heartbeats;
    match (before, after) {
        (Some(before), Some(after)) if connected > 0 => {
            let kb = after.rss.saturating_sub(before.rss) as f64 / connected as f64 / 1e3;
            let cpu = server_cpu.map_or_else(String::new, |c| {
                format!(
                    "; server CPU {:.2} s in {} s = {:.1} % of one core",
                    c.as_secs_f64(),
                    window.as_secs(),
                    100.0 * c.as_secs_f64() / window.as_secs_f64()
                )
            });
            idle.value = Some(format!(
                "{kb:.1} KB/agent (RSS {:.1} -> {:.1} MB){cpu}",
                mb(before.rss),
                mb(after.rss)
            ));
            idle.target = Some(format!("<= {TARGET_KB_PER_AGENT:.0} KB/agent"));
            idle.met = Some(kb <= TARGET_KB_PER_AGENT && idle.failed == 0);
        }
        _ => idle
            .notes
            .push("server memory unknown (no --server-pid)".into()),
    }
    idle.notes.push(format!(
        "idle window: {cpu_text}; {heartbeats} heartbeats answered"
    ));
    if let Some(files) = files {
        idle.notes.push(format!(
            "server holds {files} open descriptors with the agents connected"
        ));
    }

    // Timed routing changes.
    let changes = ctx.args.edge_changes as usize;
    eprintln!("edge-push: {changes} routing changes, one at a time ...");
    let mut push = Row::new(
        "edge-push",
        format!(
            "{connected} agents ({VPS_NODES} VPS, {} laptops), {changes} routing PUTs {} s apart; PUT answer -> each agent's ack answered",
            n - VPS_NODES,
            CHANGE_GAP.as_secs()
        ),
    );
    let mut acks = Vec::new();
    let mut frames = Vec::new();
    let mut lasts = Vec::new();
    let mut last_frames = Vec::new();
    let mut puts = Vec::new();
    let mut early = 0;
    let failures_before = board.failures.load(Ordering::Relaxed);
    let mark = CpuMark::now(pid);
    let started = Instant::now();
    let mut made = 0usize;
    for _ in 0..changes {
        let wave = change(ctx, fleet, board, STRATEGIES[made % 2], None).await?;
        made += 1;
        let (wave_acks, wave_frames, wave_early) = wave.latencies();
        push.requests += wave.hits.len() as u64;
        push.failed += wave.missing() as u64;
        if wave.missing() > 0 {
            push.notes.push(format!(
                "change {made}: {} of {} agents did not acknowledge within {} s",
                wave.missing(),
                wave.hits.len(),
                DELIVERY_TIME_LIMIT.as_secs()
            ));
        }
        lasts.extend(wave_acks.iter().max().copied());
        last_frames.extend(wave_frames.iter().max().copied());
        acks.extend(wave_acks);
        frames.extend(wave_frames);
        early += wave_early;
        puts.push(wave.request);
        tokio::time::sleep(CHANGE_GAP).await;
    }
    let elapsed = started.elapsed();
    let (_, cpu_text) = mark.since(pid);
    push.elapsed_secs = elapsed.as_secs_f64();
    push.set_latencies(&mut latencies_of(&acks));
    let mut last = latencies_of(&lasts);
    let (last_p50, last_max) = (last.percentile(50.0), last.max());
    push.value = Some(format!(
        "last agent per change: p50 {:.1} ms, max {:.1} ms",
        last_p50.map_or(0.0, ms),
        last_max.map_or(0.0, ms)
    ));
    push.target = Some(format!(
        "p99 <= {TARGET_P99_MS:.0} ms, last <= {TARGET_LAST_MS:.0} ms"
    ));
    push.notes.push(format!(
        "config frame received (PUT answer -> frame): {}; last agent's frame per change: {}",
        spread(&frames),
        spread(&last_frames)
    ));
    push.notes
        .push(format!("PUT answered in {}", spread(&puts)));
    if early > 0 {
        push.notes.push(format!(
            "{early} acknowledgements were answered before the PUT's own answer (counted as 0 ms)"
        ));
    }
    push.notes.push(format!(
        "during the changes ({:.1} s, gaps included): {cpu_text}",
        elapsed.as_secs_f64()
    ));
    push.details = Some(json!({
        "last_agent_ms": lasts.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        "put_ms": puts.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
    }));

    // An agent dropped during a change, then restarted.
    let laptops = n - VPS_NODES;
    let restarts = RESTARTS.min(laptops);
    eprintln!("edge-push: {restarts} agents dropped during a change and restarted ...");
    let mut restart = Row::new(
        "edge-restart",
        "an agent's stream dropped, a routing change acknowledged by the others, the agent reconnects (?applied=old): reconnect -> its ack answered".to_owned(),
    );
    let mut converge = Vec::new();
    let started = Instant::now();
    for r in 0..restarts {
        let index = VPS_NODES + r * laptops / restarts;
        let old = board.slot(index).applied;
        handles[index].abort();
        board.set_connected(index, false);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let wave = change(ctx, fleet, board, STRATEGIES[made % 2], Some(index)).await?;
        made += 1;
        if wave.missing() > 0 {
            restart.failed += wave.missing() as u64;
            restart.notes.push(format!(
                "{} other agents did not acknowledge the change",
                wave.missing()
            ));
        }
        board.arm(|i, _| (i == index).then_some(Arm::NewerThan(old.unwrap_or(-1))));
        let reconnect = Instant::now();
        handles[index] = tasks.spawn(agent(shared.clone(), index, old, None, phase()));
        restart.requests += 1;
        match board
            .wait(DELIVERY_TIME_LIMIT)
            .await
            .first()
            .and_then(|(_, h)| *h)
        {
            Some(hit) => {
                let took = hit.acked_at.saturating_duration_since(reconnect);
                converge.push(took);
                restart.notes.push(format!(
                    "{}: config frame {:.1} ms, acknowledged {:.1} ms after reconnecting",
                    fleet.nodes[index],
                    ms(hit.frame_at.saturating_duration_since(reconnect)),
                    ms(took)
                ));
            }
            None => {
                restart.failed += 1;
                restart.notes.push(format!(
                    "{}: not converged within {} s of reconnecting",
                    fleet.nodes[index],
                    DELIVERY_TIME_LIMIT.as_secs()
                ));
            }
        }
        tokio::time::sleep(CHANGE_GAP).await;
    }
    restart.elapsed_secs = started.elapsed().as_secs_f64();
    restart.set_latencies(&mut latencies_of(&converge));

    // Full reconciliation.
    eprintln!("edge-push: full reconciliation ...");
    let mut reconcile = Row::new(
        "edge-reconcile",
        "POST /api/v1/sync/reconcile; its answer -> each agent's ack of the re-sent configuration answered".to_owned(),
    );
    let armed_at = Instant::now();
    let armed = board.arm(|_, slot| slot.connected.then_some(Arm::FrameAfter(armed_at)));
    let mark = CpuMark::now(pid);
    let sent = Instant::now();
    let answer = authed(
        ctx.control
            .post(format!("{}/api/v1/sync/reconcile", ctx.base)),
        &ctx.token,
    )
    .json(&json!({}))
    .send()
    .await;
    let answered_at = Instant::now();
    let pushed = match answer {
        Ok(r) if r.status().is_success() => {
            let body: Value = r.json().await.unwrap_or(Value::Null);
            Ok(body["pushed"].as_array().map_or(0, Vec::len))
        }
        Ok(r) => Err(describe_failure(r).await),
        Err(e) => Err(e.to_string()),
    };
    match pushed {
        Ok(pushed) => {
            let wave = Wave {
                answered_at,
                request: answered_at - sent,
                hits: board.wait(DELIVERY_TIME_LIMIT).await,
            };
            let (wave_acks, wave_frames, _) = wave.latencies();
            let (_, cpu_text) = mark.since(pid);
            reconcile.notes.push(format!(
                "re-sent config frame received (answer -> frame): {}",
                spread(&wave_frames)
            ));
            reconcile.requests = armed as u64;
            reconcile.failed = wave.missing() as u64;
            reconcile.elapsed_secs = answered_at.elapsed().as_secs_f64();
            reconcile.set_latencies(&mut latencies_of(&wave_acks));
            let last = wave_acks.iter().max().copied().map_or_else(
                || "no agent acknowledged".to_owned(),
                |last| format!("last agent {:.1} ms after the answer", ms(last)),
            );
            reconcile.value = Some(format!(
                "{last}; reconcile answered in {:.1} ms, {pushed} nodes pushed",
                ms(wave.request)
            ));
            reconcile.notes.push(cpu_text);
        }
        Err(why) => {
            board.wait(Duration::ZERO).await;
            reconcile.failed = 1;
            reconcile
                .notes
                .push(format!("POST /api/v1/sync/reconcile failed: {why}"));
        }
    }

    let agent_failures = board.failures.load(Ordering::Relaxed) - failures_before;
    push.failed += agent_failures;
    if let Some(why) = board
        .first_failure
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        push.notes.push(format!(
            "{} agent failures (acknowledgements, heartbeats, files) in all; the first: {why}",
            board.failures.load(Ordering::Relaxed)
        ));
    }
    push.met = Some(
        push.p99_ms.is_some_and(|p| p <= TARGET_P99_MS)
            && last_max.is_some_and(|m| ms(m) <= TARGET_LAST_MS)
            && push.failed == 0,
    );
    if let Some(memory) = pid.and_then(procfs::memory) {
        push.notes.push(format!(
            "server RSS after the changes {:.1} MB (peak {:.1} MB)",
            mb(memory.rss),
            mb(memory.hwm)
        ));
    }

    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    drop(shared);
    drop(root);
    Ok(vec![idle, push, restart, reconcile])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_config_frames_only() {
        let frame = b"id: 7\nevent: config\ndata: {\"revision\":7}";
        assert_eq!(config_data(frame), Some("{\"revision\":7}"));
        assert_eq!(config_data(b": keepalive"), None);
        assert_eq!(config_data(b"id: 3\nevent: other\ndata: {}"), None);
        assert_eq!(frame_end(b"id: 1\n\nid: 2"), Some(5));
    }

    #[tokio::test]
    async fn a_wave_counts_each_armed_agent_once() {
        let board = Board::new(3);
        board.set_connected(0, true);
        board.set_connected(1, true);
        board.slot(0).applied = Some(5);
        board.slot(1).applied = Some(5);
        let armed = board.arm(|_, slot| {
            slot.connected
                .then(|| Arm::NewerThan(slot.applied.unwrap_or(-1)))
        });
        assert_eq!(armed, 2);
        let now = Instant::now();
        let hit = Hit {
            frame_at: now,
            acked_at: now,
        };
        board.acknowledged(0, 5, hit); // a heartbeat-like repeat: not counted
        assert_eq!(board.pending.load(Ordering::SeqCst), 2);
        board.acknowledged(0, 6, hit);
        board.acknowledged(0, 7, hit); // counted once
        board.acknowledged(2, 6, hit); // not armed
        assert_eq!(board.pending.load(Ordering::SeqCst), 1);
        board.acknowledged(1, 6, hit);
        let hits = board.wait(Duration::from_secs(1)).await;
        assert_eq!(hits.len(), 2);
        assert!(hits.iter().all(|(_, h)| h.is_some()));
        assert_eq!(board.slot(0).applied, Some(7));
        assert!(board.slot(0).armed.is_none());
    }

    #[test]
    fn fleets_name_two_vps_then_laptops() {
        let fleet = Fleet::new("abcd1234", 5);
        assert_eq!(fleet.nodes.len(), 5);
        assert_eq!(&*fleet.vps()[0], "edge-abcd1234-vps1");
        assert_eq!(&*fleet.nodes[2], "edge-abcd1234-l00000");
        assert!(fleet.nodes.iter().all(|n| n.len() <= 63));
        let body = routing_body(&fleet, "round-robin");
        assert_eq!(body["nodes"].as_array().map(Vec::len), Some(2));
    }
}
