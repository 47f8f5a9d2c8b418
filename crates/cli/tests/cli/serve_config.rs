//! `serve` checks its whole configuration before it touches the database or
//! writes any file (issue 11, item 18): a refused start-up leaves a fresh
//! directory empty — no database, master key, admin token file or audit head.

use crate::common::{fleetreg_in, FLEETREG};
use fleetreg_testkit::spawn::{listening_address, sigterm, wait_exit, Run, Server, PATIENCE};
use std::path::Path;
use std::process::Child;
use std::time::Instant;

/// `fleetreg serve ARGS` in a fresh directory, without FLEETREG_ADMIN_TOKEN
/// (so a started server would write the token file) unless `admin_token`.
fn refused_serve(args: &[&str], admin_token: Option<&str>) -> (Run, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = fleetreg_in(dir.path());
    command
        .env_remove("FLEETREG_ADMIN_TOKEN")
        .arg("serve")
        .args(args);
    if let Some(token) = admin_token {
        command.env("FLEETREG_ADMIN_TOKEN", token);
    }
    let run = Run::of(&mut command);
    assert_ne!(run.code, 0, "serve {args:?} started: {}", run.all());
    (run, dir)
}

fn assert_empty(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "a refused start-up left {left:?}");
}

// Fails before: migrations ran and the master key was created first.
#[test]
fn an_insecure_listen_is_refused_before_anything_is_written() {
    let (run, dir) = refused_serve(&["--listen", "0.0.0.0:0"], None);
    assert!(
        run.stderr
            .contains("refusing to listen on 0.0.0.0:0 without TLS"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("--allow-insecure-listen"),
        "names the remedy: {}",
        run.stderr
    );
    assert_empty(dir.path());
}

#[test]
fn unreadable_tls_files_are_refused_before_anything_is_written() {
    let (run, dir) = refused_serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "missing-cert.pem",
            "--tls-key",
            "missing-key.pem",
        ],
        None,
    );
    assert!(run.stderr.contains("TLS"), "{}", run.stderr);
    assert_empty(dir.path());
}

#[test]
fn a_short_admin_token_is_refused_before_anything_is_written() {
    let (run, dir) = refused_serve(&["--listen", "127.0.0.1:0"], Some("short"));
    assert!(
        run.stderr.contains("at least 16 characters"),
        "{}",
        run.stderr
    );
    assert_empty(dir.path());
}

// Fails before: the server created its database, key, token and audit entries,
// then could not listen.
#[test]
fn a_port_in_use_is_refused_before_anything_is_written() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (run, dir) = refused_serve(&["--listen", &addr], None);
    assert!(run.stderr.contains("cannot listen on"), "{}", run.stderr);
    assert_empty(dir.path());
}

/// `fleetreg serve ARGS` in `dir` without FLEETREG_ADMIN_TOKEN (so it writes
/// the token file when it needs an admin token), logging to `dir/LOG`. Returns
/// the child and, when it started, its address; `None` when it exited.
fn serve_without_preset(dir: &Path, args: &[&str], log: &str) -> (Child, Option<String>) {
    let log = dir.join(log);
    let mut child = fleetreg_in(dir)
        .env_remove("FLEETREG_ADMIN_TOKEN")
        .env("RUST_LOG", "info")
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--no-health-checks"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(addr) = listening_address(&text) {
            return (child, Some(addr));
        }
        if let Ok(Some(_)) = child.try_wait() {
            return (child, None);
        }
        assert!(Instant::now() < deadline, "serve hung:\n{text}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn stop(mut child: Child) {
    sigterm(&child);
    assert!(
        wait_exit(&mut child, PATIENCE).is_some(),
        "serve did not stop"
    );
}

// Fails before: B rewrote `fleetreg-admin.token`, and the CLI against A was
// then refused with UNAUTHENTICATED.
#[test]
fn a_second_server_never_replaces_another_databases_token_file() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let (a, addr) = serve_without_preset(dir, &["--database-url", "sqlite://a.db"], "a.log");
    assert!(addr.is_some(), "A did not start");
    let token_file = dir.join("fleetreg-admin.token");
    let token = std::fs::read_to_string(&token_file).expect("A wrote its token file");

    let (_b, started) = serve_without_preset(dir, &["--database-url", "sqlite://b.db"], "b.log");
    let log = std::fs::read_to_string(dir.join("b.log")).unwrap();
    assert!(started.is_none(), "B started:\n{log}");
    assert!(
        log.contains("fleetreg-admin.token") && log.contains("does not know"),
        "names the file and why: {log}"
    );
    assert!(log.contains("--admin-token-file"), "names a remedy: {log}");
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap(),
        token,
        "A's token file left alone"
    );
    // The CLI in this directory (the token file, no FLEETREG_ADMIN_TOKEN) still gets into A.
    let addr = addr.unwrap();
    let list = Run::of(
        fleetreg_in(dir)
            .env_remove("FLEETREG_ADMIN_TOKEN")
            .env("FLEETREG_URL", format!("http://{addr}"))
            .args(["cluster", "list"]),
    );
    assert_eq!(list.code, 0, "{}", list.all());

    // B with a token file of its own starts; A restarted on its database keeps its token.
    let (b, started) = serve_without_preset(
        dir,
        &[
            "--database-url",
            "sqlite://b.db",
            "--admin-token-file",
            "b.token",
        ],
        "b2.log",
    );
    assert!(started.is_some(), "B with its own token file did not start");
    stop(b);
    stop(a);
    let (a, started) = serve_without_preset(dir, &["--database-url", "sqlite://a.db"], "a2.log");
    assert!(started.is_some(), "A did not restart");
    stop(a);
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), token);
}

/// One SQL statement on a SQLite file, as someone with file access would.
fn sqlite(db: &Path, statement: &str) {
    let url = format!("sqlite://{}", db.display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query(statement).execute(&pool).await.unwrap();
        pool.close().await;
    });
}

// Fails before: after `rm fleetreg.db*` serve refused to start, saying the
// audit log did not match its head file.
#[test]
fn a_reset_database_starts_with_a_new_audit_head_a_truncated_one_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let register = |server: &Server, name: &str| {
        let url = format!("https://api.{name}.example.com:6443");
        server.ok(&["cluster", "register", name, "--api-server-url", &url]);
    };
    let server = Server::start(FLEETREG, dir, "fleetreg.db");
    register(&server, "before-reset");
    server.stop();
    let head_file = dir.join("fleetreg-audit.head");
    let old_head = std::fs::read_to_string(&head_file).expect("head written");
    for name in ["fleetreg.db", "fleetreg.db-wal", "fleetreg.db-shm"] {
        let _ = std::fs::remove_file(dir.join(name));
    }

    let server = Server::start(FLEETREG, dir, "fleetreg.db");
    let log = server.log_text();
    assert!(log.contains("belongs to another database"), "{log}");
    assert!(!log.contains("does not match"), "{log}");
    let set_aside: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("fleetreg-audit.head."))
        .collect();
    assert_eq!(set_aside.len(), 1, "{set_aside:?}");
    assert_eq!(
        std::fs::read_to_string(dir.join(&set_aside[0])).unwrap(),
        old_head,
        "the old head is kept"
    );
    register(&server, "after-reset-one");
    register(&server, "after-reset-two");
    server.stop();

    // The same database cut short keeps its id: still refused.
    sqlite(
        &dir.join("fleetreg.db"),
        "DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)",
    );
    let log = Server::spawn(
        FLEETREG,
        dir,
        &[
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &format!("sqlite://{}", dir.join("fleetreg.db").display()),
            "--no-health-checks",
        ],
        &[],
    )
    .refused();
    assert!(log.contains("does not match its head file"), "{log}");
}
