//! The harness the CLI tests share: the `fleetreg` binary with a clean
//! environment, one run's output, and `fleetreg serve` as a child process on a
//! free port (waiting for its address and `/health`, killed on drop).
//!
//! Each test file includes it with `mod common;` and uses what it needs.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_fleetreg");

/// The bootstrap admin token every server these tests start takes (as
/// `FLEETREG_ADMIN_TOKEN`) and every client command sends.
pub const ADMIN_TOKEN: &str = "frg_cli-test-admin-token-0123456789";

/// How long a server may take to start or stop on a busy machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// `fleetreg` with no `FLEETREG_*` or `RUST_LOG` from the caller's environment,
/// the admin token (`serve` takes it as `FLEETREG_ADMIN_TOKEN`, the client
/// commands send it) and stdin closed.
pub fn fleetreg() -> Command {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("FLEETREG_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command.env("FLEETREG_ADMIN_TOKEN", ADMIN_TOKEN);
    command.stdin(Stdio::null());
    command
}

/// [`fleetreg`] run in `dir`.
pub fn fleetreg_in(dir: &Path) -> Command {
    let mut command = fleetreg();
    command.current_dir(dir);
    command
}

/// What one run of the binary printed and how it ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Runs `command` to the end.
    pub fn of(command: &mut Command) -> Run {
        Run::from_output(command.output().expect("run fleetreg"))
    }

    pub fn from_output(output: Output) -> Run {
        let Output {
            status,
            stdout,
            stderr,
        } = output;
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// Stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}): {}", self.stdout))
    }

    /// Stdout and stderr.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Asserts a failure with exit code 1 and an `error: CODE: …` line.
    pub fn assert_error(&self, code: &str) {
        assert_eq!(
            self.code, 1,
            "expected exit 1 with {code}; stdout {} stderr {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr
                .lines()
                .any(|l| l.starts_with(&format!("error: {code}: "))),
            "expected `error: {code}: …`, got: {}",
            self.stderr
        );
    }
}

/// A number no other call in this process returns (for file names).
pub fn unique() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    nanos + u128::from(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The address in `fleetreg listening on http://ADDR`.
pub fn listening_address(log: &str) -> Option<String> {
    let rest = log.split("listening on http://").nth(1)?;
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.contains(':').then_some(addr)
}

/// A minimal HTTP/1.1 GET, enough to poll `/health`.
pub fn http_get(base: &str, path: &str) -> Option<String> {
    let addr = base.strip_prefix("http://")?;
    let mut stream =
        TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// A free local port (bound once, then released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A local URL where nothing listens.
pub fn dead_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// Sends SIGTERM to `child`.
pub fn sigterm(child: &Child) {
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success(), "kill -TERM {pid}");
}

/// Waits up to `patience` for `child` to exit.
pub fn wait_exit(child: &mut Child, patience: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + patience;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `fleetreg serve` child in a directory of its own (its working directory:
/// the default key and audit head files land there), stderr and stdout each
/// in a file; killed on drop.
pub struct Server {
    pub child: Child,
    /// `http://ADDR` once it listens.
    pub url: String,
    /// Its stderr (where it logs).
    pub log: PathBuf,
    /// Its stdout.
    pub stdout_log: PathBuf,
    pub dir: PathBuf,
}

impl Server {
    /// `fleetreg serve --listen 127.0.0.1:0 --database-url sqlite://DIR/DB
    /// --no-health-checks`, started.
    pub fn start(dir: &Path, db: &str) -> Server {
        let url = format!("sqlite://{}", dir.join(db).display());
        Server::start_with(
            dir,
            &[
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                &url,
                "--no-health-checks",
            ],
        )
    }

    /// `fleetreg serve ARGS` (`RUST_LOG=info`), started.
    pub fn start_with(dir: &Path, args: &[&str]) -> Server {
        Server::start_with_env(dir, args, &[])
    }

    /// `fleetreg serve ARGS` with `env` added (it may override `RUST_LOG`),
    /// waiting until it logs its address and `/health` answers.
    pub fn start_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut server = Server::spawn(dir, args, env);
        server.wait_listening();
        server
    }

    /// `fleetreg serve ARGS` with `env` added, not waited for.
    pub fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let id = unique();
        let log = dir.join(format!("serve-{id}.log"));
        let stdout_log = dir.join(format!("serve-{id}.stdout"));
        let mut command = fleetreg_in(dir);
        command
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&stdout_log).expect("create stdout file"))
            .stderr(std::fs::File::create(&log).expect("create log"));
        for (key, value) in env {
            command.env(key, value);
        }
        Server {
            child: command.spawn().expect("start fleetreg serve"),
            url: String::new(),
            log,
            stdout_log,
            dir: dir.to_owned(),
        }
    }

    /// Waits until it logs its address and `/health` answers 200.
    pub fn wait_listening(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(addr) = listening_address(&self.log_text()) {
                self.url = format!("http://{addr}");
                break;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("fleetreg serve exited with {status}:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "fleetreg serve did not start:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        while !http_get(&self.url, "/health").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            assert!(
                Instant::now() < deadline,
                "/health never answered:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Expects it to exit unsuccessfully without ever listening; returns its log.
    pub fn refused(mut self) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(!status.success(), "{}", self.log_text());
                return self.log_text();
            }
            assert!(
                !self.log_text().contains("listening on http://"),
                "serve started:\n{}",
                self.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "serve neither started nor exited"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `fleetreg` in the server's directory, pointed at it (`FLEETREG_URL`).
    pub fn command(&self) -> Command {
        let mut command = fleetreg_in(&self.dir);
        command.env("FLEETREG_URL", &self.url);
        command
    }

    /// Runs `fleetreg ARGS` against this server.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command().args(args))
    }

    /// Runs `fleetreg ARGS` against this server, feeding `stdin`.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run fleetreg");
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(stdin.as_bytes()).expect("write stdin");
        }
        Run::from_output(child.wait_with_output().expect("wait for fleetreg"))
    }

    /// Runs `fleetreg ARGS`, expects exit 0 and returns the run.
    pub fn ok_run(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(
            run.code, 0,
            "fleetreg {args:?} failed: {}{}",
            run.stdout, run.stderr
        );
        run
    }

    /// Runs `fleetreg ARGS`, expects exit 0 and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_run(args).stdout
    }

    /// Runs `fleetreg ARGS -o json`, expects exit 0 and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        self.ok_run(&[args, &["-o", "json"]].concat()).json()
    }

    /// Sends SIGTERM and waits for the exit (a graceful stop, e.g. writing the
    /// last audit head), whatever its status.
    pub fn stop(self) {
        let _ = self.terminate();
    }

    /// Sends SIGTERM and waits (up to [`PATIENCE`]) for the exit status; the
    /// log as it ended.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        sigterm(&self.child);
        let status = wait_exit(&mut self.child, PATIENCE)
            .unwrap_or_else(|| panic!("no exit after SIGTERM:\n{}", self.log_text()));
        (status, self.log_text())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
