//! `fleetreg vault …` as a user drives it: `serve` creates the key file and the
//! canary; `vault rotate-master-key` puts a new key first and keeps the old
//! one; `serve` then starts with the file (both keys) but refuses the old key
//! alone; `audit verify` still passes; `--rewrap-only` takes keys from
//! FLEETREG_MASTER_KEY, which a plain rotation refuses (exit 1, nothing written).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fleetreg");

/// The bootstrap admin token `serve` takes.
const ADMIN_TOKEN: &str = "frg_cli-vault-admin-token-0123456789";

/// A master key (32 bytes of 7, base64).
const SOME_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// How long a server may take to start or stop on a busy machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// `fleetreg` with a clean environment of our own, run in `dir`.
fn fleetreg(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("FLEETREG_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command.env("FLEETREG_ADMIN_TOKEN", ADMIN_TOKEN);
    command.current_dir(dir);
    command.stdin(Stdio::null());
    command
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(command: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("run fleetreg");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// `fleetreg ARGS` in `dir`; expects exit 0 and returns stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(fleetreg(dir).args(args));
    assert_eq!(
        out.code, 0,
        "fleetreg {args:?}: {}{}",
        out.stdout, out.stderr
    );
    out.stdout
}

/// `fleetreg serve` in `dir` (./fleetreg.db, ./fleetreg-master.key), killed on drop.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn spawn(dir: &Path, env: &[(&str, &str)]) -> Server {
        let log = dir.join(format!("serve-{}.log", std::process::id()));
        let mut command = fleetreg(dir);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--no-health-checks"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create log"));
        for (key, value) in env {
            command.env(key, value);
        }
        Server {
            child: command.spawn().expect("start fleetreg serve"),
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until it listens.
    fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut server = Server::spawn(dir, env);
        let deadline = Instant::now() + PATIENCE;
        while !server.log_text().contains("listening on http://") {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "fleetreg serve exited with {status}:\n{}",
                    server.log_text()
                );
            }
            assert!(Instant::now() < deadline, "serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Expects it to refuse to start; returns its log.
    fn refused(dir: &Path, env: &[(&str, &str)]) -> String {
        let mut server = Server::spawn(dir, env);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                assert!(!status.success(), "{}", server.log_text());
                return server.log_text();
            }
            assert!(
                !server.log_text().contains("listening on http://"),
                "serve started:\n{}",
                server.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "serve neither started nor exited"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(killed.expect("run kill").success());
        let deadline = Instant::now() + PATIENCE;
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            assert!(Instant::now() < deadline, "serve did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn key_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("fleetreg-master.key"))
        .expect("key file")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn rotate_master_key_refuses_an_environment_key() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path();
    let out = run(fleetreg(dir)
        .args(["vault", "rotate-master-key"])
        .env("FLEETREG_MASTER_KEY", SOME_KEY));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("FLEETREG_MASTER_KEY is set") && out.stderr.contains("--rewrap-only"),
        "{}",
        out.stderr
    );
    assert!(!dir.join("fleetreg-master.key").exists());
    assert!(!dir.join("fleetreg.db").exists());

    // Without a database nothing is created either.
    let out = run(fleetreg(dir)
        .args(["vault", "rotate-master-key", "--rewrap-only"])
        .env("FLEETREG_MASTER_KEY", SOME_KEY));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("no database"), "{}", out.stderr);
    assert!(!dir.join("fleetreg.db").exists());
}

#[test]
fn rotate_master_key_then_serve_with_both_keys_not_the_old_alone() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path();
    Server::start(dir, &[]).stop();
    let old = key_lines(dir);
    assert_eq!(old.len(), 1);

    let status = ok(dir, &["vault", "status"]);
    assert!(
        status.contains("active") && !status.contains("previous"),
        "{status}"
    );

    let rotated = ok(dir, &["vault", "rotate-master-key"]);
    assert!(rotated.contains("new active key"), "{rotated}");
    assert!(
        rotated.contains("envelopes left under old keys:    0"),
        "{rotated}"
    );
    let keys = key_lines(dir);
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1], old[0]);
    let status = ok(dir, &["vault", "status"]);
    assert!(
        status.contains("active") && status.contains("previous"),
        "{status}"
    );

    // The rotation's audit entries verify with the key file.
    ok(dir, &["audit", "verify"]);

    // The old key alone no longer opens the canary; the file (both keys) does.
    let out = run(fleetreg(dir)
        .args(["vault", "status"])
        .env("FLEETREG_MASTER_KEY", &old[0]));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("does NOT open"), "{}", out.stdout);
    let log = Server::refused(dir, &[("FLEETREG_MASTER_KEY", &old[0])]);
    assert!(
        log.contains("cannot decrypt the stored credentials"),
        "{log}"
    );
    Server::start(dir, &[]).stop();

    // Keys from the environment: re-wrap only, new key first.
    let both = format!("{},{}", keys[0], keys[1]);
    let out = ok(dir, &["vault", "rotate-master-key", "--rewrap-only"]);
    assert!(out.contains("re-wrapping under the active key"), "{out}");
    let out = run(fleetreg(dir)
        .args(["vault", "rotate-master-key", "--rewrap-only"])
        .env("FLEETREG_MASTER_KEY", &both));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(key_lines(dir), keys, "the key file is not touched");
}
