//! `fleetreg vault …` as a user drives it: `serve` creates the key file and the
//! canary; `vault rotate-master-key` puts a new key first and keeps the old
//! one; `serve` then starts with the file (both keys) but refuses the old key
//! alone; `audit verify` still passes; `--rewrap-only` takes keys from
//! FLEETREG_MASTER_KEY, which a plain rotation refuses (exit 1, nothing written).

use crate::common::{fleetreg_in, FLEETREG};
use fleetreg_testkit::spawn::{Run, Server};
use std::path::Path;

/// A master key (32 bytes of 7, base64).
const SOME_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// `serve` in the test's directory: `./fleetreg.db`, `./fleetreg-master.key`.
const SERVE_ARGS: &[&str] = &["--listen", "127.0.0.1:0", "--no-health-checks"];

/// `fleetreg ARGS` in `dir`; expects exit 0 and returns stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    let out = Run::of(fleetreg_in(dir).args(args));
    assert_eq!(
        out.code, 0,
        "fleetreg {args:?}: {}{}",
        out.stdout, out.stderr
    );
    out.stdout
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
    let out = Run::of(
        fleetreg_in(dir)
            .args(["vault", "rotate-master-key"])
            .env("FLEETREG_MASTER_KEY", SOME_KEY),
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("FLEETREG_MASTER_KEY is set") && out.stderr.contains("--rewrap-only"),
        "{}",
        out.stderr
    );
    assert!(!dir.join("fleetreg-master.key").exists());
    assert!(!dir.join("fleetreg.db").exists());

    // Without a database nothing is created either.
    let out = Run::of(
        fleetreg_in(dir)
            .args(["vault", "rotate-master-key", "--rewrap-only"])
            .env("FLEETREG_MASTER_KEY", SOME_KEY),
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("no database"), "{}", out.stderr);
    assert!(!dir.join("fleetreg.db").exists());
}

#[test]
fn rotate_master_key_then_serve_with_both_keys_not_the_old_alone() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path();
    Server::start_with_env(FLEETREG, dir, SERVE_ARGS, &[]).stop();
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
    let out = Run::of(
        fleetreg_in(dir)
            .args(["vault", "status"])
            .env("FLEETREG_MASTER_KEY", &old[0]),
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("does NOT open"), "{}", out.stdout);
    let log = Server::spawn(
        FLEETREG,
        dir,
        SERVE_ARGS,
        &[("FLEETREG_MASTER_KEY", &old[0])],
    )
    .refused();
    assert!(
        log.contains("cannot decrypt the stored credentials"),
        "{log}"
    );
    Server::start_with_env(FLEETREG, dir, SERVE_ARGS, &[]).stop();

    // Keys from the environment: re-wrap only, new key first.
    let both = format!("{},{}", keys[0], keys[1]);
    let out = ok(dir, &["vault", "rotate-master-key", "--rewrap-only"]);
    assert!(out.contains("re-wrapping under the active key"), "{out}");
    let out = Run::of(
        fleetreg_in(dir)
            .args(["vault", "rotate-master-key", "--rewrap-only"])
            .env("FLEETREG_MASTER_KEY", &both),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(key_lines(dir), keys, "the key file is not touched");
}
