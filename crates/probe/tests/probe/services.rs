//! Service discovery against the simulator: annotated Services become
//! discovered services, everything else is skipped or reported; reads are
//! authenticated, paged and bounded like every other.

use fleetreg_model::Endpoints;
use fleetreg_probe::{
    ClusterCredential, EgressPolicy, Prober, ServiceDiscovery, Target, MAX_EXPOSED_SERVICES,
};
use fleetreg_sim::{
    AuthSpec, ClusterSpec, ClusterView, FaultsPatch, ServicePortSpec, ServiceSpec, SimAdmin,
    SpawnedSim, TargetPort,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

fn declared(namespace: &str, name: &str, annotations: &[(&str, &str)]) -> ServiceSpec {
    ServiceSpec {
        namespace: namespace.into(),
        name: name.into(),
        service_type: "ClusterIP".into(),
        cluster_ip: Some("172.30.1.10".into()),
        ports: vec![ServicePortSpec {
            name: Some("http".into()),
            port: 8080,
            target_port: Some(TargetPort::Name("web".into())),
            protocol: "TCP".into(),
        }],
        annotations: annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        labels: BTreeMap::new(),
        load_balancer_ips: Vec::new(),
    }
}

const EXPOSE: (&str, &str) = ("fleetreg.io/expose", "true");

fn target(view: &ClusterView, token: Option<&str>) -> Target {
    let target = Target {
        api_server_url: view.api_server_url.clone(),
        endpoints: Endpoints::default(),
        credential: None,
    };
    match token {
        Some(token) => target.with_credential(Arc::new(
            ClusterCredential::from_token(token.into(), None, false).unwrap(),
        )),
        None => target,
    }
}

async fn locked(name: &str, services: Vec<ServiceSpec>) -> (SpawnedSim, SimAdmin, ClusterView) {
    let sim = SpawnedSim::start().await.unwrap();
    let admin = sim.admin();
    let auth = AuthSpec {
        required: true,
        tokens: vec!["bootstrap".into()],
        ..AuthSpec::default()
    };
    let spec = ClusterSpec {
        services,
        ..ClusterSpec::default()
    };
    let view = admin
        .create_cluster_with_auth(name, spec, auth)
        .await
        .unwrap();
    (sim, admin, view)
}

fn summary(found: &ServiceDiscovery) -> Vec<(String, String, String, String, String)> {
    found
        .services
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                s.namespace.clone(),
                s.fields.subdomain.to_string(),
                s.fields.upstreams[0].to_string(),
                s.fields.description.clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn annotated_services_are_discovered_with_the_stored_credential() {
    let mut lb = declared(
        "photos",
        "immich-server",
        &[
            EXPOSE,
            ("fleetreg.io/name", "immich"),
            ("fleetreg.io/subdomain", "photos"),
            ("fleetreg.io/port", "2283"),
            ("fleetreg.io/description", "Photo library"),
        ],
    );
    lb.service_type = "LoadBalancer".into();
    lb.load_balancer_ips = vec!["10.0.0.5".into()];
    let services = vec![
        lb,
        declared("wiki", "outline", &[EXPOSE]),
        declared(
            "wiki",
            "direct",
            &[EXPOSE, ("fleetreg.io/upstream", "outline.example.com:443")],
        ),
        declared("wiki", "private", &[]),
        declared("wiki", "maybe", &[("fleetreg.io/expose", "yes")]),
        declared(
            "wiki",
            "bad-port",
            &[EXPOSE, ("fleetreg.io/port", "http\n")],
        ),
        declared(
            "wiki",
            "meta",
            &[EXPOSE, ("fleetreg.io/upstream", "169.254.169.254:80")],
        ),
        declared("zz", "immich", &[EXPOSE]),
    ];
    let (_sim, _admin, view) = locked("apps", services).await;
    let prober = Prober::new(EgressPolicy::default()).unwrap();

    // Without the cluster's credential: the listing fails, nothing is guessed.
    let refused = prober
        .discover_services(&target(&view, None), TIMEOUT)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");

    let found = prober
        .discover_services(&target(&view, Some("bootstrap")), TIMEOUT)
        .await
        .unwrap();
    let text = |s: &str| s.to_owned();
    assert_eq!(
        summary(&found),
        vec![
            (
                text("immich"),
                text("photos"),
                text("photos"),
                text("10.0.0.5:2283"),
                text("Photo library")
            ),
            (
                text("direct"),
                text("wiki"),
                text("direct"),
                text("outline.example.com:443"),
                text("")
            ),
            (
                text("outline"),
                text("wiki"),
                text("outline"),
                text("172.30.1.10:8080"),
                text("")
            ),
        ]
    );
    assert_eq!(
        found.services[0].fields.namespace.as_deref(),
        Some("photos")
    );
    let problems: Vec<(&str, &str)> = found
        .problems
        .iter()
        .map(|p| (p.service.as_str(), p.reason.as_str()))
        .collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert_eq!(problems[0].0, "wiki/bad-port");
    // Remote text, escaped: no line break survives.
    assert!(
        problems[0]
            .1
            .starts_with("annotation fleetreg.io/port: \"http\\\\n\""),
        "{problems:?}"
    );
    assert_eq!(problems[1].0, "wiki/meta");
    assert!(problems[1].1.contains("metadata"), "{problems:?}");
    assert_eq!(problems[2].0, "zz/immich");
    assert!(
        problems[2].1.contains("taken by photos/immich-server"),
        "{problems:?}"
    );
}

#[tokio::test]
async fn services_added_and_removed_at_run_time_are_seen_on_the_next_listing() {
    let (_sim, admin, view) = locked("live", Vec::new()).await;
    let prober = Prober::new(EgressPolicy::default()).unwrap();
    let target = target(&view, Some("bootstrap"));
    assert_eq!(
        prober.discover_services(&target, TIMEOUT).await.unwrap(),
        ServiceDiscovery::default(),
        "the implied services (kubernetes, …) are not annotated"
    );
    admin
        .put_service("live", &declared("apps", "web", &[EXPOSE]))
        .await
        .unwrap();
    let found = prober.discover_services(&target, TIMEOUT).await.unwrap();
    assert_eq!(found.services.len(), 1);
    admin.delete_service("live", "apps", "web").await.unwrap();
    let found = prober.discover_services(&target, TIMEOUT).await.unwrap();
    assert!(found.services.is_empty());
}

#[tokio::test]
async fn long_lists_are_read_page_by_page() {
    let services = (0..150)
        .map(|i| {
            let name = format!("svc-{i:03}");
            if i % 3 == 0 {
                declared("apps", &name, &[])
            } else {
                declared("apps", &name, &[EXPOSE])
            }
        })
        .collect();
    let (_sim, admin, view) = locked("many", services).await;
    let prober = Prober::new(EgressPolicy::default()).unwrap();
    let mark = admin.log_end().await.unwrap();
    let found = prober
        .discover_services(&target(&view, Some("bootstrap")), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(found.services.len(), 100);
    assert!(found.problems.is_empty(), "{:?}", found.problems);
    let paths: Vec<String> = admin
        .requests(mark, Some("many"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(paths[0].starts_with("/api/v1/services?"), "{paths:?}");
    assert!(paths[0].contains("limit=100"), "{paths:?}");
    assert!(paths[1].contains("continue="), "{paths:?}");
}

#[tokio::test]
async fn faults_and_hostile_answers_fail_or_are_reported_never_trusted() {
    let (_sim, admin, view) = locked("hostile", vec![declared("a", "b", &[EXPOSE])]).await;
    let limit = 64 * 1024;
    let prober = Prober::new(EgressPolicy::default())
        .unwrap()
        .with_max_response_bytes(limit);
    let target = target(&view, Some("bootstrap"));

    let down = FaultsPatch {
        api_down: Some(true),
        ..FaultsPatch::default()
    };
    admin.set_faults("hostile", &down).await.unwrap();
    let error = prober
        .discover_services(&target, TIMEOUT)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("503"), "{error}");
    let up = FaultsPatch {
        api_down: Some(false),
        ..FaultsPatch::default()
    };
    admin.set_faults("hostile", &up).await.unwrap();

    admin
        .set_huge_body("hostile", 64 * 1024 * 1024)
        .await
        .unwrap();
    let error = prober
        .discover_services(&target, TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, fleetreg_probe::Error::TooLarge { source, .. } if source.limit == limit),
        "{error:?}"
    );
    admin.set_huge_body("hostile", 0).await.unwrap();

    admin
        .set_raw_body("hostile", Some("\u{1b}[31mnot json\nINFO forged"))
        .await
        .unwrap();
    let error = prober
        .discover_services(&target, TIMEOUT)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        !error.contains('\n') && !error.contains('\u{1b}'),
        "{error}"
    );

    // Well-formed list, ill-formed Services: each one a problem, escaped.
    let exposed = json!({"fleetreg.io/expose": "true"});
    let items = json!([
        {"metadata": {"name": "ok", "namespace": "apps", "annotations": exposed},
         "spec": {"clusterIP": "10.1.2.3", "ports": [{"port": 80}]}},
        {"metadata": {"name": "evil\n\u{202e}", "namespace": "apps", "annotations": exposed},
         "spec": {"clusterIP": "10.1.2.3", "ports": [{"port": 80}]}},
        {"metadata": {"name": "ports", "namespace": "apps", "annotations": exposed},
         "spec": {"clusterIP": "10.1.2.3", "ports": [{"port": "80"}]}},
        {"metadata": {"name": "numbers", "namespace": "apps",
                      "annotations": {"fleetreg.io/expose": "true", "fleetreg.io/port": 80}},
         "spec": {"clusterIP": "10.1.2.3", "ports": "none"}},
        {"metadata": {"name": "long", "namespace": "apps",
                      "annotations": {"fleetreg.io/expose": "true",
                                      "fleetreg.io/description": "x".repeat(10_000)}},
         "spec": {"clusterIP": "10.1.2.3", "ports": [{"port": 80}]}},
        {"metadata": {"name": "plain", "namespace": "apps"}, "spec": 7},
        {"metadata": 7},
    ]);
    let list = json!({"kind": "ServiceList", "apiVersion": "v1", "metadata": {}, "items": items});
    admin
        .set_raw_body("hostile", Some(&list.to_string()))
        .await
        .unwrap();
    let found = prober.discover_services(&target, TIMEOUT).await.unwrap();
    assert_eq!(
        found
            .services
            .iter()
            .map(|s| s.name.to_string())
            .collect::<Vec<_>>(),
        vec!["ok"]
    );
    assert_eq!(found.problems.len(), 4, "{:?}", found.problems);
    for problem in &found.problems {
        for text in [&problem.service, &problem.reason] {
            assert!(
                !text.contains('\n') && !text.contains('\u{202e}'),
                "{problem:?}"
            );
            assert!(text.chars().count() < 400, "{problem:?}");
        }
    }
    assert_eq!(found.problems[0].service, "apps/evil\\n\\u{202e}");

    // More exposed Services than one cluster may have: the whole listing
    // fails (a cut list would mark the rest gone).
    let item = |i: usize| {
        json!({"metadata": {"name": format!("s{i}"), "namespace": "apps", "annotations": exposed},
               "spec": {"clusterIP": "10.1.2.3", "ports": [{"port": 80}]}})
    };
    let many: Vec<_> = (0..=MAX_EXPOSED_SERVICES).map(item).collect();
    let list = json!({"kind": "ServiceList", "apiVersion": "v1", "metadata": {}, "items": many});
    admin
        .set_raw_body("hostile", Some(&list.to_string()))
        .await
        .unwrap();
    let error = Prober::new(EgressPolicy::default())
        .unwrap()
        .discover_services(&target, TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("at most 1000 are read"),
        "{error}"
    );
}
