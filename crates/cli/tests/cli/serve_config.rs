//! `serve` checks its whole configuration before it touches the database or
//! writes any file (issue 11, item 18): a refused start-up leaves a fresh
//! directory empty — no database, master key, admin token file or audit head.

use crate::common::fleetreg_in;
use fleetreg_testkit::spawn::Run;
use std::path::Path;

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
