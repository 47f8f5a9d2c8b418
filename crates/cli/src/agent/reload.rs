//! Making the node's software pick up what was written: a reload command
//! run through `sh -c` (bounded in time, its stderr kept bounded for the
//! error report), or the rendered Caddy configuration posted to Caddy's
//! admin API (`POST /load`).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// How much of a reload command's stderr (or of Caddy's error answer) is kept.
pub const MAX_REPORTED_OUTPUT: usize = 2048;

/// How long Caddy's admin API may take to load a configuration.
const CADDY_TIMEOUT: Duration = Duration::from_secs(15);

/// Environment variables the reload command never inherits: the agent's
/// own credentials.
const WITHHELD_ENV: &[&str] = &[
    "FLEETREG_TOKEN",
    "FLEETREG_ADMIN_TOKEN",
    "FLEETREG_TOKEN_FILE",
];

/// Why a reload failed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The command could not be started.
    #[error("cannot run the reload command: {0}")]
    Spawn(std::io::Error),
    /// The command ran past its time limit and was killed.
    #[error("the reload command did not finish within {} s{}", .timeout.as_secs(), stderr_suffix(.stderr))]
    TimedOut {
        /// The limit.
        timeout: Duration,
        /// The start of its stderr.
        stderr: String,
    },
    /// The command exited unsuccessfully.
    #[error("the reload command failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        /// How it exited.
        status: std::process::ExitStatus,
        /// The start of its stderr.
        stderr: String,
    },
    /// Caddy's admin API could not be reached.
    #[error("cannot reach the Caddy admin API at {url}: {reason}")]
    CaddyUnreachable {
        /// The `/load` URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// Caddy refused the configuration.
    #[error("Caddy refused the configuration ({status}): {body}")]
    CaddyRefused {
        /// Its HTTP status.
        status: reqwest::StatusCode,
        /// The start of its answer.
        body: String,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", stderr.trim())
    }
}

/// The first [`MAX_REPORTED_OUTPUT`] bytes of `bytes` as text (cut at a
/// character boundary, marked when cut).
pub fn bounded_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    truncate(&text, MAX_REPORTED_OUTPUT)
}

/// `text` cut to at most `limit` bytes at a character boundary, with `…`
/// appended when cut.
pub fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Runs `command` with `sh -c` (stdin and stdout closed to it, `env` added,
/// the agent's tokens withheld) as the leader of a new process group; kills
/// that group after `timeout`.
pub async fn run_command(
    command: &str,
    timeout: Duration,
    env: &[(&str, String)],
) -> Result<(), ReloadError> {
    let mut process = tokio::process::Command::new("sh");
    process
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for name in WITHHELD_ENV {
        process.env_remove(name);
    }
    for (name, value) in env {
        process.env(name, value);
    }
    let mut child = process.spawn().map_err(ReloadError::Spawn)?;
    // Read stderr beside the wait (a full pipe would block the command):
    // keep the start, drain the rest. Shared, so that what arrived is
    // reported even when a process the command left behind keeps the pipe
    // open.
    let kept = Arc::new(Mutex::new(Vec::new()));
    let reader = child.stderr.take().map(|mut stderr| {
        let kept = Arc::clone(&kept);
        tokio::spawn(async move {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                // Never held across an await.
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                let room = (MAX_REPORTED_OUTPUT + 1).saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
            }
        })
    });
    let status = tokio::time::timeout(timeout, child.wait()).await;
    if status.is_err() {
        // The command and whatever it started: it leads a process group.
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = child.kill().await;
    }
    if let Some(reader) = reader {
        // Give the pipe a moment to deliver the last lines.
        let _ = tokio::time::timeout(Duration::from_millis(500), reader).await;
    }
    let stderr = bounded_text(&kept.lock().unwrap_or_else(|e| e.into_inner()));
    match status {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(ReloadError::Failed { status, stderr }),
        Ok(Err(error)) => Err(ReloadError::Spawn(error)),
        Err(_) => Err(ReloadError::TimedOut { timeout, stderr }),
    }
}

/// Posts `config` to Caddy's admin API at `admin` (`http://127.0.0.1:2019`)
/// `/load`, with no credentials of the agent's.
pub async fn load_caddy(
    http: &reqwest::Client,
    admin: &str,
    config: &serde_json::Value,
) -> Result<(), ReloadError> {
    let url = format!("{}/load", admin.trim_end_matches('/'));
    let unreachable = |error: reqwest::Error| ReloadError::CaddyUnreachable {
        url: url.clone(),
        reason: super::root_cause(&error),
    };
    let response = http
        .post(&url)
        .timeout(CADDY_TIMEOUT)
        .json(config)
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = super::read_limited(response, MAX_REPORTED_OUTPUT)
        .await
        .map(|bytes| bounded_text(&bytes))
        .unwrap_or_default();
    Err(ReloadError::CaddyRefused { status, body })
}
