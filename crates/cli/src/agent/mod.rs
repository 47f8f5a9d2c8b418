//! `fleetreg agent`: the program on each edge node (issue 13 item 5). It
//! keeps one long-lived connection to
//! `GET /api/v1/nodes/{node}/config/stream?applied=N` (HTTP/2, which
//! also carries the acknowledgements; HTTP/1.1 where the server does not
//! speak it); for each `config`
//! frame whose revision differs from the one applied it renders the node's
//! files (`fleetreg_model::render_file_set`), writes them atomically into the output
//! directory, updates the hosts file's fleetreg block, reloads the proxy
//! (a command, or Caddy's admin API), and acknowledges the revision (or its
//! failure) with `POST /api/v1/nodes/{node}/ack`. A separate task sends a
//! heartbeat every `--heartbeat-seconds`. Disconnects are retried with
//! exponential backoff and full jitter, resuming from the revision applied;
//! with `--fallback-server` (other replicas of the deployment) each
//! reconnect tries the next server in turn.
//!
//! - [`stream`]: the server-sent events parser and reader (bounded frames).
//! - [`apply`]: atomic file writes, the state file, stale file removal, the
//!   hosts file.
//! - [`reload`]: the reload command and Caddy's `/load`.
//! - [`node`]: one configuration document from parse to acknowledgement.
//! - [`session`]: the connection loop, backoff and the heartbeat task.

pub mod apply;
pub mod node;
pub mod reload;
pub mod session;
pub mod stream;

use crate::client::{Client, ConnectArgs};
use clap::Args;
use fleetreg_model::{CaddyOptions, DnsLabel};
use futures::StreamExt;
use reqwest::Method;
use std::path::PathBuf;
use std::time::Duration;

const EXAMPLES: &str = "Examples:
  fleetreg agent --node contabo-vps --out-dir /etc/fleetreg --token-file /etc/fleetreg/agent.token \\
      --reload-cmd 'systemctl reload traefik'
  fleetreg agent --node contabo-vps --out-dir /var/lib/fleetreg --caddy-admin http://127.0.0.1:2019
  fleetreg agent --node vinay-laptop --out-dir ~/.fleetreg --hosts-file /etc/hosts
  fleetreg agent --node vinay-laptop --out-dir ~/.fleetreg --hosts-file /etc/hosts --once   # from cron
  fleetreg agent --node contabo-vps --out-dir /etc/fleetreg --token-file /etc/fleetreg/agent.token \\
      --server https://fleetreg-a.example --fallback-server https://fleetreg-b.example   # two replicas

The token is the node's agent token (`fleetreg node token NAME`); it is read
from --token-file, else found like every client command's (--token, FLEETREG_TOKEN, …).
The output directory holds .fleetreg-agent.json: the revision applied and the files written.";

/// `fleetreg agent`.
#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct AgentArgs {
    /// The node this agent runs on (its registered name).
    #[arg(long, env = "FLEETREG_NODE", value_name = "NAME", value_parser = parse_node)]
    node: String,
    /// Where the rendered files go (created if missing); it also holds the
    /// agent's state file, .fleetreg-agent.json.
    #[arg(long, env = "FLEETREG_OUT_DIR", value_name = "DIR")]
    out_dir: PathBuf,
    /// Read the bearer token from this file [else: --token, FLEETREG_TOKEN, …].
    #[arg(long, env = "FLEETREG_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Run this through `sh -c` after the files changed (e.g. `systemctl
    /// reload traefik`); a non-zero exit fails the revision. It gets
    /// FLEETREG_NODE, FLEETREG_REVISION and FLEETREG_OUT_DIR, never the token.
    #[arg(long, env = "FLEETREG_RELOAD_CMD", value_name = "CMD")]
    reload_cmd: Option<String>,
    /// How long the reload command may run before it is killed and the
    /// revision counted as failed.
    #[arg(long, default_value_t = 30, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=3600))]
    reload_timeout_seconds: u64,
    /// Load the rendered Caddy configuration into the Caddy whose admin API
    /// is at this URL (POST URL/load), e.g. http://127.0.0.1:2019.
    #[arg(long, env = "FLEETREG_CADDY_ADMIN", value_name = "URL")]
    caddy_admin: Option<String>,
    /// A listen address of the rendered Caddy server (repeatable) [default: :443].
    #[arg(long, value_name = "ADDR")]
    caddy_listen: Vec<String>,
    /// Render Caddy without automatic HTTPS (plain HTTP on the listen addresses).
    #[arg(long)]
    no_https: bool,
    /// Keep the fleetreg block of this hosts file (e.g. /etc/hosts) in step,
    /// leaving the rest of the file as it is.
    #[arg(long, value_name = "PATH")]
    hosts_file: Option<PathBuf>,
    /// Seconds between heartbeats; keep it well below the server's
    /// `edge.offline_after_seconds` (30 by default), or the node flaps offline.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=3600))]
    heartbeat_seconds: u64,
    /// Fetch the configuration once, apply it, acknowledge it and exit
    /// (non-zero on failure): for cron.
    #[arg(long)]
    once: bool,
    /// Another server of the same deployment (a `serve` replica on the same
    /// database), repeatable: when the stream ends or cannot be opened, each
    /// reconnect tries the next server in turn (--server first), and
    /// acknowledgements go to the server the stream is on.
    #[arg(
        long = "fallback-server",
        env = "FLEETREG_FALLBACK_SERVERS",
        value_name = "URL",
        value_delimiter = ','
    )]
    fallback_servers: Vec<String>,
    #[command(flatten)]
    connect: ConnectArgs,
}

fn parse_node(text: &str) -> Result<String, String> {
    DnsLabel::parse("--node", text)
        .map(|label| label.as_str().to_owned())
        .map_err(|e| e.to_string())
}

/// The agent failed to apply the configuration in `--once` mode.
#[derive(Debug, thiserror::Error)]
#[error("revision {revision} was not applied: {reason}")]
pub struct OnceFailed {
    /// The revision.
    pub revision: i64,
    /// Why.
    pub reason: String,
}

/// Prints one line of the agent's log to stderr: a UTC time stamp, then
/// `message`.
pub fn log(message: impl std::fmt::Display) {
    eprintln!(
        "{} fleetreg agent: {message}",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ")
    );
}

/// The first line of `error`'s text with its causes (the client's errors
/// carry hint lines meant for a terminal).
pub fn one_line(error: &anyhow::Error) -> String {
    let text = format!("{error:#}");
    text.lines().next().unwrap_or_default().to_owned()
}

/// The innermost cause of `error` (what reqwest's nesting hides).
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// Reads `response`'s body, refusing more than `limit` bytes.
pub async fn read_limited(response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = response.bytes_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| root_cause(&e))?;
        if bytes.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Runs the agent until SIGTERM or Ctrl-C (or, with `--once`, one apply).
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let mut connect = args.connect.clone();
    if let Some(path) = &args.token_file {
        let token = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read --token-file {}: {e}", path.display()))?;
        let token = token.trim();
        anyhow::ensure!(
            !token.is_empty(),
            "--token-file {} is empty",
            path.display()
        );
        connect.token = Some(token.to_owned());
    }
    let mut servers = vec![session::Server::new(&connect)?];
    for url in args
        .fallback_servers
        .iter()
        .filter(|u| !u.trim().is_empty())
    {
        let mut fallback = connect.clone();
        fallback.server = Some(crate::client::check_server_url(url, "--fallback-server")?);
        servers.push(session::Server::new(&fallback)?);
    }
    let mut caddy = CaddyOptions::default();
    if !args.caddy_listen.is_empty() {
        caddy.listen = args.caddy_listen.clone();
    }
    caddy.automatic_https = !args.no_https;
    let caddy_admin = match &args.caddy_admin {
        Some(url) => {
            let url = crate::client::check_server_url(url, "--caddy-admin")?;
            // Loading a configuration sets Caddy's admin address too: keep it
            // where the agent reaches it.
            if let Some(address) = reqwest::Url::parse(&url)
                .ok()
                .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
            {
                caddy.admin_listen = address;
            }
            Some(url)
        }
        None => None,
    };
    let out_dir = std::path::absolute(&args.out_dir).unwrap_or_else(|_| args.out_dir.clone());
    let (out, warning) = apply::OutDir::open(&out_dir, &args.node)
        .map_err(|e| anyhow::anyhow!("cannot use --out-dir {}: {e}", args.out_dir.display()))?;
    if let Some(warning) = warning {
        log(warning);
    }
    let agent = node::NodeAgent::new(node::Settings {
        node: args.node.clone(),
        out,
        out_dir,
        caddy,
        caddy_admin,
        hosts_file: args.hosts_file.clone(),
        reload_cmd: args.reload_cmd.clone(),
        reload_timeout: Duration::from_secs(args.reload_timeout_seconds),
    })?;
    if args.once {
        return session::once(&servers, agent).await;
    }
    let heartbeat = Duration::from_secs(args.heartbeat_seconds);
    tokio::select! {
        result = session::run(servers, agent, heartbeat) => result,
        signal = shutdown_signal() => {
            log(format!("stopping ({signal})"));
            Ok(())
        }
    }
}

/// Waits for Ctrl-C or SIGTERM; names the one that came.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "interrupt";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupt",
        _ = term.recv() => "SIGTERM",
    }
}

/// `GET path` answered as at most `limit` bytes of JSON.
pub async fn get_json(
    client: &Client,
    path: &str,
    limit: usize,
) -> anyhow::Result<serde_json::Value> {
    let response = client.send_raw(client.request(Method::GET, path)).await?;
    let bytes = read_limited(response, limit)
        .await
        .map_err(|e| anyhow::anyhow!("reading {path}: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("{path} answered no JSON: {e}"))
}

#[cfg(test)]
mod tests;
