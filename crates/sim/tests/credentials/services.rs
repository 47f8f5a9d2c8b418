//! Declared Kubernetes Services: seeded from the spec, listed like a real API
//! server (authenticated, faults honoured, paged), added, replaced and
//! removed over the admin API.

use super::{get, required, start};
use fleetreg_sim::{ClusterSpec, FaultsPatch, ServicePortSpec, ServiceSpec, SimAdmin, SpawnedSim};
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn exposed(namespace: &str, name: &str, port: i32) -> ServiceSpec {
    ServiceSpec {
        namespace: namespace.into(),
        name: name.into(),
        service_type: "ClusterIP".into(),
        cluster_ip: Some("172.30.9.9".into()),
        ports: vec![ServicePortSpec {
            name: Some("http".into()),
            port,
            target_port: None,
            protocol: "TCP".into(),
        }],
        annotations: BTreeMap::from([("fleetreg.io/expose".into(), "true".into())]),
        labels: BTreeMap::from([("app".into(), name.into())]),
        load_balancer_ips: Vec::new(),
    }
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s["metadata"]["namespace"].as_str().unwrap(),
                s["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn declared_services_are_listed_in_the_kubernetes_shape() {
    let (_sim, admin, view) = start("svc", required()).await;
    let http = reqwest::Client::new();
    let mut lb = exposed("photos", "immich", 2283);
    lb.service_type = "LoadBalancer".into();
    lb.load_balancer_ips = vec!["10.0.0.5".into()];
    lb.ports[0].target_port = Some(fleetreg_sim::TargetPort::Name("web".into()));
    admin.put_service("svc", &lb).await.unwrap();
    admin
        .put_service("svc", &exposed("wiki", "outline", 3000))
        .await
        .unwrap();

    // GETs a path of the cluster's API server with the bootstrap token.
    let read = {
        let (http, view) = (&http, &view);
        move |path: &'static str| get(http, view, path, Some("bootstrap"))
    };

    // Authenticated like every API server read.
    assert_eq!(get(&http, &view, "/api/v1/services", None).await.0, 401);
    let (status, all) = read("/api/v1/services").await;
    assert_eq!(status, 200);
    assert_eq!(all["kind"], "ServiceList");
    assert_eq!(all["apiVersion"], "v1");
    let listed = names(&all);
    assert!(
        listed.contains(&"default/kubernetes".to_owned()),
        "{listed:?}"
    );
    assert!(listed.contains(&"photos/immich".to_owned()), "{listed:?}");
    assert!(listed.contains(&"wiki/outline".to_owned()), "{listed:?}");

    let (_, photos) = read("/api/v1/namespaces/photos/services").await;
    assert_eq!(names(&photos), vec!["photos/immich"]);
    let immich = &photos["items"][0];
    assert_eq!(
        immich["metadata"]["annotations"],
        json!({"fleetreg.io/expose": "true"})
    );
    assert_eq!(immich["metadata"]["labels"], json!({"app": "immich"}));
    assert!(immich["metadata"]["resourceVersion"].is_string());
    assert_eq!(immich["spec"]["type"], "LoadBalancer");
    assert_eq!(immich["spec"]["clusterIP"], "172.30.9.9");
    assert_eq!(
        immich["spec"]["ports"],
        json!([{"name": "http", "port": 2283, "targetPort": "web", "protocol": "TCP"}])
    );
    assert_eq!(
        immich["status"]["loadBalancer"]["ingress"],
        json!([{"ip": "10.0.0.5"}])
    );

    // The namespace exists; labelSelector and paging work as for pods.
    let (_, namespace) = read("/api/v1/namespaces/photos").await;
    assert_eq!(namespace["metadata"]["name"], "photos");
    let (_, selected) = read("/api/v1/services?labelSelector=app%3Doutline").await;
    assert_eq!(names(&selected), vec!["wiki/outline"]);
    let (_, first) = read("/api/v1/services?limit=1").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    assert!(first["metadata"]["continue"].is_string());

    // A replacement changes the object and its resourceVersion.
    let before = immich["metadata"]["resourceVersion"].clone();
    lb.ports[0].port = 8080;
    admin.put_service("svc", &lb).await.unwrap();
    let (_, photos) = read("/api/v1/namespaces/photos/services").await;
    assert_eq!(photos["items"][0]["spec"]["ports"][0]["port"], 8080);
    assert_ne!(photos["items"][0]["metadata"]["resourceVersion"], before);

    // Removed: gone from the list; a second removal is 404.
    admin
        .delete_service("svc", "photos", "immich")
        .await
        .unwrap();
    let (_, all) = read("/api/v1/services").await;
    assert!(!names(&all).contains(&"photos/immich".to_owned()));
    let again = admin.delete_service("svc", "photos", "immich").await;
    assert!(
        matches!(again, Err(fleetreg_sim::Error::Status { status: 404, .. })),
        "{again:?}"
    );
    assert_eq!(admin.services("svc").await.unwrap().len(), 1);
}

#[tokio::test]
async fn services_come_from_the_spec_and_honour_faults() {
    let sim = SpawnedSim::start().await.unwrap();
    let admin = sim.admin();
    let spec = ClusterSpec {
        services: vec![exposed("apps", "web", 80)],
        ..ClusterSpec::default()
    };
    let view = admin.create_cluster("seeded", spec).await.unwrap();
    assert_eq!(view.spec.services.len(), 1);
    let http = reqwest::Client::new();
    let (status, list) = get(&http, &view, "/api/v1/namespaces/apps/services", None).await;
    assert_eq!((status, names(&list)), (200, vec!["apps/web".to_owned()]));

    let down = FaultsPatch {
        api_down: Some(true),
        ..FaultsPatch::default()
    };
    admin.set_faults("seeded", &down).await.unwrap();
    assert_eq!(get(&http, &view, "/api/v1/services", None).await.0, 503);
    let up = FaultsPatch {
        api_down: Some(false),
        ..FaultsPatch::default()
    };
    admin.set_faults("seeded", &up).await.unwrap();
    admin
        .set_raw_body("seeded", Some("not json"))
        .await
        .unwrap();
    let raw = http
        .get(format!("{}/api/v1/services", view.api_server_url))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.text().await.unwrap(), "not json");
}

#[tokio::test]
async fn bad_service_declarations_are_refused() {
    let sim = SpawnedSim::start().await.unwrap();
    let admin: SimAdmin = sim.admin();
    admin
        .create_cluster("c1", ClusterSpec::default())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    // PUTs `body` to the admin API's `clusters/{path}` and answers the status.
    let put = |path: &'static str, body: Value| {
        let request = http
            .put(format!("{}/admin/clusters/{path}", sim.base_url()))
            .json(&body);
        async move { request.send().await.unwrap().status() }
    };
    // The body names another service than the path.
    assert_eq!(
        put("c1/services/apps/web", json!({"name": "other"})).await,
        400
    );
    // Not a DNS label.
    assert_eq!(put("c1/services/Apps/web", json!({})).await, 400);
    // Unknown fields are refused; namespace and name come from the path.
    assert_eq!(put("c1/services/apps/web", json!({"prots": []})).await, 400);
    let created = put("c1/services/apps/web", json!({"ports": [{"port": 80}]})).await;
    assert_eq!(created, 201);
    let replaced = put("c1/services/apps/web", json!({"ports": [{"port": 81}]})).await;
    assert_eq!(replaced, 200);
    // A spec declaring one service twice.
    let twice = ClusterSpec {
        services: vec![exposed("a", "b", 1), exposed("a", "b", 2)],
        ..ClusterSpec::default()
    };
    assert!(admin.set_spec("c1", &twice).await.is_err());
    assert_eq!(put("nope/services/a/b", json!({})).await, 404);
}
