//! The bounded fuzz run of docs/FUZZING.md: every libFuzzer target in `fuzz/`
//! runs for a few seconds from its seed corpus, through `scripts/fuzz.sh` with
//! its short-run profile, and a crash, a hang or a failed property fails this
//! test. Building the instrumented tree takes minutes, so it runs when
//! `FLEETREG_REQUIRE_FUZZ=1` (CI sets it) and otherwise prints a `SKIP` line.

use fleetreg_testkit::required;
use std::path::Path;
use std::process::Command;

const REQUIRE: &str = "FLEETREG_REQUIRE_FUZZ";
/// Seconds each target runs.
const SECONDS_PER_TARGET: &str = "10";

#[test]
fn every_fuzz_target_runs_without_a_crash() {
    if !required(REQUIRE) {
        fleetreg_testkit::skip(&format!(
            "the bounded fuzz run builds an instrumented copy of the tree (minutes); \
             set {REQUIRE}=1 to run it, or run scripts/fuzz.sh"
        ));
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new("bash")
        .arg(root.join("scripts/fuzz.sh"))
        .args([SECONDS_PER_TARGET, "fuzz-ci"])
        // The outer `cargo test`'s settings are not the fuzz workspace's.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("scripts/fuzz.sh runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scripts/fuzz.sh failed ({}):\n{stdout}\n{}",
        output.status,
        tail(&stderr, 60)
    );
    // Every target the fuzz package declares ran and reported its totals.
    let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
    let targets: Vec<&str> = manifest
        .lines()
        .filter_map(|line| line.strip_prefix("name = \"")?.strip_suffix('"'))
        .filter(|name| *name != "fleetreg-fuzz")
        .collect();
    assert!(targets.len() >= 6, "fuzz targets: {targets:?}");
    for target in &targets {
        assert!(
            stdout.contains(&format!("== {target}: {SECONDS_PER_TARGET}s")),
            "{target} did not run:\n{stdout}"
        );
    }
    let totals: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("stat::number_of_executed_units"))
        .collect();
    eprintln!("executions per target, in order {targets:?}: {totals:?}");
    let runs = totals.len();
    assert_eq!(
        runs,
        targets.len(),
        "libFuzzer totals:\n{}",
        tail(&stderr, 60)
    );
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
