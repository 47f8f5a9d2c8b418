//! DESIGN.md's skip rule for a tool or service a test needs: absent, the test
//! prints a `SKIP:` line and passes, unless its `FLEETREG_REQUIRE_…` variable
//! is `1` (CI), where that is a failure.
//!
//! cargo shows a passing test's output only with `--nocapture`, so a skip is
//! also recorded ([`skip`]): when [`SKIP_DIR_ENV`] names a directory (the
//! README's test command, `scripts/test.sh`, makes one per run under
//! `target/fleetreg-skips/`), each skip appends its reason to the file
//! `<test binary>.<test name>.skip` there, and the script ends the run with
//! "N tests skipped" and the reasons.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The environment variable naming the directory skips are recorded in
/// (unset: they are only printed).
pub const SKIP_DIR_ENV: &str = "FLEETREG_SKIP_DIR";

/// The extension of a skip record.
pub const SKIP_RECORD_EXTENSION: &str = "skip";

/// Whether the environment variable `env` is `1`.
pub fn required(env: &str) -> bool {
    std::env::var(env).is_ok_and(|v| v == "1")
}

/// Called when something a test needs is missing (`why`): panics when
/// [`required`]`(env)`, else [`skip`]s with `{why}; {hint}, or set {env}=1 …`.
/// The test then returns.
pub fn skip_or_fail(env: &str, why: &str, hint: &str) {
    if required(env) {
        panic!("{env}=1 but {why}; {hint}");
    }
    skip(&format!(
        "{why}; {hint}, or set {env}=1 to make this a failure"
    ));
}

/// The running test skips (some of) its work because of `why`: prints
/// `SKIP: {why}` to stderr and, under `scripts/test.sh`, records it (see the
/// module documentation). The caller decides whether a skip is allowed (its
/// `FLEETREG_REQUIRE_…` variable); this only makes it visible.
pub fn skip(why: &str) {
    eprintln!("SKIP: {why}");
    if let Some(dir) = std::env::var_os(SKIP_DIR_ENV).filter(|d| !d.is_empty()) {
        if let Err(error) = record_skip(Path::new(&dir), &current_test(), why) {
            eprintln!(
                "warning: cannot record the skip in {}: {error}",
                Path::new(&dir).display()
            );
        }
    }
}

/// Appends `why` (one line) to the record of `test` in `dir`, creating both;
/// returns the record's path.
pub fn record_skip(dir: &Path, test: &str, why: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let name: String = test
        .chars()
        .map(|c| if c == '/' || c.is_control() { '_' } else { c })
        .collect();
    let path = dir.join(format!("{name}.{SKIP_RECORD_EXTENSION}"));
    let line = why.replace(['\n', '\r'], " ");
    // One write of a whole line with O_APPEND: concurrent skips never interleave.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?
        .write_all(format!("{line}\n").as_bytes())?;
    Ok(path)
}

/// The skip records in `dir`: (`<test binary>.<test name>`, the reasons), sorted.
pub fn skip_records(dir: &Path) -> std::io::Result<Vec<(String, Vec<String>)>> {
    let mut records = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == SKIP_RECORD_EXTENSION) {
            let test = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let reasons = std::fs::read_to_string(&path)?
                .lines()
                .map(str::to_owned)
                .collect();
            records.push((test, reasons));
        }
    }
    records.sort();
    Ok(records)
}

/// `<test binary>.<test name>` of the running test: the executable's name
/// without cargo's `-<hash>` suffix, and libtest's name of the test's thread
/// (`module::test`); `unknown-test` when called off that thread.
fn current_test() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| strip_hash(&stem).to_owned())
        .unwrap_or_else(|| "unknown-binary".into());
    let thread = std::thread::current();
    let test = match thread.name() {
        Some(name) if name != "main" && !name.starts_with("tokio-runtime") => name.to_owned(),
        _ => "unknown-test".into(),
    };
    format!("{binary}.{test}")
}

/// `api-0123456789abcdef` → `api` (cargo's suffix of a test executable).
fn strip_hash(stem: &str) -> &str {
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            name
        }
        _ => stem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_is_recorded_under_its_binary_and_test() {
        let dir = tempfile::tempdir().unwrap();
        let test = current_test();
        // This thread is libtest's, named after the test.
        assert!(
            test.ends_with(".require::tests::a_skip_is_recorded_under_its_binary_and_test"),
            "{test}"
        );
        assert!(test.starts_with("fleetreg_testkit."), "{test}");
        let path = record_skip(dir.path(), &test, "redis-server is missing\n(apt-get)").unwrap();
        record_skip(dir.path(), &test, "and a second reason").unwrap();
        record_skip(dir.path(), "api.redis::other", "PostgreSQL unreachable").unwrap();
        assert_eq!(
            path,
            dir.path().join(format!("{test}.skip")),
            "one file per binary and test"
        );
        let records = skip_records(dir.path()).unwrap();
        assert_eq!(
            records,
            vec![
                (
                    "api.redis::other".to_owned(),
                    vec!["PostgreSQL unreachable".to_owned()]
                ),
                (
                    test,
                    vec![
                        "redis-server is missing (apt-get)".to_owned(),
                        "and a second reason".to_owned()
                    ]
                ),
            ]
        );
    }

    #[test]
    fn skip_records_into_the_directory_the_runner_names() {
        // Through the environment, as scripts/test.sh sets it; in a child
        // process (this test binary running the test below) so that this
        // process's environment stays untouched.
        let dir = tempfile::tempdir().unwrap();
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "require::tests::child_skips", "--nocapture"])
            .env(SKIP_DIR_ENV, dir.path())
            .env(CHILD_ENV, "1")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("SKIP: the child's tool is missing"),
            "{stderr}"
        );
        let records = skip_records(dir.path()).unwrap();
        assert_eq!(records.len(), 1, "{records:?}");
        assert!(
            records[0].0.ends_with(".require::tests::child_skips"),
            "{records:?}"
        );
        assert_eq!(records[0].1, vec!["the child's tool is missing".to_owned()]);
    }

    /// Skips when run as the child of
    /// [`skip_records_into_the_directory_the_runner_names`]; passes otherwise.
    #[test]
    fn child_skips() {
        if std::env::var_os(CHILD_ENV).is_some() {
            skip("the child's tool is missing");
        }
    }

    const CHILD_ENV: &str = "FLEETREG_TESTKIT_SKIP_CHILD";

    #[test]
    fn cargo_hashes_are_stripped() {
        assert_eq!(strip_hash("api-0123456789abcdef"), "api");
        assert_eq!(
            strip_hash("fleetreg_testkit-89ab0123456789ab"),
            "fleetreg_testkit"
        );
        assert_eq!(strip_hash("no-hash-here"), "no-hash-here");
    }
}
