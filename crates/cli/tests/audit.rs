//! `fleetreg audit …` as a user drives it: the real `fleetreg serve` writes an
//! audit log (SQLite in a temporary directory, key and head files beside it);
//! `audit list` reads it over HTTP; after the server stops, `audit verify`
//! checks it from the database: exit 0 untouched, 2 with a wrong key, after the
//! tail is cut off (the head file) and after an entry is edited, 1 when it
//! cannot check at all.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fleetreg");

/// The bootstrap admin token `serve` takes and the CLI sends.
const ADMIN_TOKEN: &str = "frg_cli-audit-admin-token-0123456789";

/// A master key that is not the server's (32 bytes of 7, base64).
const OTHER_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

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

/// `fleetreg serve` on a free port with `dir/fleetreg.db`, killed on drop.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let log = dir.join("serve.log");
        let database = format!("sqlite://{}", dir.join("fleetreg.db").display());
        let child = fleetreg(dir)
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url"])
            .arg(&database)
            .arg("--no-health-checks")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create log"))
            .spawn()
            .expect("start fleetreg serve");
        let mut server = Server {
            child,
            url: String::new(),
            log,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = std::fs::read_to_string(&server.log).unwrap_or_default();
            if let Some(rest) = text.split("listening on http://").nth(1) {
                let addr: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                server.url = format!("http://{addr}");
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("fleetreg serve exited with {status}:\n{text}");
            }
            assert!(Instant::now() < deadline, "serve did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `fleetreg ARGS` against this server; expects success.
    fn ok(&self, dir: &Path, args: &[&str]) -> String {
        let out = run(fleetreg(dir).args(args).env("FLEETREG_URL", &self.url));
        assert_eq!(out.code, 0, "fleetreg {args:?}: {}", out.stderr);
        out.stdout
    }

    /// SIGTERM, then waits: a graceful stop writes the last audit head.
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

/// One SQL statement on the database, as an attacker with file access would.
fn tamper(db: &Path, statement: &str) {
    let url = format!("sqlite://{}", db.display());
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let pool = sqlx::SqlitePool::connect(&url).await.expect("open db");
            sqlx::query(statement).execute(&pool).await.expect("tamper");
            pool.close().await;
        });
}

#[test]
fn audit_list_and_verify_exit_codes() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path();
    let db = dir.join("fleetreg.db");
    let database_url = format!("sqlite://{}", db.display());
    let server = Server::start(dir);
    for name in ["audited-one", "audited-two"] {
        let url = format!("https://api.{name}.example.com:6443");
        server.ok(
            dir,
            &["cluster", "register", name, "--api-server-url", &url],
        );
    }
    server.ok(
        dir,
        &["cluster", "update", "audited-one", "--region", "eu-1"],
    );

    let page: Value =
        serde_json::from_str(&server.ok(dir, &["audit", "list", "-o", "json"])).expect("json page");
    let actions: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default())
        .collect();
    assert!(
        actions.ends_with(&["cluster.create", "cluster.create", "cluster.update"]),
        "{actions:?}"
    );
    let one: Value = serde_json::from_str(&server.ok(
        dir,
        &["audit", "list", "--cluster", "audited-one", "-o", "json"],
    ))
    .expect("json page");
    assert_eq!(one["items"].as_array().map(Vec::len), Some(2), "{one}");
    let table = server.ok(dir, &["audit", "list", "--action", "cluster.update"]);
    assert!(
        table.contains("ACTION") && table.contains("cluster.update"),
        "{table}"
    );
    assert!(!table.contains("cluster.create"), "{table}");
    let yaml = server.ok(dir, &["audit", "list", "--limit", "1", "-o", "yaml"]);
    assert!(yaml.contains("next_after:"), "{yaml}");
    server.stop();
    assert!(
        dir.join("fleetreg-audit.head").exists(),
        "head file written"
    );

    let verify = |extra: &[&str], env: &[(&str, &str)]| {
        let mut command = fleetreg(dir);
        command.args(["audit", "verify", "--database-url", &database_url]);
        command.args(extra);
        for (key, value) in env {
            command.env(key, value);
        }
        run(&mut command)
    };

    let ok = verify(&[], &[]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(ok.stdout.contains("audit log verified"), "{}", ok.stdout);
    assert!(ok.stdout.contains("matches"), "{}", ok.stdout);

    let wrong = verify(&[], &[("FLEETREG_MASTER_KEY", OTHER_KEY)]);
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("verification FAILED") && wrong.stderr.contains("not in the keyring"),
        "{}",
        wrong.stderr
    );

    let no_key = verify(&["--master-key-file", "missing.key"], &[]);
    assert_eq!(no_key.code, 1, "{}", no_key.stderr);
    assert!(no_key.stderr.contains("missing.key"), "{}", no_key.stderr);
    let missing = dir.join("missing.db");
    let no_db = run(fleetreg(dir)
        .args(["audit", "verify", "--database-url"])
        .arg(format!("sqlite://{}", missing.display())));
    assert_eq!(no_db.code, 1, "{}", no_db.stderr);
    assert!(no_db.stderr.contains("no database"), "{}", no_db.stderr);
    assert!(!missing.exists(), "verify creates no database");

    // Cut the newest entry off the end: the chain is intact, the head is not.
    tamper(
        &db,
        "DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)",
    );
    let truncated = verify(&[], &[]);
    assert_eq!(truncated.code, 2, "{}", truncated.stderr);
    assert!(
        truncated.stderr.contains("removed from the end"),
        "{}",
        truncated.stderr
    );
    let headless = verify(&["--audit-head-file", "elsewhere.head"], &[]);
    assert_eq!(headless.code, 0, "{}", headless.stderr);
    assert!(
        headless.stderr.contains("warning: no head file"),
        "{}",
        headless.stderr
    );

    tamper(&db, "UPDATE audit_log SET actor = 'mallory' WHERE id = 2");
    let altered = verify(&["--audit-head-file", "elsewhere.head"], &[]);
    assert_eq!(altered.code, 2, "{}", altered.stderr);
    assert!(
        altered.stderr.contains("entry 2 does not verify"),
        "{}",
        altered.stderr
    );
}
