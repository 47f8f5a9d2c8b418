//! [`Caddy`]: a real Caddy of one test's own (`caddy run` in a temp dir, the
//! admin API on a free loopback port), to load rendered configurations into,
//! and to kill and restart (with what it last loaded) as a crash would.
//!
//! DESIGN.md's skip rule: no `caddy` binary, or one that does not start, is a
//! `SKIP:` unless `FLEETREG_REQUIRE_CADDY=1` ([`REQUIRE_CADDY_ENV`]), where it
//! is a failure. `scripts/install-test-deps.sh` installs Caddy.

use crate::spawn::{wait_exit, PATIENCE};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that, set to `1`, makes a missing or broken
/// Caddy a failure instead of a skip (CI sets it).
pub const REQUIRE_CADDY_ENV: &str = "FLEETREG_REQUIRE_CADDY";

/// A running `caddy run --config DIR/initial.json`, its `HOME` and XDG
/// directories inside its temp dir (so it never reads or writes the user's
/// Caddy data or autosave), its output in `DIR/caddy.log`, the admin API on
/// `127.0.0.1:<free port>`. Made by [`caddy`]; killed (and the directory
/// removed) on drop, also while a panicking test unwinds.
///
/// The calls block the calling thread (from async code use
/// `tokio::task::spawn_blocking` or `block_in_place`).
#[derive(Debug)]
pub struct Caddy {
    dir: tempfile::TempDir,
    child: Child,
    admin: String,
}

impl Caddy {
    /// The admin API's address, `127.0.0.1:PORT`: what a loaded
    /// configuration's `admin.listen` must be.
    pub fn admin_listen(&self) -> &str {
        &self.admin
    }

    /// The temp dir (`caddy.log`, `initial.json`, `home/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Caddy's output so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("caddy.log")
    }

    /// Replaces Caddy's whole configuration with `config` (`POST /load`).
    /// Refused here, before Caddy sees it, when `config.admin.listen` is not
    /// [`Caddy::admin_listen`] (loading it would move the admin API out of
    /// reach); Caddy's answer when it refuses the configuration.
    pub fn load(&self, config: &Value) -> Result<(), String> {
        let listen = config["admin"]["listen"].as_str();
        if listen != Some(self.admin.as_str()) {
            return Err(format!(
                "the configuration's admin.listen is {listen:?}, not {:?}: loading it would \
                 lose the admin API",
                self.admin
            ));
        }
        let body = serde_json::to_string(config).map_err(|e| e.to_string())?;
        let (status, answer) = admin_request(&self.admin, "POST", "/load", Some(&body))
            .map_err(|e| format!("POST /load: {e}"))?;
        if status == 200 {
            Ok(())
        } else {
            Err(format!("POST /load answered {status}: {answer}"))
        }
    }

    /// The running configuration (`GET /config/`).
    pub fn config(&self) -> Result<Value, String> {
        // A load restarts the admin endpoint: a read right after it may meet
        // the old listener closing (connection reset), so a failed read is
        // tried again for a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let (status, answer) = loop {
            match admin_request(&self.admin, "GET", "/config/", None) {
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => break other?,
            }
        };
        if status != 200 {
            return Err(format!("GET /config/ answered {status}: {answer}"));
        }
        serde_json::from_str(&answer).map_err(|e| format!("{e}: {answer}"))
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills Caddy (as a crash would), keeping its directory and admin
    /// address; [`Caddy::restart`] brings it back.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts Caddy again (after [`Caddy::stop`]; a running one is stopped
    /// first) with the configuration it last loaded (`caddy run --resume`:
    /// its autosave, else the initial one), as a supervisor restarting it
    /// would, and waits until its admin API answers.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.child = spawn(self.dir.path(), &["--resume"])?;
        self.wait_ready()
    }

    /// Waits until the admin API answers; kills Caddy when it exits or does
    /// not answer in time.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.config().is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("caddy exited ({status}): {}", self.log()));
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = wait_exit(&mut self.child, Duration::from_secs(5));
                return Err(format!(
                    "the admin API at {} did not answer within {PATIENCE:?}: {}",
                    self.admin,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request to Caddy's admin API at `addr`: the status and body.
fn admin_request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let socket = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut stream = TcpStream::connect_timeout(&socket, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(PATIENCE))
        .map_err(|e| e.to_string())?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {answer:?}"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, dechunk(&body)))
}

/// The body of a `Transfer-Encoding: chunked` answer (or `body` unchanged if
/// it does not look chunked).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_owned();
        };
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if size == 0 {
            return out;
        }
        let Some(chunk) = after.get(..size) else {
            return body.to_owned();
        };
        out.push_str(chunk);
        rest = after.get(size + 2..).unwrap_or("");
    }
}

/// Starts a [`Caddy`] and waits until its admin API answers (`GET /config/`).
///
/// Returns `None` after a `SKIP:` line when the `caddy` binary is missing or
/// Caddy does not come up, unless `FLEETREG_REQUIRE_CADDY=1`, where that
/// panics. Blocks the calling thread (up to 30 s per attempt).
pub fn caddy() -> Option<Caddy> {
    let hint = "install Caddy (scripts/install-test-deps.sh)";
    match Command::new("caddy")
        .arg("version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            crate::skip_or_fail(
                REQUIRE_CADDY_ENV,
                &format!("`caddy version` failed: {}", out.status),
                hint,
            );
            return None;
        }
        Err(e) => {
            crate::skip_or_fail(
                REQUIRE_CADDY_ENV,
                &format!("caddy cannot be run: {e}"),
                hint,
            );
            return None;
        }
    }
    let mut last_error = String::new();
    for _ in 0..5 {
        match start() {
            Ok(caddy) => return Some(caddy),
            Err(error) => last_error = error,
        }
        if !last_error.contains("address already in use") {
            break;
        }
    }
    crate::skip_or_fail(
        REQUIRE_CADDY_ENV,
        &format!("Caddy did not start: {last_error}"),
        hint,
    );
    None
}

fn start() -> Result<Caddy, String> {
    let dir = tempfile::Builder::new()
        .prefix("fleetreg-caddy-")
        .tempdir()
        .map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let home = dir.path().join("home");
    for sub in ["data", "config"] {
        std::fs::create_dir_all(home.join(sub)).map_err(|e| e.to_string())?;
    }
    let admin = format!("127.0.0.1:{}", crate::free_port());
    let initial = dir.path().join("initial.json");
    std::fs::write(
        &initial,
        json!({ "admin": { "listen": admin } }).to_string(),
    )
    .map_err(|e| e.to_string())?;
    let child = spawn(dir.path(), &[])?;
    let mut caddy = Caddy { dir, child, admin };
    caddy.wait_ready()?;
    Ok(caddy)
}

/// `caddy run --config DIR/initial.json EXTRA` in `dir`, its `HOME` and XDG
/// directories inside it, its output appended to `DIR/caddy.log`.
fn spawn(dir: &Path, extra: &[&str]) -> Result<Child, String> {
    let home = dir.join("home");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("caddy.log"))
        .map_err(|e| e.to_string())?;
    Command::new("caddy")
        .arg("run")
        .arg("--config")
        .arg(dir.join("initial.json"))
        .args(extra)
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start caddy: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"), "Wikipedia");
        assert_eq!(dechunk("{\"a\":1}"), "{\"a\":1}");
    }

    #[test]
    fn caddy_starts_loads_and_stops() {
        let Some(mut caddy) = caddy() else { return };
        assert!(caddy.is_running());
        let port = crate::free_port();
        let config = json!({
            "admin": { "listen": caddy.admin_listen() },
            "apps": { "http": { "servers": { "t": {
                "listen": [format!("127.0.0.1:{port}")],
                "automatic_https": { "disable": true },
                "routes": [{ "handle": [{ "handler": "static_response", "body": "hi" }] }],
            } } } },
        });
        caddy.load(&config).expect("load");
        assert_eq!(caddy.config().unwrap(), config);
        let answer = crate::spawn::http_get(&format!("http://127.0.0.1:{port}"), "/").unwrap();
        assert!(answer.ends_with("hi"), "{answer}");
        // Killed and restarted, it serves what it last loaded.
        caddy.stop();
        assert!(!caddy.is_running());
        assert!(crate::spawn::http_get(&format!("http://127.0.0.1:{port}"), "/").is_none());
        caddy.restart().expect("restart");
        assert_eq!(caddy.config().unwrap(), config);
        let answer = crate::spawn::http_get(&format!("http://127.0.0.1:{port}"), "/").unwrap();
        assert!(answer.ends_with("hi"), "{answer}");
        let elsewhere = json!({ "admin": { "listen": "127.0.0.1:1" } });
        assert!(caddy.load(&elsewhere).unwrap_err().contains("admin.listen"));
        let broken = json!({ "admin": { "listen": caddy.admin_listen() }, "apps": { "nope": {} } });
        assert!(caddy.load(&broken).is_err());
        let dir = caddy.dir().to_owned();
        drop(caddy);
        assert!(!dir.exists());
    }
}
