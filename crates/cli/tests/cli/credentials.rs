//! `fleetreg credentials …` as a user drives it: the real `fleetreg serve` (a
//! temporary SQLite file) and a simulated cluster that requires credentials;
//! store from a kubeconfig file the simulator hands out, rotate from stdin,
//! validate, a refused upload with its per-component failures, the expiring
//! list, delete — and no secret in anything the CLI or the server printed.

use crate::common::{BIN, FLEETREG};
use fleetreg_sim::{AddToken, AuthSpec, ClusterSpec, KubeconfigAuth, SpawnedSim};
use fleetreg_testkit::spawn::Server;
use std::process::Command;

/// The bearer token inside a kubeconfig the simulator rendered.
fn token_in(kubeconfig: &str) -> String {
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("token:"))
        .map(|t| t.trim().trim_matches('"').trim_matches('\'').to_owned())
        .expect("a token in the kubeconfig")
}

#[test]
fn store_rotate_validate_expiring_delete_without_leaking_secrets() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sim = runtime.block_on(SpawnedSim::start()).expect("sim");
    let admin = sim.admin();
    let auth = AuthSpec {
        required: true,
        prometheus_tokens: vec!["prom-secret-marker".into()],
        ..AuthSpec::default()
    };
    let view = runtime
        .block_on(admin.create_cluster_with_auth("locked", ClusterSpec::default(), auth))
        .expect("sim cluster");
    let first_kubeconfig = runtime
        .block_on(admin.kubeconfig("locked", "fleetreg", KubeconfigAuth::Token))
        .expect("kubeconfig");
    let second_kubeconfig = runtime
        .block_on(admin.kubeconfig("locked", "fleetreg-next", KubeconfigAuth::Token))
        .expect("kubeconfig");
    let first_token = token_in(&first_kubeconfig);
    let second_token = token_in(&second_kubeconfig);
    runtime
        .block_on(admin.add_token(
            "locked",
            &AddToken {
                token: Some("plain-token-marker".into()),
                ..AddToken::default()
            },
        ))
        .expect("token");

    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(FLEETREG, dir.path(), "fleetreg.db");
    let mut printed = String::new();
    let api_server_url = view.api_server_url.clone();
    let prometheus_url = view.prometheus_url.clone();
    let register = server.ok_run(&[
        "cluster",
        "register",
        "locked",
        "--api-server-url",
        &api_server_url,
        "--prometheus-url",
        &prometheus_url,
    ]);
    printed.push_str(&register.all());

    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path.display().to_string()
    };
    let kubeconfig = write("locked.kubeconfig", &first_kubeconfig);
    let prom = write("prom.token", "prom-secret-marker\n");

    // Store from the kubeconfig file: each component's result is shown.
    let stored = server.ok_run(&[
        "credentials",
        "store",
        "locked",
        "--kubeconfig",
        &kubeconfig,
        "--prometheus-token-file",
        &prom,
        "--expires-at",
        "2099-01-01T00:00:00Z",
    ]);
    printed.push_str(&stored.all());
    assert!(
        stored
            .stdout
            .contains("credentials stored for cluster locked (version 1)"),
        "{}",
        stored.stdout
    );
    assert!(
        stored.stdout.contains("api_server  success"),
        "{}",
        stored.stdout
    );
    assert!(
        stored.stdout.contains("prometheus  success"),
        "{}",
        stored.stdout
    );
    assert!(
        stored.stdout.contains("2099-01-01T00:00:00"),
        "{}",
        stored.stdout
    );

    // Validate, as a table and as JSON.
    let valid = server.ok_run(&["credentials", "validate", "locked"]);
    printed.push_str(&valid.all());
    assert!(
        valid
            .stdout
            .contains("credentials valid for cluster locked"),
        "{}",
        valid.stdout
    );
    let valid = server.ok_run(&["credentials", "validate", "locked", "-o", "json"]);
    printed.push_str(&valid.all());
    assert_eq!(valid.json()["status"], "valid");

    // Rotate with the next kubeconfig from stdin; expiring within the window.
    let soon = "2000-01-01T00:00:00Z";
    let rotated = server.run_with_stdin(
        &[
            "credentials",
            "rotate",
            "locked",
            "--kubeconfig",
            "-",
            "--prometheus-token-file",
            &prom,
            "--expires-at",
            soon,
            "-o",
            "yaml",
        ],
        &second_kubeconfig,
    );
    printed.push_str(&rotated.all());
    assert_eq!(rotated.code, 0, "{}", rotated.stderr);
    assert!(
        rotated.stdout.contains("status: rotated"),
        "{}",
        rotated.stdout
    );
    assert!(rotated.stdout.contains("version: 2"), "{}", rotated.stdout);

    // Stdin can feed one flag only.
    let twice = server.run_with_stdin(
        &[
            "credentials",
            "rotate",
            "locked",
            "--token-file",
            "-",
            "--prometheus-token-file",
            "-",
        ],
        "x",
    );
    assert_eq!(twice.code, 1);
    assert!(
        twice.stderr.contains("stdin was already read"),
        "{}",
        twice.stderr
    );

    // The expiring list: EXPIRED (its expiry is in the past), in each format.
    let expiring = server.ok_run(&["credentials", "expiring"]);
    printed.push_str(&expiring.all());
    let header = expiring.stdout.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("CLUSTER") && header.contains("AUTH TYPE") && header.contains("STATUS"),
        "{}",
        expiring.stdout
    );
    let row = expiring.stdout.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with("locked"), "{row}");
    assert!(
        row.contains("KUBECONFIG") && row.contains("EXPIRED"),
        "{row}"
    );
    assert!(
        expiring
            .stderr
            .contains("within 7 days: 0 expiring, 1 expired"),
        "{}",
        expiring.stderr
    );
    let list = server.ok_run(&[
        "credentials",
        "expiring",
        "--within-days",
        "30",
        "-o",
        "json",
    ]);
    printed.push_str(&list.all());
    let list = list.json();
    assert_eq!(list["within_days"], 30);
    assert_eq!(list["expired_count"], 1);
    assert_eq!(list["items"][0]["cluster_name"], "locked");
    assert_eq!(list["items"][0]["version"], 2);

    // The cluster's status shows it too.
    let status = server.ok_run(&["cluster", "status", "locked", "-o", "json"]);
    printed.push_str(&status.all());
    assert_eq!(status.json()["credentials"]["expiry"], "EXPIRED");
    let status = server.ok_run(&["cluster", "status", "locked"]);
    assert!(
        status.stdout.contains("Credentials expiry:"),
        "{}",
        status.stdout
    );

    // A token the cluster refuses: CREDENTIALS_INVALID with each component's
    // result; nothing changes.
    let wrong = write("wrong.token", "refused-token-marker\n");
    let refused = server.run(&[
        "credentials",
        "rotate",
        "locked",
        "--token-file",
        &wrong,
        "--prometheus-token-file",
        &prom,
    ]);
    printed.push_str(&refused.all());
    assert_eq!(refused.code, 1, "{}", refused.all());
    let lines: Vec<&str> = refused.stderr.lines().collect();
    assert!(
        lines[0].starts_with("error: CREDENTIALS_INVALID: "),
        "{}",
        refused.stderr
    );
    assert!(
        lines
            .iter()
            .any(|l| l.trim_start().starts_with("api_server") && l.contains("failed: ")),
        "{}",
        refused.stderr
    );
    assert!(
        lines
            .iter()
            .any(|l| l.trim_start().starts_with("prometheus") && l.contains("success")),
        "{}",
        refused.stderr
    );

    // A plain token file works as well (http needs no CA).
    let plain = write("plain.token", "plain-token-marker\n");
    let stored = server.ok_run(&[
        "credentials",
        "store",
        "locked",
        "--token-file",
        &plain,
        "--prometheus-token-file",
        &prom,
    ]);
    printed.push_str(&stored.all());
    assert!(stored.stdout.contains("(version 3)"), "{}", stored.stdout);
    assert!(
        stored.stdout.contains("expires at: unknown"),
        "{}",
        stored.stdout
    );

    // Delete; then there is nothing to validate.
    let deleted = server.ok_run(&["credentials", "delete", "locked"]);
    printed.push_str(&deleted.all());
    assert!(deleted
        .stdout
        .starts_with("credentials of cluster locked deleted"));
    let gone = server.run(&["credentials", "validate", "locked"]);
    assert_eq!(gone.code, 1);
    assert!(
        gone.stderr.starts_with("error: CREDENTIALS_NOT_FOUND: "),
        "{}",
        gone.stderr
    );
    let missing = server.run(&["credentials", "delete", "no-such-cluster"]);
    assert!(
        missing.stderr.starts_with("error: CLUSTER_NOT_FOUND: "),
        "{}",
        missing.stderr
    );

    // No secret anywhere the CLI printed, nor in the server's log.
    let log = server.log_text();
    for secret in [
        first_token.as_str(),
        second_token.as_str(),
        "prom-secret-marker",
        "plain-token-marker",
        "refused-token-marker",
    ] {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
        assert!(!log.contains(secret), "{secret} logged:\n{log}");
    }
    drop(sim);
}

#[test]
fn secrets_cannot_be_given_as_values() {
    // Every cluster secret is a FILE; there is no flag that takes one inline.
    for flag in [
        "--prometheus-token",
        "--tempo-token",
        "--loki-token",
        "--kubeconfig-data",
    ] {
        let run = Command::new(BIN)
            .args([
                "credentials",
                "store",
                "c1",
                "--token-file",
                "t",
                flag,
                "s3cret",
            ])
            .output()
            .expect("run fleetreg");
        assert_eq!(run.status.code(), Some(2), "{flag} was accepted");
    }
    let help = Command::new(BIN)
        .args(["credentials", "store", "--help"])
        .output()
        .expect("run fleetreg");
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--kubeconfig <FILE>",
        "--token-file <FILE>",
        "--ca-cert <FILE>",
        "--prometheus-token-file <FILE>",
        "--tempo-token-file <FILE>",
        "--loki-token-file <FILE>",
    ] {
        assert!(text.contains(flag), "{flag} missing: {text}");
    }
}

// Fails before: the README's walkthrough wrote the kubeconfig, a live token,
// with the shell's umask (0644) and nothing kept it out of git.
#[cfg(unix)]
#[test]
fn the_walkthrough_writes_its_kubeconfig_private_and_git_ignored() {
    use std::os::unix::fs::PermissionsExt;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let line = readme
        .lines()
        .find(|l| l.contains("$F/kubeconfig") && l.contains("edge-a.kubeconfig"))
        .expect("the walkthrough fetches edge-a.kubeconfig");
    let command = line.split(" # ").next().unwrap_or(line).trim();

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sim = runtime.block_on(SpawnedSim::start()).expect("sim");
    runtime
        .block_on(
            sim.admin()
                .create_cluster("sim-00000", ClusterSpec::default()),
        )
        .expect("sim cluster");
    let dir = tempfile::tempdir().expect("tempdir");
    let run = Command::new("sh")
        .arg("-c")
        .arg(format!("umask 022; {command}"))
        .env("F", format!("{}/admin/clusters/sim-00000", sim.base_url()))
        .current_dir(dir.path())
        .output()
        .expect("sh");
    assert!(run.status.success(), "{command}: {run:?}");
    let file = dir.path().join("edge-a.kubeconfig");
    let text = std::fs::read_to_string(&file).expect("kubeconfig written");
    assert!(text.contains("token"), "{text}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{command} wrote mode {mode:o}");

    let ignored = std::fs::read_to_string(root.join(".gitignore")).expect(".gitignore");
    assert!(
        ignored.lines().any(|l| l.trim() == "*.kubeconfig"),
        ".gitignore keeps kubeconfigs out of git"
    );
}
