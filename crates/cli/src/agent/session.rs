//! The agent's connection to the server: one long-lived configuration
//! stream, reconnected with exponential backoff and full jitter; a reporter
//! task that sends acknowledgements and heartbeats in order; and `--once`.
//! With fallback servers (replicas of one deployment) each reconnect tries
//! the next server in turn, and acknowledgements and heartbeats go to the
//! server the stream was last opened on.
//!
//! The stream and the acknowledgements share one HTTP/2 connection (prior
//! knowledge on `http://`, ALPN on `https://`), which costs the server about
//! half the memory of two HTTP/1.1 connections. A plain-HTTP server (or
//! proxy) that does not speak HTTP/2 is talked to over HTTP/1.1 instead,
//! decided again at each connect.

use super::node::{ConfigDocument, NodeAgent, Outcome};
use super::stream::{FrameReader, IDLE_LIMIT, MAX_FRAME_BYTES};
use super::{get_json, log, one_line, read_limited, OnceFailed};
use crate::client::{Client, ConnectArgs, ServerError, Transport, Unreachable};
use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The first reconnect's delay bound.
pub const RECONNECT_BASE: Duration = Duration::from_millis(250);
/// The largest reconnect delay.
pub const RECONNECT_CAP: Duration = Duration::from_secs(30);
/// The first delay bound before retrying a revision that failed to apply.
const RETRY_BASE: Duration = Duration::from_secs(2);
/// The largest delay before retrying a failed revision.
const RETRY_CAP: Duration = Duration::from_secs(300);
/// How long one acknowledgement or heartbeat may take.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer to an acknowledgement the agent reads.
const MAX_ACK_ANSWER: usize = 64 * 1024;

/// Exponential backoff with full jitter: the n-th delay is uniform in
/// `[0, min(cap, base · 2ⁿ)]`.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff from `base` up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The bound of the next delay (before jitter).
    pub fn ceiling(&self) -> Duration {
        self.base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap)
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A server the agent may stream from: its clients and its URL (for the log).
pub struct Server {
    /// HTTP/2 (the agent's token, this server's URL).
    http2: Client,
    /// HTTP/1.1, for a plain-HTTP server that does not speak HTTP/2.
    http1: Client,
    /// Whether the last connect found HTTP/1.1 only.
    http1_only: AtomicBool,
    /// The server's URL.
    pub url: String,
}

impl Server {
    /// The server `connect` names.
    pub fn new(connect: &ConnectArgs) -> anyhow::Result<Server> {
        let http2 = Client::from_args_over(connect, Transport::Http2)?;
        let url = http2
            .request_unbounded(Method::GET, "")
            .build()
            .map(|request| request.url().as_str().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        Ok(Server {
            http2,
            http1: Client::from_args_over(connect, Transport::Http1)?,
            http1_only: AtomicBool::new(false),
            url,
        })
    }

    /// The client of the protocol the last connect found.
    fn client(&self) -> &Client {
        if self.http1_only.load(Ordering::Relaxed) {
            &self.http1
        } else {
            &self.http2
        }
    }

    /// `call` over HTTP/2, and over HTTP/1.1 when that connected but got no
    /// answer (a server or proxy that does not speak HTTP/2 closes the
    /// connection or answers in HTTP/1.1); remembers which one answered.
    async fn first_answer<'a, T, F>(&'a self, call: impl Fn(&'a Client) -> F) -> anyhow::Result<T>
    where
        F: std::future::Future<Output = anyhow::Result<T>>,
    {
        let error = match call(&self.http2).await {
            Ok(value) => {
                self.set_http1_only(false);
                return Ok(value);
            }
            Err(error) if answered(&error) => {
                self.set_http1_only(false);
                return Err(error);
            }
            // HTTP/1.1 would not connect either.
            Err(error) if not_connected(&error) => return Err(error),
            Err(error) => error,
        };
        match call(&self.http1).await {
            Err(again) if !answered(&again) => Err(error),
            result => {
                self.set_http1_only(true);
                result
            }
        }
    }

    fn set_http1_only(&self, http1_only: bool) {
        if self.http1_only.swap(http1_only, Ordering::Relaxed) != http1_only && http1_only {
            log(format!(
                "{} does not speak HTTP/2; using HTTP/1.1 (one connection for the stream, one for acknowledgements)",
                self.url
            ));
        }
    }
}

/// Whether the server answered (an error envelope).
fn answered(error: &anyhow::Error) -> bool {
    error.downcast_ref::<ServerError>().is_some()
}

/// Whether no connection could be made at all.
fn not_connected(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<Unreachable>()
        .is_some_and(|unreachable| unreachable.connect)
}

fn ack_path(node: &str) -> String {
    format!("/api/v1/nodes/{node}/ack")
}

/// Posts one acknowledgement or heartbeat.
async fn post_ack(client: &Client, node: &str, body: &Value) -> anyhow::Result<()> {
    let request = client
        .request(Method::POST, &ack_path(node))
        .timeout(ACK_TIMEOUT)
        .json(body);
    let response = client.send_raw(request).await?;
    // The answer (the node's sync state) is not needed; read it bounded.
    let _ = read_limited(response, MAX_ACK_ANSWER).await;
    Ok(())
}

/// `--once`: fetches the configuration (from the first of `servers` that
/// gives it), applies it, acknowledges it (to that server); an error when it
/// could not be applied (after reporting that to the server).
pub async fn once(servers: &[Server], mut agent: NodeAgent) -> anyhow::Result<()> {
    let path = format!("/api/v1/nodes/{}/config", agent.node());
    let mut answer = None;
    for (index, server) in servers.iter().enumerate() {
        match server
            .first_answer(|client| get_json(client, &path, MAX_FRAME_BYTES))
            .await
        {
            Ok(got) => {
                answer = Some((got, server.client()));
                break;
            }
            Err(error) if index + 1 < servers.len() => {
                log(format!(
                    "{}; trying {}",
                    one_line(&error),
                    servers[index + 1].url
                ));
            }
            Err(error) => return Err(error),
        }
    }
    let Some((answer, client)) = answer else {
        anyhow::bail!("no server to fetch the configuration from");
    };
    let document: ConfigDocument = serde_json::from_value(answer)
        .map_err(|e| anyhow::anyhow!("{path} answered no configuration: {e}"))?;
    let outcome = agent.handle(document).await;
    if let Outcome::AlreadyApplied(revision) = outcome {
        log(format!("revision {revision} is already applied"));
    }
    let acked = post_ack(client, agent.node(), &outcome.ack()).await;
    if let Outcome::Failed { revision, error } = outcome {
        return Err(OnceFailed {
            revision,
            reason: error,
        }
        .into());
    }
    acked.map_err(|e| e.context("the revision was applied, but acknowledging it failed"))
}

/// Runs the connection loop and the reporter until the process stops:
/// `servers` is the primary server, then the fallbacks.
pub async fn run(
    servers: Vec<Server>,
    agent: NodeAgent,
    heartbeat: Duration,
) -> anyhow::Result<()> {
    anyhow::ensure!(!servers.is_empty(), "no server to connect to");
    let servers: Arc<[Server]> = servers.into();
    let (applied_tx, applied_rx) = watch::channel(agent.applied());
    let (current_tx, current_rx) = watch::channel(0);
    let (report_tx, report_rx) = mpsc::channel(16);
    let reporter = tokio::spawn(report(
        Arc::clone(&servers),
        current_rx,
        agent.node().to_owned(),
        applied_rx,
        report_rx,
        heartbeat,
    ));
    let result = connect_loop(&servers, agent, applied_tx, current_tx, report_tx).await;
    reporter.abort();
    result
}

/// Sends the acknowledgements it receives, in order, and a heartbeat with
/// the applied revision whenever `every` passed without either; each to the
/// server `current` indexes (the one the stream was last opened on).
async fn report(
    servers: Arc<[Server]>,
    current: watch::Receiver<usize>,
    node: String,
    applied: watch::Receiver<Option<i64>>,
    mut reports: mpsc::Receiver<Value>,
    every: Duration,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        let (body, acknowledgement) = tokio::select! {
            report = reports.recv() => match report {
                Some(body) => (body, true),
                None => return,
            },
            _ = ticks.tick() => {
                let body = match *applied.borrow() {
                    Some(revision) => json!({ "applied_revision": revision }),
                    None => json!({}),
                };
                (body, false)
            }
        };
        let server = &servers[(*current.borrow()).min(servers.len() - 1)];
        match post_ack(server.client(), &node, &body).await {
            Ok(()) => {
                ticks.reset();
                if std::mem::take(&mut failing) {
                    log("the server gets heartbeats again");
                }
            }
            // Every lost acknowledgement is logged; heartbeats only when
            // they start failing.
            Err(error) if acknowledgement || !failing => {
                failing = true;
                let what = if acknowledgement {
                    "acknowledgement"
                } else {
                    "heartbeat"
                };
                log(format!(
                    "{what} not delivered ({}); heartbeats carry on every {} s",
                    one_line(&error),
                    every.as_secs()
                ));
            }
            Err(_) => {}
        }
    }
}

/// Why a connection ended.
enum Ended {
    /// It could not be opened.
    NotConnected(String),
    /// It was open and ended.
    Closed(String),
}

/// Connects, reads frames, reconnects (to the next of `servers` each time);
/// returns only on a local error.
async fn connect_loop(
    servers: &[Server],
    mut agent: NodeAgent,
    applied: watch::Sender<Option<i64>>,
    current: watch::Sender<usize>,
    reports: mpsc::Sender<Value>,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::new(RECONNECT_BASE, RECONNECT_CAP);
    // A revision that failed to apply, retried until it applies or the
    // server sends another.
    let mut failed: Option<(ConfigDocument, Backoff, tokio::time::Instant)> = None;
    // Where the server is named in the log: only when there are several.
    let on = |index: usize| match servers {
        [_] => String::new(),
        _ => format!(" on {}", servers[index].url),
    };
    let mut index = 0;
    loop {
        let ended = match connect(&servers[index], &agent).await {
            Err(reason) => Ended::NotConnected(reason),
            Ok(response) => {
                backoff.reset();
                current.send_replace(index);
                log(format!(
                    "connected; streaming the configuration of node {} from {}{}",
                    agent.node(),
                    agent
                        .applied()
                        .map_or_else(|| "scratch".to_owned(), |r| format!("revision {r}")),
                    on(index)
                ));
                let mut frames =
                    FrameReader::new(response.bytes_stream(), MAX_FRAME_BYTES, IDLE_LIMIT);
                loop {
                    let retry_at = failed.as_ref().map(|(_, _, at)| *at);
                    let frame = tokio::select! {
                        frame = frames.next() => frame,
                        () = sleep_until(retry_at) => {
                            if let Some((document, retries, _)) = failed.take() {
                                log(format!("retrying revision {}", document.revision));
                                failed = handle(&mut agent, document, retries, &applied, &reports).await;
                            }
                            continue;
                        }
                    };
                    match frame {
                        Err(error) => break Ended::Closed(error.to_string()),
                        Ok(None) => break Ended::Closed("the server closed the stream".into()),
                        Ok(Some(frame)) if frame.event == "config" => {
                            let document: ConfigDocument = match serde_json::from_str(&frame.data) {
                                Ok(document) => document,
                                Err(error) => {
                                    break Ended::Closed(format!(
                                        "the server sent a configuration frame that does not decode ({error})"
                                    ))
                                }
                            };
                            let retries = Backoff::new(RETRY_BASE, RETRY_CAP);
                            failed =
                                handle(&mut agent, document, retries, &applied, &reports).await;
                        }
                        Ok(Some(_)) => {}
                    }
                }
            }
        };
        let delay = backoff.next_delay();
        let why = match ended {
            Ended::NotConnected(reason) => format!("cannot connect: {reason}"),
            Ended::Closed(reason) => reason,
        };
        index = (index + 1) % servers.len();
        log(format!(
            "reconnecting in {} ms{} because {why}",
            delay.as_millis(),
            on(index)
        ));
        tokio::time::sleep(delay).await;
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Opens the stream from the revision applied.
async fn connect(server: &Server, agent: &NodeAgent) -> Result<reqwest::Response, String> {
    let path = format!("/api/v1/nodes/{}/config/stream", agent.node());
    server
        .first_answer(|client| {
            let mut request = client.request_unbounded(Method::GET, &path);
            if let Some(revision) = agent.applied() {
                request = request.query(&[("applied", revision)]);
            }
            request = request.header(reqwest::header::ACCEPT, "text/event-stream");
            client.send_raw(request)
        })
        .await
        .map_err(|error| one_line(&error))
}

/// Handles one document and queues its acknowledgement; the document and
/// when to retry it when it failed.
async fn handle(
    agent: &mut NodeAgent,
    document: ConfigDocument,
    mut retries: Backoff,
    applied: &watch::Sender<Option<i64>>,
    reports: &mpsc::Sender<Value>,
) -> Option<(ConfigDocument, Backoff, tokio::time::Instant)> {
    let outcome = agent.handle(document.clone()).await;
    applied.send_replace(agent.applied());
    // The reporter is gone only when the agent stops.
    let _ = reports.send(outcome.ack()).await;
    match outcome {
        Outcome::Failed { revision, .. } => {
            let delay = retries.next_delay().max(Duration::from_millis(500));
            log(format!(
                "retrying revision {revision} in {} ms unless another arrives",
                delay.as_millis()
            ));
            Some((document, retries, tokio::time::Instant::now() + delay))
        }
        Outcome::Applied(_) | Outcome::AlreadyApplied(_) => None,
    }
}
