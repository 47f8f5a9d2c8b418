//! `fleetreg audit …` as a user drives it: the real `fleetreg serve` writes an
//! audit log (SQLite in a temporary directory, key and head files beside it);
//! `audit list` reads it over HTTP; after the server stops, `audit verify`
//! checks it from the database: exit 0 untouched, 2 with a wrong key, after the
//! tail is cut off (the head file) and after an entry is edited, 1 when it
//! cannot check at all.

use crate::common::{fleetreg_in, FLEETREG};
use fleetreg_testkit::spawn::{Run, Server};
use serde_json::Value;
use std::path::Path;

/// A master key that is not the server's (32 bytes of 7, base64).
const OTHER_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

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
    let server = Server::start(FLEETREG, dir, "fleetreg.db");
    for name in ["audited-one", "audited-two"] {
        let url = format!("https://api.{name}.example.com:6443");
        server.ok(&["cluster", "register", name, "--api-server-url", &url]);
    }
    server.ok(&["cluster", "update", "audited-one", "--region", "eu-1"]);

    let page: Value =
        serde_json::from_str(&server.ok(&["audit", "list", "-o", "json"])).expect("json page");
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
    let one: Value = serde_json::from_str(&server.ok(&[
        "audit",
        "list",
        "--cluster",
        "audited-one",
        "-o",
        "json",
    ]))
    .expect("json page");
    assert_eq!(one["items"].as_array().map(Vec::len), Some(2), "{one}");
    let table = server.ok(&["audit", "list", "--action", "cluster.update"]);
    assert!(
        table.contains("ACTION") && table.contains("cluster.update"),
        "{table}"
    );
    assert!(!table.contains("cluster.create"), "{table}");
    let yaml = server.ok(&["audit", "list", "--limit", "1", "-o", "yaml"]);
    assert!(yaml.contains("next_after:"), "{yaml}");
    server.stop();
    assert!(
        dir.join("fleetreg-audit.head").exists(),
        "head file written"
    );

    let verify = |extra: &[&str], env: &[(&str, &str)]| {
        let mut command = fleetreg_in(dir);
        command.args(["audit", "verify", "--database-url", &database_url]);
        command.args(extra);
        for (key, value) in env {
            command.env(key, value);
        }
        Run::of(&mut command)
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
    let no_db = Run::of(
        fleetreg_in(dir)
            .args(["audit", "verify", "--database-url"])
            .arg(format!("sqlite://{}", missing.display())),
    );
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
