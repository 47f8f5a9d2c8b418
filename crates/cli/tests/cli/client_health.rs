//! `fleetreg client health NAME` and the live section of `client status`,
//! against a real server and a local site on loopback.

use crate::common::{dead_url, FLEETREG};
use fleetreg_testkit::spawn::Server;
use std::io::{Read, Write};
use std::net::TcpListener;

/// A loopback site answering every request `200 OK` (on a thread of its own,
/// for the test's lifetime).
fn site() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut chunk = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    url
}

#[test]
fn health_and_status_show_each_url_checked_now() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "client-health.db");
    let registry = dir.path().join("registry.yml");
    let (up, down) = (site(), dead_url());
    std::fs::write(
        &registry,
        format!(
            "clients:\n  acme:\n    status: deployed\n    urls:\n      nextcloud: \"{up}\"\n      authentik: \"{down}\"\n  idle:\n    status: maintenance\n    urls:\n      nextcloud: \"{up}\"\n"
        ),
    )
    .unwrap();
    server.ok(&["client", "import", registry.to_str().unwrap()]);

    let health = server.json(&["client", "health", "acme"]);
    assert_eq!(health["state"], "DEGRADED", "{health}");
    assert_eq!(health["urls"][1]["app"], "nextcloud");
    assert_eq!(health["urls"][1]["status_code"], 200);
    assert_eq!(health["urls"][0]["outcome"], "CONNECTION_ERROR");

    let table = server.ok(&["client", "health", "acme"]);
    for part in [
        "State:       DEGRADED\n",
        "Reason:      1 of 2 URLs failed: authentik (CONNECTION_ERROR)\n",
        "nextcloud  OK",
    ] {
        assert!(table.contains(part), "{part:?} in\n{table}");
    }
    let csv = server.ok(&["client", "health", "acme", "-o", "csv"]);
    assert!(
        csv.starts_with("client,state,app,url,healthy,outcome,status_code"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 3, "{csv}");

    let status = server.ok(&["client", "status", "acme"]);
    assert!(
        status.contains("\nLive health (checked now):\n  DEGRADED: 1 of 2 URLs failed"),
        "{status}"
    );
    let idle = server.ok(&["client", "status", "idle"]);
    assert!(
        idle.contains("  NOT_CHECKED: the client is maintenance"),
        "{idle}"
    );

    server
        .run(&["client", "health", "nobody"])
        .assert_error("CLIENT_NOT_FOUND");
}
