//! Repository hygiene checked by ordinary tests: crate layering and that every
//! public error code is produced by some test.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// DESIGN.md's crate table as explicit edges: each crate and the workspace
/// crates its `[dependencies]` may name.
const ALLOWED: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("store", &["model"]),
    ("vault", &[]),
    ("probe", &["model"]),
    ("server", &["model", "store", "vault", "probe"]),
    ("sim", &["model"]),
    ("bench", &["model", "sim"]),
    (
        "cli",
        &["model", "store", "vault", "probe", "server", "sim", "bench"],
    ),
    ("testkit", &["model"]),
];

/// What `[dev-dependencies]` may name beyond the normal edges: the simulated
/// clusters and the test kit (which nothing may depend on otherwise).
const DEV_ONLY: &[&str] = &["sim", "testkit"];

fn package_name(dir: &str) -> String {
    if dir == "cli" {
        "fleetreg".into()
    } else {
        format!("fleetreg-{dir}")
    }
}

/// The workspace crates a manifest names, as `(section, package)`.
fn fleetreg_dependencies(manifest: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut deps = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        if line.starts_with("fleetreg") {
            let name = line.split(['.', ' ', '=']).next().unwrap().to_owned();
            deps.push((section.clone(), name));
        }
    }
    deps
}

/// Whether any `.rs` file below `dirs` (relative to `krate`) mentions `ident`.
fn mentions(krate: &Path, dirs: &[&str], ident: &str) -> bool {
    let mut text = String::new();
    for dir in dirs {
        let path = krate.join(dir);
        if path.exists() {
            read_tree(&path, &mut text);
        }
    }
    text.contains(ident)
}

#[test]
fn crates_depend_only_on_allowed_crates_and_use_what_they_declare() {
    let crates = root().join("crates");
    for entry in std::fs::read_dir(&crates).unwrap() {
        let dir = entry.unwrap().file_name().into_string().unwrap();
        let allowed = ALLOWED
            .iter()
            .find(|(name, _)| *name == dir)
            .unwrap_or_else(|| panic!("crates/{dir} is not placed in DESIGN.md's crate table"))
            .1;
        let krate = crates.join(&dir);
        let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
        for (section, dep) in fleetreg_dependencies(&manifest) {
            let target = dep.trim_start_matches("fleetreg-");
            let ident = dep.replace('-', "_");
            match section.as_str() {
                "[dependencies]" => {
                    assert!(
                        allowed.contains(&target),
                        "crates/{dir} depends on {dep}, which DESIGN.md does not allow"
                    );
                    assert!(
                        mentions(&krate, &["src"], &ident),
                        "crates/{dir} declares {dep} but its src/ never uses {ident}"
                    );
                }
                "[dev-dependencies]" => {
                    assert!(
                        allowed.contains(&target) || DEV_ONLY.contains(&target),
                        "crates/{dir} dev-depends on {dep}, which DESIGN.md does not allow"
                    );
                    assert!(
                        mentions(&krate, &["src", "tests", "benches"], &ident),
                        "crates/{dir} declares {dep} for tests but none uses {ident}"
                    );
                }
                other => panic!("crates/{dir} names {dep} in {other}"),
            }
        }
    }
}

#[test]
fn the_edge_table_is_a_layering() {
    // Every allowed edge points to a crate earlier in the table: no cycles.
    for (position, (name, deps)) in ALLOWED.iter().enumerate() {
        for dep in *deps {
            assert!(
                ALLOWED[..position].iter().any(|(above, _)| above == dep),
                "{name} may depend on {dep}, which is not above it"
            );
        }
    }
    assert_eq!(package_name("cli"), "fleetreg");
}

/// Codes no endpoint can produce yet, with the issue that brings them.
const NOT_YET_PRODUCED: &[&str] = &[
    "SERVICE_UNAVAILABLE", // only when the store is down
    "INTERNAL_ERROR",      // only on unexpected failures
];

fn read_tree(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_tree(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tidy.rs")
        {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// Whether `"CODE"` stands inside an assertion somewhere in `tests`: the
/// statement around the literal (back to the previous `;`, `{` or `}`) calls
/// an `assert…` macro or helper.
fn asserted(tests: &str, code: &str) -> bool {
    let literal = format!("\"{code}\"");
    tests.match_indices(&literal).any(|(at, _)| {
        let before = &tests[..at];
        let start = before.rfind([';', '{', '}']).map_or(0, |i| i + 1);
        before[start..].contains("assert")
    })
}

#[test]
fn every_error_code_has_a_test_that_produces_it() {
    let source = std::fs::read_to_string(root().join("crates/model/src/error.rs")).unwrap();
    let codes: Vec<&str> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ErrorCode::"))
        .filter_map(|l| {
            l.split_once("=> \"")
                .map(|(_, rest)| rest.trim_end_matches("\","))
        })
        .collect();
    assert!(codes.len() >= 15, "parsed the code table: {codes:?}");
    let mut tests = String::new();
    for dir in ["crates/server/tests", "crates/cli/tests"] {
        let path = root().join(dir);
        if path.exists() {
            read_tree(&path, &mut tests);
        }
    }
    for code in codes {
        let tested = asserted(&tests, code);
        if NOT_YET_PRODUCED.contains(&code) {
            assert!(
                !tested || matches!(code, "SERVICE_UNAVAILABLE" | "INTERNAL_ERROR"),
                "{code} is tested now: remove it from NOT_YET_PRODUCED"
            );
        } else {
            assert!(tested, "no test produces {code}");
        }
    }
}
