//! The `fleetreg` binary as child processes: `fleetreg serve` on a free port
//! ([`Server`]: waits for its address and `/health`, runs client commands
//! against it, killed on drop), `fleetreg sim` ([`Sim`]), and one run's output
//! ([`Run`]).
//!
//! Only the crate that builds the binary can name its path
//! (`env!("CARGO_BIN_EXE_fleetreg")`), so its tests pass it in as a
//! [`Binary`].

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a server or simulator may take to start or stop on a busy machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The `fleetreg` binary under test and the admin token its runs get.
#[derive(Debug, Clone, Copy)]
pub struct Binary {
    /// Its path: `env!("CARGO_BIN_EXE_fleetreg")` in the crate that builds it.
    pub path: &'static str,
    /// The bootstrap admin token: `serve` takes it as `FLEETREG_ADMIN_TOKEN`,
    /// the client commands send it.
    pub admin_token: &'static str,
}

impl Binary {
    /// The binary with no `FLEETREG_*` or `RUST_LOG` from the caller's
    /// environment, no CLI contexts of the caller's (`XDG_CONFIG_HOME` points
    /// at a directory that does not exist; a test of contexts sets its own),
    /// `FLEETREG_ADMIN_TOKEN` set to [`Binary::admin_token`] and stdin closed.
    pub fn command(&self) -> Command {
        let mut command = Command::new(self.path);
        for (key, _) in std::env::vars() {
            if key.starts_with("FLEETREG_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        command.env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("fleetreg-test-no-contexts"),
        );
        command.env("FLEETREG_ADMIN_TOKEN", self.admin_token);
        command.stdin(Stdio::null());
        command
    }

    /// [`Binary::command`] run in `dir`.
    pub fn command_in(&self, dir: &Path) -> Command {
        let mut command = self.command();
        command.current_dir(dir);
        command
    }
}

/// What one run of the binary printed and how it ended.
#[derive(Debug)]
pub struct Run {
    /// The exit code (-1 when a signal ended it).
    pub code: i32,
    /// Its stdout (lossy UTF-8).
    pub stdout: String,
    /// Its stderr (lossy UTF-8).
    pub stderr: String,
}

impl Run {
    /// Runs `command` to the end.
    pub fn of(command: &mut Command) -> Run {
        Run::from_output(command.output().expect("run fleetreg"))
    }

    /// The run that produced `output`.
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

/// A minimal HTTP/1.1 GET of `path` at `base` (`http://ADDR`), enough to poll
/// `/health`: the whole answer, or `None` when it could not be had.
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
#[derive(Debug)]
pub struct Server {
    /// The process.
    pub child: Child,
    /// `http://ADDR` once it listens.
    pub url: String,
    /// Its stderr (where it logs).
    pub log: PathBuf,
    /// Its stdout.
    pub stdout_log: PathBuf,
    /// Its working directory.
    pub dir: PathBuf,
    binary: Binary,
}

impl Server {
    /// `fleetreg serve --listen 127.0.0.1:0 --database-url sqlite://DIR/DB
    /// --no-health-checks`, started.
    pub fn start(binary: Binary, dir: &Path, db: &str) -> Server {
        let url = format!("sqlite://{}", dir.join(db).display());
        Server::start_with(
            binary,
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
    pub fn start_with(binary: Binary, dir: &Path, args: &[&str]) -> Server {
        Server::start_with_env(binary, dir, args, &[])
    }

    /// `fleetreg serve ARGS` with `env` added (it may override `RUST_LOG`),
    /// waiting until it logs its address and `/health` answers.
    pub fn start_with_env(
        binary: Binary,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let mut server = Server::spawn(binary, dir, args, env);
        server.wait_listening();
        server
    }

    /// `fleetreg serve ARGS` with `env` added, not waited for.
    pub fn spawn(binary: Binary, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let id = unique();
        let log = dir.join(format!("serve-{id}.log"));
        let stdout_log = dir.join(format!("serve-{id}.stdout"));
        let mut command = binary.command_in(dir);
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
            binary,
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
        let mut command = self.binary.command_in(&self.dir);
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

/// `fleetreg sim` as a child process on a free port, its stdout and stderr in
/// files in its directory (`sim.stdout`, `sim.stderr`); killed on drop.
#[derive(Debug)]
pub struct Sim {
    /// The process.
    pub child: Child,
    /// Where its clusters are: `http://ADDR` (a cluster at `/c/<name>`).
    pub base_url: String,
    /// Its stderr (where it logs and announces its address).
    pub stderr: PathBuf,
}

impl Sim {
    /// `fleetreg sim --listen 127.0.0.1:0` in `dir` with `env` added (e.g.
    /// `RUST_LOG`), waiting until it announces its address.
    pub fn start(binary: Binary, dir: &Path, env: &[(&str, &str)]) -> Sim {
        let stderr = dir.join("sim.stderr");
        let mut command = binary.command_in(dir);
        command
            .args(["sim", "--listen", "127.0.0.1:0"])
            .stdout(std::fs::File::create(dir.join("sim.stdout")).expect("create sim stdout"))
            .stderr(std::fs::File::create(&stderr).expect("create sim stderr"));
        for (key, value) in env {
            command.env(key, value);
        }
        let mut sim = Sim {
            child: command.spawn().expect("start fleetreg sim"),
            base_url: String::new(),
            stderr,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = std::fs::read_to_string(&sim.stderr).unwrap_or_default();
            // `fleetreg sim: 0 clusters at http://ADDR/c/<name>, admin API at …`
            if let Some(url) = text
                .split(" clusters at ")
                .nth(1)
                .and_then(|rest| rest.split("/c/<name>").next())
            {
                sim.base_url = url.to_owned();
                return sim;
            }
            if let Ok(Some(status)) = sim.child.try_wait() {
                panic!("fleetreg sim exited with {status}:\n{text}");
            }
            assert!(Instant::now() < deadline, "sim did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits (up to [`PATIENCE`]) for it to exit.
    pub fn stop(&mut self) {
        sigterm(&self.child);
        assert!(
            wait_exit(&mut self.child, PATIENCE).is_some(),
            "sim did not stop"
        );
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
