//! Services from clusters: annotated Kubernetes Services of a simulated
//! cluster, read with its stored credentials, registered, updated and marked
//! gone by `POST /api/v1/services/sync` and by the periodic job.

use crate::helpers::{
    assert_error, ok_json, put_token, register_with_prometheus, target, wait_for, TestApp,
};
use fleetreg_server::settings::Settings;
use fleetreg_sim::{FaultsPatch, ServicePortSpec, ServiceSpec, SpawnedSim};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

fn exposed(namespace: &str, name: &str, port: i32, annotations: &[(&str, &str)]) -> ServiceSpec {
    let mut all: BTreeMap<String, String> =
        BTreeMap::from([("fleetreg.io/expose".into(), "true".into())]);
    for (k, v) in annotations {
        all.insert((*k).into(), (*v).into());
    }
    ServiceSpec {
        namespace: namespace.into(),
        name: name.into(),
        service_type: "ClusterIP".into(),
        cluster_ip: Some("172.30.4.4".into()),
        ports: vec![ServicePortSpec {
            name: Some("http".into()),
            port,
            target_port: None,
            protocol: "TCP".into(),
        }],
        annotations: all,
        labels: BTreeMap::new(),
        load_balancer_ips: Vec::new(),
    }
}

/// A cluster `apps` requiring a token, registered with it stored.
async fn registered_cluster(app: &TestApp, sim: &SpawnedSim) -> String {
    let view = target(sim, "apps", "svc-token", "svc-prom").await;
    let id = register_with_prometheus(app, &view).await;
    put_token(app, &id, "svc-token", "svc-prom", "").await;
    id
}

async fn sync(app: &TestApp, body: Option<Value>) -> Value {
    let request = app.client.post(app.url("/api/v1/services/sync"));
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    ok_json(request.send().await.unwrap()).await
}

async fn service(app: &TestApp, name: &str) -> Value {
    ok_json(app.get(&format!("/api/v1/services/{name}")).await).await
}

fn names(report: &Value, key: &str) -> Vec<String> {
    report[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {report}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn off(settings: &mut Settings) {
    settings.edge.service_sync_seconds = 0;
}

mod annotated_services_are_registered_updated_and_marked_gone {
    use super::*;

    async fn body(app: TestApp) {
        let sim = SpawnedSim::start().await.unwrap();
        let id = registered_cluster(&app, &sim).await;
        let admin = sim.admin();
        let mut immich = exposed(
            "photos",
            "immich-server",
            2283,
            &[
                ("fleetreg.io/name", "immich"),
                ("fleetreg.io/subdomain", "photos"),
                ("fleetreg.io/description", "Photo library"),
            ],
        );
        immich.service_type = "LoadBalancer".into();
        immich.load_balancer_ips = vec!["10.0.0.5".into()];
        admin.put_service("apps", &immich).await.unwrap();
        admin
            .put_service("apps", &exposed("wiki", "outline", 3000, &[]))
            .await
            .unwrap();
        let mut private = exposed("wiki", "private", 80, &[]);
        private.annotations.clear();
        admin.put_service("apps", &private).await.unwrap();
        admin
            .put_service(
                "apps",
                &exposed("wiki", "broken", 80, &[("fleetreg.io/port", "http")]),
            )
            .await
            .unwrap();

        // Sync the one cluster by name: both annotated services registered.
        let answer = sync(&app, Some(json!({"cluster": "apps"}))).await;
        let clusters = answer["clusters"].as_array().unwrap();
        assert_eq!(clusters.len(), 1, "{answer}");
        assert_eq!(clusters[0]["cluster"], "apps");
        let report = &clusters[0]["report"];
        assert_eq!(names(report, "registered"), vec!["immich", "outline"]);
        assert_eq!(report["unchanged"], 0);
        assert!(clusters[0].get("error").is_none(), "{answer}");
        let problems = clusters[0]["problems"].as_array().unwrap();
        assert_eq!(problems.len(), 1, "{answer}");
        assert_eq!(problems[0]["service"], "wiki/broken");
        assert!(
            problems[0]["reason"]
                .as_str()
                .unwrap()
                .starts_with("annotation fleetreg.io/port"),
            "{answer}"
        );

        let registered = service(&app, "immich").await;
        assert_eq!(registered["subdomain"], "photos");
        assert_eq!(registered["upstreams"], json!(["10.0.0.5:2283"]));
        assert_eq!(registered["namespace"], "photos");
        assert_eq!(registered["cluster_id"], id.as_str());
        assert_eq!(registered["description"], "Photo library");
        assert_eq!(registered["origin"], "cluster");
        assert_eq!(registered["state"], "active");
        let outline = service(&app, "outline").await;
        assert_eq!(outline["upstreams"], json!(["172.30.4.4:3000"]));
        assert_eq!(outline["subdomain"], "outline");

        // Removed in the cluster → gone; a changed port → updated. No body:
        // every registered cluster.
        admin
            .delete_service("apps", "wiki", "outline")
            .await
            .unwrap();
        immich.ports[0].port = 2284;
        admin.put_service("apps", &immich).await.unwrap();
        let answer = sync(&app, None).await;
        let report = &answer["clusters"][0]["report"];
        assert_eq!(names(report, "gone"), vec!["outline"], "{answer}");
        assert_eq!(names(report, "updated"), vec!["immich"], "{answer}");
        assert!(names(report, "registered").is_empty(), "{answer}");
        assert_eq!(service(&app, "outline").await["state"], "gone");
        assert_eq!(
            service(&app, "immich").await["upstreams"],
            json!(["10.0.0.5:2284"])
        );

        // Nothing changed: nothing written.
        let answer = sync(&app, Some(json!({}))).await;
        let report = &answer["clusters"][0]["report"];
        assert_eq!(report["unchanged"], 1, "{answer}");
        assert!(names(report, "updated").is_empty(), "{answer}");

        // A cluster that cannot be read is reported, and its services stay.
        let down = FaultsPatch {
            api_down: Some(true),
            ..FaultsPatch::default()
        };
        admin.set_faults("apps", &down).await.unwrap();
        let answer = sync(&app, Some(json!({"cluster": "apps"}))).await;
        let entry = &answer["clusters"][0];
        assert_eq!(entry["cluster"], "apps");
        assert_eq!(entry["error"]["code"], "DISCOVERY_FAILED", "{answer}");
        assert!(
            entry["error"]["message"].as_str().unwrap().contains("503"),
            "{answer}"
        );
        assert!(entry.get("report").is_none(), "{answer}");
        assert!(!answer.to_string().contains("svc-token"), "{answer}");
        assert_eq!(service(&app, "immich").await["state"], "active");
    }

    on_both_stores!(off);
}

mod a_sync_names_a_registered_cluster_and_a_well_formed_body {
    use super::*;

    async fn body(app: TestApp) {
        let none = sync(&app, None).await;
        assert_eq!(none, json!({"clusters": []}));
        let unknown = app
            .post_json("/api/v1/services/sync", json!({"cluster": "nope"}))
            .await;
        assert_error(unknown, 404, "CLUSTER_NOT_FOUND").await;
        let invalid = app
            .post_json("/api/v1/services/sync", json!({"cluster": "Not A Name"}))
            .await;
        assert_error(invalid, 404, "CLUSTER_NOT_FOUND").await;
        let extra = app
            .post_json("/api/v1/services/sync", json!({"clusters": ["a"]}))
            .await;
        assert_error(extra, 400, "VALIDATION_ERROR").await;
        let malformed = app.post_raw("/api/v1/services/sync", "{").await;
        assert_error(malformed, 400, "MALFORMED_JSON").await;
        // Operators may sync; viewers may not.
        for (role, status) in [("operator", 200), ("viewer", 403)] {
            let token = crate::rbac::create_token(&app, &format!("sync-{role}"), role, None).await;
            let client = crate::helpers::client_with_token(token["token"].as_str().unwrap());
            let response = client
                .post(app.url("/api/v1/services/sync"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), status, "{role}");
        }
    }

    on_both_stores!(off);
}

mod the_periodic_job_registers_services {
    use super::*;

    fn every_second(settings: &mut Settings) {
        settings.edge.service_sync_seconds = 1;
    }

    async fn body(app: TestApp) {
        let sim = SpawnedSim::start().await.unwrap();
        registered_cluster(&app, &sim).await;
        sim.admin()
            .put_service("apps", &exposed("apps", "grafana", 3000, &[]))
            .await
            .unwrap();
        let found = wait_for("the periodic sync", Duration::from_secs(20), || async {
            let response = app.get("/api/v1/services/grafana").await;
            if response.status() == 200 {
                response.json::<Value>().await.ok()
            } else {
                None
            }
        })
        .await;
        assert_eq!(found["upstreams"], json!(["172.30.4.4:3000"]));
        // Audited as the worker.
        let audit: Value = ok_json(app.get("/api/v1/audit?action=service.sync").await).await;
        let actors: Vec<&str> = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["actor"].as_str())
            .collect();
        assert!(actors.contains(&"system:service-sync"), "{audit}");
    }

    on_both_stores!(every_second);
}
