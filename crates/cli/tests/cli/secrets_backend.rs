//! `credentials.backend: kubernetes` as a user configures it: `serve` and
//! `vault rotate-master-key --config` refuse, naming what is missing, when the
//! file selects the Kubernetes backend without a hub URL or token.

use crate::common::BIN;
use std::path::Path;
use std::process::{Command, Stdio};

/// `fleetreg ARGS` in `dir` with no FLEETREG_* from the environment but `env`;
/// returns the exit code and stderr.
fn fleetreg(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("FLEETREG_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command.args(args).envs(env.iter().copied());
    command.current_dir(dir).stdin(Stdio::null());
    let output = command.output().expect("run fleetreg");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn write_config(dir: &Path, credentials: &str) -> String {
    let path = dir.join("fleetreg.yaml");
    std::fs::write(
        &path,
        format!("cluster_registry:\n  database_url: sqlite://fleetreg.db\n  credentials:\n{credentials}"),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn serve_and_vault_refuse_an_incomplete_kubernetes_backend() {
    let dir = tempfile::tempdir().unwrap();
    let env = [(
        "FLEETREG_MASTER_KEY",
        "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
    )];
    let config = write_config(dir.path(), "    backend: kubernetes\n");
    let (code, stderr) = fleetreg(dir.path(), &["serve", "--config", &config], &env);
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("credentials.kubernetes.api_url is not set"),
        "{stderr}"
    );
    assert!(!dir.path().join("fleetreg.db").exists(), "nothing created");

    let config = write_config(
        dir.path(),
        "    backend: kubernetes\n    kubernetes:\n      api_url: https://127.0.0.1:9\n",
    );
    let (code, stderr) = fleetreg(dir.path(), &["serve", "--config", &config], &env);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("FLEETREG_HUB_TOKEN"), "{stderr}");
    let (code, stderr) = fleetreg(
        dir.path(),
        &[
            "vault",
            "rotate-master-key",
            "--rewrap-only",
            "--config",
            &config,
        ],
        &env,
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("FLEETREG_HUB_TOKEN"), "{stderr}");

    // With a token from the environment the hub is tried (and is not there).
    let env = [env[0], ("FLEETREG_HUB_TOKEN", "hub-token-marker-77")];
    let (code, stderr) = fleetreg(dir.path(), &["serve", "--config", &config], &env);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("hub unreachable"), "{stderr}");
    assert!(!stderr.contains("hub-token-marker-77"), "{stderr}");
}
