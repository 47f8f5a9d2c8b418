//! Progress on long operations (`client import`, `vault rotate-master-key`,
//! `bench`'s seeding): drawn on stderr when it is a terminal — here a pseudo
//! terminal from util-linux's `script` — and nothing of it when stderr is
//! piped, as in scripts, logs and every other test.

use crate::common::{ADMIN_TOKEN, BIN, FLEETREG};
use fleetreg_testkit::spawn::{Run, Server};
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

/// Nothing a progress bar draws: no `message`, no carriage return, no escape
/// sequence.
fn assert_no_progress(run: &Run, message: &str) {
    for drawn in [message, "\r", "\u{1b}["] {
        assert!(
            !run.stderr.contains(drawn),
            "progress drawn on a pipe ({drawn:?}):\n{}",
            run.stderr
        );
    }
}

/// `fleetreg ARGS` (with `env`) in `dir` under `script`, its stdout and
/// stderr on one pseudo terminal; what it wrote there. `None` (after a skip
/// line) without `script`.
fn on_a_terminal(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        fleetreg_testkit::skip(
            "`script` (util-linux) is missing: progress on a terminal unchecked",
        );
        return None;
    }
    let quoted: Vec<String> = std::iter::once(BIN)
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    // The environment of the tests' own runs (FLEETREG_* cleared, a context-free
    // config dir), then `env`.
    let command = FLEETREG.command_in(dir);
    let mut script = Command::new("script");
    script.args(["--quiet", "--return", "--command"]);
    script.arg(quoted.join(" ")).arg("/dev/null");
    script.current_dir(dir);
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => script.env(key, value),
            None => script.env_remove(key),
        };
    }
    for (key, value) in env {
        script.env(key, value);
    }
    let output = script.output().expect("run script");
    let all = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{args:?} on a terminal: {all}");
    Some(all)
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/registry.yml")
}

#[test]
fn client_import_spins_only_on_a_terminal() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "progress.db");
    let file = example();
    let file = file.to_str().unwrap();
    let piped = server.ok_run(&["client", "import", file, "--dry-run"]);
    assert_no_progress(&piped, "clients from");
    let piped = server.ok_run(&["client", "import", file]);
    assert_no_progress(&piped, "importing");
    assert!(piped.stdout.contains("4 created"), "{}", piped.stdout);

    let Some(shown) = on_a_terminal(
        dir.path(),
        &["client", "import", file],
        &[("FLEETREG_URL", &server.url)],
    ) else {
        return;
    };
    assert!(
        shown.contains("importing 4 clients from"),
        "no spinner on a terminal:\n{shown}"
    );
    // Cleared before the result is printed.
    assert!(shown.contains("4 unchanged"), "{shown}");
}

#[test]
fn vault_rotation_draws_a_bar_only_on_a_terminal() {
    let dir = TempDir::new().unwrap();
    let args = ["--listen", "127.0.0.1:0", "--no-health-checks"];
    Server::start_with_env(FLEETREG, dir.path(), &args, &[]).stop();
    let piped = Run::of(
        FLEETREG
            .command_in(dir.path())
            .args(["vault", "rotate-master-key"]),
    );
    assert_eq!(piped.code, 0, "{}", piped.all());
    assert_no_progress(&piped, "re-wrapping");

    let Some(shown) = on_a_terminal(dir.path(), &["vault", "rotate-master-key"], &[]) else {
        return;
    };
    assert!(
        shown.contains("re-wrapping credentials ["),
        "no bar on a terminal:\n{shown}"
    );
    assert!(shown.contains("new active key"), "{shown}");
}

#[test]
fn bench_seeding_draws_a_bar_only_on_a_terminal() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "bench.db");
    let seed = |clusters: &'static str| {
        vec![
            "bench",
            "--token",
            ADMIN_TOKEN,
            "--scenario",
            "seed",
            "--clusters",
            clusters,
        ]
    };
    let piped = server.ok_run(&seed("20"));
    assert_no_progress(&piped, "seed: registering clusters [");
    assert!(
        piped.stderr.contains("seed: registering 20 clusters"),
        "{}",
        piped.stderr
    );

    let Some(shown) = on_a_terminal(dir.path(), &seed("60"), &[("FLEETREG_URL", &server.url)])
    else {
        return;
    };
    assert!(
        shown.contains("seed: registering clusters ["),
        "no bar on a terminal:\n{shown}"
    );
}
