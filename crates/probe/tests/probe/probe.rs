//! The probe against the simulator, in-process on a random port: every score
//! deduction, every transition of seed 8.2 (faults flipped through the admin API),
//! timeouts, credentials and discovery.

use fleetreg_model::{
    Capabilities, CheckResults, ClusterState, Connectivity, Endpoints, ObservabilityCapabilities,
};
use fleetreg_probe::{ClusterCredential, EgressPolicy, Prober, Target};
use fleetreg_sim::{
    ClusterSpec, ClusterView, FaultsPatch, ObservabilitySpec, Service, SimAdmin, SpawnedSim,
};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(2);

fn target(view: &ClusterView, prometheus: bool, tempo: bool, loki: bool) -> Target {
    Target {
        api_server_url: view.api_server_url.clone(),
        endpoints: Endpoints {
            prometheus_url: prometheus.then(|| view.prometheus_url.clone()),
            tempo_url: tempo.then(|| view.tempo_url.clone()),
            loki_url: loki.then(|| view.loki_url.clone()),
        },
        credential: None,
    }
}

async fn start(name: &str, spec: ClusterSpec) -> (SpawnedSim, SimAdmin, ClusterView) {
    let sim = SpawnedSim::start().await.unwrap();
    let admin = sim.admin();
    let view = admin.create_cluster(name, spec).await.unwrap();
    (sim, admin, view)
}

fn faults(f: impl FnOnce(&mut FaultsPatch)) -> FaultsPatch {
    let mut patch = FaultsPatch {
        api_down: Some(false),
        api_latency_ms: Some(0),
        prometheus_down: Some(false),
        tempo_down: Some(false),
        loki_down: Some(false),
    };
    f(&mut patch);
    patch
}

#[tokio::test]
async fn every_score_deduction() {
    let (_sim, admin, view) = start("score", ClusterSpec::default()).await;
    let prober = Prober::new(EgressPolicy::default()).unwrap();
    let all = target(&view, true, true, true);
    let cases: [(&str, FaultsPatch, i32); 6] = [
        ("healthy", faults(|_| {}), 100),
        ("API down", faults(|f| f.api_down = Some(true)), 50),
        (
            "Prometheus down",
            faults(|f| f.prometheus_down = Some(true)),
            80,
        ),
        ("Tempo down", faults(|f| f.tempo_down = Some(true)), 85),
        ("Loki down", faults(|f| f.loki_down = Some(true)), 85),
        (
            "everything down",
            FaultsPatch {
                api_down: Some(true),
                prometheus_down: Some(true),
                tempo_down: Some(true),
                loki_down: Some(true),
                api_latency_ms: Some(0),
            },
            0,
        ),
    ];
    for (what, patch, score) in cases {
        admin.set_faults("score", &patch).await.unwrap();
        let report = prober.check(&all, TIMEOUT).await;
        let status = report.status(ClusterState::Unknown, fleetreg_model::now());
        assert_eq!(status.health_score, score, "{what}: {report:?}");
    }

    // Unconfigured endpoints cost nothing and are never called.
    admin
        .set_faults(
            "score",
            &FaultsPatch {
                prometheus_down: Some(true),
                tempo_down: Some(true),
                loki_down: Some(true),
                api_down: Some(false),
                api_latency_ms: None,
            },
        )
        .await
        .unwrap();
    let after = admin.log_end().await.unwrap();
    let report = prober
        .check(&target(&view, false, false, false), TIMEOUT)
        .await;
    assert_eq!(
        report.results,
        CheckResults {
            api_server: true,
            prometheus: None,
            tempo: None,
            loki: None
        }
    );
    assert_eq!(
        report
            .status(ClusterState::Unknown, fleetreg_model::now())
            .health_score,
        100
    );
    let log = admin.requests(after, Some("score")).await.unwrap();
    assert!(
        log.items.iter().all(|e| e.service == Service::ApiServer),
        "{:?}",
        log.items
    );
}

#[tokio::test]
async fn every_transition_of_seed_8_2() {
    let (_sim, admin, view) = start("states", ClusterSpec::default()).await;
    let prober = Prober::new(EgressPolicy::default()).unwrap();
    let target = target(&view, true, true, true);
    let degraded = || faults(|f| f.tempo_down = Some(true));
    let offline = || faults(|f| f.api_down = Some(true));
    let online = || faults(|_| {});
    use ClusterState::*;
    let steps = [
        (online(), Online),     // UNKNOWN → ONLINE
        (degraded(), Degraded), // ONLINE → DEGRADED
        (online(), Online),     // DEGRADED → ONLINE
        (offline(), Offline),   // ONLINE → OFFLINE
        (degraded(), Degraded), // OFFLINE → DEGRADED
        (offline(), Offline),   // DEGRADED → OFFLINE
        (online(), Online),     // OFFLINE → ONLINE
    ];
    let mut state = Unknown;
    for (patch, expected) in steps {
        admin.set_faults("states", &patch).await.unwrap();
        let status = prober
            .check(&target, TIMEOUT)
            .await
            .status(state, fleetreg_model::now());
        assert_eq!(status.state, expected, "from {state}: {status:?}");
        assert_eq!(
            status.connectivity == Connectivity::Connected,
            expected != Offline
        );
        state = status.state;
    }
    // UNKNOWN → OFFLINE on a first failed check.
    admin.set_faults("states", &offline()).await.unwrap();
    let status = prober
        .check(&target, TIMEOUT)
        .await
        .status(Unknown, fleetreg_model::now());
    assert_eq!(status.state, Offline);
    let reason = status.reason.unwrap();
    assert!(
        reason.starts_with("API server unreachable") && reason.contains("503"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_slow_api_server_is_down_within_the_timeout() {
    let (_sim, admin, view) = start("slow", ClusterSpec::default()).await;
    let prober = Prober::new(EgressPolicy::default()).unwrap();
    admin
        .set_faults("slow", &faults(|f| f.api_latency_ms = Some(5_000)))
        .await
        .unwrap();
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let report = prober
        .check(&target(&view, true, false, false), timeout)
        .await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < timeout + Duration::from_millis(700),
        "took {elapsed:?}"
    );
    assert_eq!(
        report.results,
        CheckResults {
            api_server: false,
            prometheus: Some(true),
            tempo: None,
            loki: None
        }
    );
    assert!(
        report.failures[0].cause.contains("timed out"),
        "{:?}",
        report.failures
    );
    let status = report.status(ClusterState::Online, fleetreg_model::now());
    assert_eq!(
        (status.state, status.health_score),
        (ClusterState::Offline, 50)
    );

    // Latency under the bound is fine.
    admin
        .set_faults("slow", &faults(|f| f.api_latency_ms = Some(50)))
        .await
        .unwrap();
    assert!(
        prober
            .check(&target(&view, true, false, false), timeout)
            .await
            .results
            .api_server
    );
}

#[tokio::test]
async fn the_base_path_is_kept_and_the_token_sent_to_the_api_server_only() {
    let spec = ClusterSpec {
        token: Some("tok-123".into()),
        ..ClusterSpec::default()
    };
    let (_sim, admin, view) = start("auth", spec).await;
    let prober = Prober::new(EgressPolicy::default()).unwrap();
    let anonymous = target(&view, true, false, false);
    let report = prober.check(&anonymous, TIMEOUT).await;
    assert!(!report.results.api_server);
    assert!(
        report.failures[0].cause.contains("401"),
        "{:?}",
        report.failures
    );

    let after = admin.log_end().await.unwrap();
    let credential = ClusterCredential::from_token("tok-123".into(), None, false).unwrap();
    let with_token = anonymous.with_credential(std::sync::Arc::new(credential));
    assert!(prober.check(&with_token, TIMEOUT).await.results.all_pass());
    let log = admin.requests(after, Some("auth")).await.unwrap().items;
    let api = log
        .iter()
        .find(|e| e.service == Service::ApiServer)
        .unwrap();
    assert!(api.path.starts_with("/api/v1/namespaces"), "{api:?}");
    assert_eq!(api.bearer_token.as_deref(), Some("tok-123"));
    let prometheus = log
        .iter()
        .find(|e| e.service == Service::Prometheus)
        .unwrap();
    assert_eq!(
        (prometheus.path.as_str(), prometheus.bearer_token.as_deref()),
        ("/prometheus/-/ready", None)
    );
}

#[tokio::test]
async fn discovery_reports_exactly_what_the_sim_holds() {
    let sim = SpawnedSim::start().await.unwrap();
    let admin = sim.admin();
    let prober = Prober::new(EgressPolicy::default()).unwrap();
    let full = ClusterSpec {
        nodes: 4,
        gpu_count: 12,
        gpu_nodes: 2,
        gpu_type: "NVIDIA-H100-80GB-HBM3".into(),
        gpu_operator: true,
        dcgm: true,
        cnf_namespaces: vec!["du-site1".into(), "upf-core".into(), "other".into()],
        sriov_policies: 2,
        ptp: true,
        observability: ObservabilitySpec {
            prometheus: true,
            thanos: true,
            tempo: true,
            loki: true,
        },
        kubernetes_version: "v1.28.9+416ecaf".into(),
        openshift_version: Some("4.15.12".into()),
        token: None,
        services: Vec::new(),
    };
    let view = admin.create_cluster("full", full).await.unwrap();
    let found = prober
        .discover(&target(&view, true, false, false), TIMEOUT)
        .await
        .unwrap();
    let expected = Capabilities {
        has_gpu_nodes: true,
        gpu_count: 12,
        gpu_types: vec!["NVIDIA-H100-80GB-HBM3".into()],
        has_cnf: true,
        cnf_types: vec!["vDU".into(), "UPF".into()],
        has_sriov: true,
        has_ptp: true,
        observability: ObservabilityCapabilities {
            prometheus: true,
            thanos: true,
            tempo: true,
            loki: true,
        },
        discovered_at: found.capabilities.discovered_at,
    };
    assert_eq!(found.capabilities, expected);
    assert!(found.capabilities.discovered_at.is_some());
    assert_eq!(found.platform_version.as_deref(), Some("4.15.12"));
    assert_eq!(
        (
            found.gpu_evidence.node_gpus,
            found.gpu_evidence.gpu_operator,
            found.gpu_evidence.dcgm_gpus
        ),
        (12, true, Some(12))
    );

    // A bare cluster: the SR-IOV, PTP and ClusterVersion types are absent (404),
    // which is false, not a failure; the version comes from /version.
    let view = admin
        .create_cluster("bare", ClusterSpec::default())
        .await
        .unwrap();
    let found = prober
        .discover(&target(&view, true, false, false), TIMEOUT)
        .await
        .unwrap();
    let expected = Capabilities {
        discovered_at: found.capabilities.discovered_at,
        ..Capabilities::default()
    };
    assert_eq!(found.capabilities, expected);
    assert_eq!(found.platform_version.as_deref(), Some("v1.29.4"));
    assert_eq!(found.gpu_evidence.dcgm_gpus, None);

    // Changing the spec at run time changes what is found; a CNF with only a cu-
    // namespace and one observability component.
    let spec = ClusterSpec {
        cnf_namespaces: vec!["cu-x".into()],
        observability: ObservabilitySpec {
            loki: true,
            ..ObservabilitySpec::default()
        },
        ..ClusterSpec::default()
    };
    admin.set_spec("bare", &spec).await.unwrap();
    let found = prober
        .discover(&target(&view, false, false, false), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(found.capabilities.cnf_types, vec!["vCU".to_owned()]);
    assert_eq!(
        found.capabilities.observability,
        ObservabilityCapabilities {
            loki: true,
            ..ObservabilityCapabilities::default()
        }
    );

    // An unreachable API server fails discovery, with the cause.
    admin
        .set_faults("bare", &faults(|f| f.api_down = Some(true)))
        .await
        .unwrap();
    let error = prober
        .discover(&target(&view, false, false, false), TIMEOUT)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("503"), "{error}");
}

#[tokio::test]
async fn an_invalid_url_is_reported_without_contact() {
    let prober = Prober::new(EgressPolicy::default()).unwrap();
    let target = Target {
        api_server_url: "ftp://example".into(),
        endpoints: Endpoints::default(),
        credential: None,
    };
    let report = prober.check(&target, TIMEOUT).await;
    assert!(!report.results.api_server);
    assert!(
        report.failures[0].cause.contains("invalid URL"),
        "{:?}",
        report.failures
    );
}

#[tokio::test]
async fn lists_are_read_page_by_page() {
    let spec = ClusterSpec {
        nodes: 250,
        gpu_count: 250,
        gpu_nodes: 250,
        gpu_type: "NVIDIA-A100".into(),
        cnf_namespaces: vec!["upf-core".into()],
        ..ClusterSpec::default()
    };
    let (_sim, admin, view) = start("paged", spec).await;
    let prober = Prober::new(EgressPolicy::default()).unwrap();
    let found = prober
        .discover(&target(&view, false, false, false), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(found.gpu_evidence.node_gpus, 250, "every page counted");
    assert_eq!(found.capabilities.gpu_types, vec!["NVIDIA-A100".to_owned()]);
    assert_eq!(found.capabilities.cnf_types, vec!["UPF".to_owned()]);
    let log = admin.requests(0, Some("paged")).await.unwrap().items;
    let node_pages: Vec<&str> = log
        .iter()
        .map(|e| e.path.as_str())
        .filter(|p| p.starts_with("/api/v1/nodes"))
        .collect();
    assert_eq!(node_pages.len(), 3, "{node_pages:?}");
    assert!(
        node_pages.iter().all(|p| p.contains("limit=100")),
        "{node_pages:?}"
    );
    assert_eq!(
        node_pages
            .iter()
            .filter(|p| p.contains("continue="))
            .count(),
        2,
        "{node_pages:?}"
    );
}

#[tokio::test]
async fn an_oversized_answer_fails_every_call_unread() {
    let spec = ClusterSpec {
        observability: ObservabilitySpec {
            prometheus: true,
            ..ObservabilitySpec::default()
        },
        ..ClusterSpec::default()
    };
    let (_sim, admin, view) = start("huge", spec).await;
    let limit = 256 * 1024;
    let prober = Prober::new(EgressPolicy::default())
        .unwrap()
        .with_max_response_bytes(limit);
    let all = target(&view, true, false, false);
    // A default cluster fits well under the limit, page by page.
    assert!(prober.check(&all, TIMEOUT).await.results.all_pass());
    prober
        .discover(&all, Duration::from_secs(10))
        .await
        .unwrap();

    admin.set_huge_body("huge", 64 * 1024 * 1024).await.unwrap();
    let started = Instant::now();
    let report = prober.check(&all, Duration::from_secs(10)).await;
    assert!(!report.results.api_server && report.results.prometheus == Some(false));
    for failure in &report.failures {
        assert!(
            failure.cause.ends_with(&format!(
                "response body too large: more than the {limit}-byte limit \
                 (health_check.max_response_bytes)"
            )),
            "{failure:?}"
        );
    }
    let error = prober
        .discover(&all, Duration::from_secs(10))
        .await
        .unwrap_err();
    match &error {
        fleetreg_probe::Error::TooLarge { source, .. } => assert_eq!(source.limit, limit),
        other => panic!("{other:?}"),
    }
    assert!(
        error.to_string().contains("response body too large"),
        "{error}"
    );
    let credential = ClusterCredential::from_token("tok".into(), None, false).unwrap();
    let error = prober
        .request_token(
            &all.clone().with_credential(std::sync::Arc::new(credential)),
            "fleet-system",
            "fleetreg",
            3600,
            Duration::from_secs(10),
        )
        .await;
    // TokenRequest is a POST: the fault answers reads only, so it is issued.
    assert!(error.is_ok(), "{error:?}");
    // 64 MiB read whole would take far longer on a loaded machine than the
    // few hundred kB read before giving up.
    assert!(started.elapsed() < Duration::from_secs(10));
}
