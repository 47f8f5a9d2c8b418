//! The edge node check over HTTPS against a real TLS server (the
//! simulator's, whose certificate covers `localhost` and `127.0.0.1` and is
//! signed by a CA of its own).

use fleetreg_probe::{EgressPolicy, NodeChecker, NodeTarget};
use fleetreg_sim::SpawnedSim;
use std::time::Duration;

#[tokio::test]
async fn an_https_node_verifies_against_the_ca_file_and_not_without_it() {
    let sim = SpawnedSim::start_tls().await.unwrap();
    let target = NodeTarget {
        https: true,
        address: sim.addr.ip(),
        port: sim.addr.port(),
        path: "/version".into(),
        host: Some("localhost".into()),
    };
    let timeout = Duration::from_secs(5);

    let trusting = NodeChecker::new(EgressPolicy::default(), sim.ca_pem()).unwrap();
    let check = trusting.check(&target, timeout).await;
    assert!(check.passed(), "{check:?}");
    assert!(check.status.is_some_and(|s| s < 500), "{check:?}");

    let roots_only = NodeChecker::new(EgressPolicy::default(), None).unwrap();
    let check = roots_only.check(&target, timeout).await;
    assert!(!check.passed() && !check.upstream_failed(), "{check:?}");
    let error = check.error.unwrap_or_default();
    assert!(
        error.starts_with(&format!("TLS with {}: ", sim.addr)),
        "{error}"
    );

    let not_a_bundle = NodeChecker::new(EgressPolicy::default(), Some("not PEM"));
    assert!(not_a_bundle.is_err());
}
