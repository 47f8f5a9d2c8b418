//! Health checks against the simulator: `POST /clusters/{id}/refresh` (status,
//! capabilities, `CLUSTER_UNREACHABLE`, `DISCOVERY_FAILED`), state-change events
//! only on transitions, and the background scheduler picking up new clusters and
//! dropping deleted ones.

use crate::helpers::{assert_error, is_check_api_call, refresh, refresh_ok, scheduled, TestApp};
use fleetreg_server::settings::Settings;
use fleetreg_sim::{ClusterSpec, ClusterView, FaultsPatch, ObservabilitySpec, SpawnedSim};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

/// Refresh tests: no background checks, so every status comes from a refresh.
fn manual(settings: &mut Settings) {
    settings.health_check.enabled = false;
    settings.health_check.timeout_seconds = Some(3);
}

/// Scheduler tests: every type checked each second.
fn every_second(settings: &mut Settings) {
    scheduled(settings, 1, 2);
}

fn rich_spec() -> ClusterSpec {
    ClusterSpec {
        nodes: 4,
        gpu_count: 12,
        gpu_nodes: 2,
        gpu_type: "NVIDIA-H100-80GB-HBM3".into(),
        gpu_operator: true,
        dcgm: true,
        cnf_namespaces: vec!["du-site1".into(), "upf-core".into()],
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
    }
}

/// Registers `view` with its API server and all three endpoints.
async fn register_sim_cluster(app: &TestApp, view: &ClusterView) -> String {
    let body = app
        .register(
            &view.name,
            json!({
                "api_server_url": view.api_server_url,
                "endpoints": {
                    "prometheus_url": view.prometheus_url,
                    "tempo_url": view.tempo_url,
                    "loki_url": view.loki_url,
                },
            }),
        )
        .await;
    body["id"].as_str().unwrap().to_owned()
}

fn faults(api_down: bool, prometheus_down: bool) -> FaultsPatch {
    FaultsPatch {
        api_down: Some(api_down),
        api_latency_ms: Some(0),
        prometheus_down: Some(prometheus_down),
        tempo_down: Some(false),
        loki_down: Some(false),
    }
}

async fn events_of(app: &TestApp, id: &str, event_type: &str) -> Vec<Value> {
    let mut cursor = 0;
    let mut found = Vec::new();
    loop {
        let page: Value = app
            .get(&format!("/api/v1/events?after={cursor}&limit=1000"))
            .await
            .json()
            .await
            .unwrap();
        let items = page["items"].as_array().unwrap().clone();
        if items.is_empty() {
            return found;
        }
        cursor = page["next_after"].as_i64().unwrap();
        found.extend(
            items
                .into_iter()
                .filter(|e| e["type"] == event_type && e["resource_id"] == id),
        );
    }
}

fn transitions(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["payload"]["old_state"].as_str().unwrap().to_owned(),
                e["payload"]["new_state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Polls `cond` on the cluster every 100 ms for up to 20 s.
async fn wait_for_cluster(app: &TestApp, id: &str, what: &str, cond: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let cluster: Value = app.get_cluster(id).await.json().await.unwrap();
        if cond(&cluster) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {cluster}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

mod refresh_follows_faults {
    use super::*;

    async fn body(app: TestApp) {
        let sim = SpawnedSim::start().await.unwrap();
        let admin = sim.admin();
        let view = admin.create_cluster("alpha", rich_spec()).await.unwrap();
        let id = register_sim_cluster(&app, &view).await;

        // Healthy: ONLINE, 100, and the capabilities the sim holds.
        let cluster = refresh_ok(&app, &id).await;
        assert_eq!(cluster["status"]["state"], "ONLINE", "{cluster}");
        assert_eq!(cluster["status"]["health_score"], 100);
        assert!(cluster["last_seen_at"].is_string(), "{cluster}");
        let caps = &cluster["capabilities"];
        assert_eq!(caps["has_gpu_nodes"], true, "{caps}");
        assert_eq!(caps["gpu_count"], 12);
        assert_eq!(caps["gpu_types"], json!(["NVIDIA-H100-80GB-HBM3"]));
        assert_eq!(caps["has_cnf"], true);
        assert_eq!(caps["cnf_types"], json!(["vDU", "UPF"]));
        assert_eq!(caps["has_sriov"], true);
        assert_eq!(caps["has_ptp"], true);
        assert_eq!(
            caps["observability"],
            json!({ "prometheus": true, "thanos": true, "tempo": true, "loki": true })
        );
        assert!(caps["discovered_at"].is_string(), "{caps}");
        assert_eq!(
            cluster["platform_version"], "4.15.12",
            "discovered platform version is stored"
        );

        // Same again: no transition, no capability change.
        let cluster = refresh_ok(&app, &id).await;
        assert_eq!(cluster["status"]["state"], "ONLINE");
        assert_eq!(
            events_of(&app, &id, "CLUSTER_CAPABILITIES_CHANGED")
                .await
                .len(),
            1
        );

        // Prometheus down: DEGRADED, 80.
        admin
            .set_faults("alpha", &faults(false, true))
            .await
            .unwrap();
        let cluster = refresh_ok(&app, &id).await;
        assert_eq!(cluster["status"]["state"], "DEGRADED", "{cluster}");
        assert_eq!(cluster["status"]["health_score"], 80);
        assert_eq!(cluster["status"]["prometheus_healthy"], false);

        // API server down: 503 CLUSTER_UNREACHABLE, and the status is recorded.
        admin
            .set_faults("alpha", &faults(true, false))
            .await
            .unwrap();
        let error = assert_error(refresh(&app, &id).await, 503, "CLUSTER_UNREACHABLE").await;
        let cause = error["error"]["details"]["cause"].as_str().unwrap();
        assert!(!cause.is_empty(), "{error}");
        let status: Value = app
            .get(&format!("/api/v1/clusters/{id}/status"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(status["state"], "OFFLINE", "{status}");
        assert_eq!(status["health_score"], 50);
        assert_eq!(status["connectivity"], "DISCONNECTED");

        // Repaired: ONLINE again.
        admin
            .set_faults("alpha", &faults(false, false))
            .await
            .unwrap();
        let cluster = refresh_ok(&app, &id).await;
        assert_eq!(cluster["status"]["state"], "ONLINE");
        assert_eq!(cluster["status"]["health_score"], 100);

        // One event per transition, none for the repeated ONLINE.
        let changes = events_of(&app, &id, "CLUSTER_STATUS_CHANGED").await;
        let expected: Vec<(String, String)> = [
            ("UNKNOWN", "ONLINE"),
            ("ONLINE", "DEGRADED"),
            ("DEGRADED", "OFFLINE"),
            ("OFFLINE", "ONLINE"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(transitions(&changes), expected);
        assert_eq!(
            events_of(&app, &id, "CLUSTER_CAPABILITIES_CHANGED")
                .await
                .len(),
            1,
            "capabilities did not change after the first refresh"
        );
    }

    on_both_stores!(manual);
}

api_test!(refresh_of_an_unknown_cluster_is_404, |app| {
    let response = refresh(&app, &uuid::Uuid::new_v4().to_string()).await;
    assert_error(response, 404, "CLUSTER_NOT_FOUND").await;
    let response = refresh(&app, "not-a-uuid").await;
    assert_error(response, 404, "CLUSTER_NOT_FOUND").await;
});

/// An API server that lists namespaces (so the check passes) and fails
/// everything else (so discovery fails).
async fn half_broken_api_server() -> String {
    use axum::routing::get;
    let router = axum::Router::new()
        .route(
            "/api/v1/namespaces",
            get(|| async {
                axum::Json(json!({
                    "kind": "NamespaceList",
                    "apiVersion": "v1",
                    "metadata": {},
                    "items": [],
                }))
            }),
        )
        .fallback(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "broken") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

api_test!(refresh_reports_a_failed_discovery, |app| {
    let url = half_broken_api_server().await;
    let body = app
        .register("half-broken", json!({ "api_server_url": url }))
        .await;
    let id = body["id"].as_str().unwrap();
    let error = assert_error(refresh(&app, id).await, 500, "DISCOVERY_FAILED").await;
    let cause = error["error"]["details"]["cause"].as_str().unwrap();
    assert!(!cause.is_empty(), "{error}");
    // The check itself passed and was recorded.
    let cluster: Value = app.get_cluster(id).await.json().await.unwrap();
    assert_eq!(cluster["status"]["state"], "ONLINE", "{cluster}");
});

mod scheduler_follows_registrations_and_deletions {
    use super::*;

    async fn body(app: TestApp) {
        let sim = SpawnedSim::start().await.unwrap();
        let admin = sim.admin();
        let view = admin
            .create_cluster("beta", ClusterSpec::default())
            .await
            .unwrap();
        let id = register_sim_cluster(&app, &view).await;

        // Checked promptly, without any refresh.
        wait_for_cluster(&app, &id, "the first scheduled check", |c| {
            c["status"]["state"] == "ONLINE"
        })
        .await;
        // And again on the next interval: the fault shows up by itself.
        admin
            .set_faults("beta", &faults(false, true))
            .await
            .unwrap();
        wait_for_cluster(&app, &id, "DEGRADED", |c| {
            c["status"]["state"] == "DEGRADED" && c["status"]["health_score"] == 80
        })
        .await;
        let log = admin.requests(0, Some("beta")).await.unwrap();
        assert!(!log.items.is_empty());

        // Deleted: after any check in flight ends, the sim sees no more requests.
        assert_eq!(app.delete_cluster(&id).await.status(), 204);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let after = admin.requests(0, Some("beta")).await.unwrap().next_after;
        tokio::time::sleep(Duration::from_millis(3000)).await;
        let late = admin.requests(after, Some("beta")).await.unwrap();
        assert!(
            late.items.is_empty(),
            "a deleted cluster is still checked: {:?}",
            late.items
        );
        let scheduler = app.health.as_ref().expect("scheduler enabled");
        assert!(scheduler.scheduled().is_empty());
    }

    on_both_stores!(every_second);
}

mod tick_checks_every_due_cluster {
    use super::*;

    /// Hourly checks: nothing is due in the test's lifetime unless a tick says so.
    fn hourly(settings: &mut Settings) {
        scheduled(settings, 3600, 2);
    }

    async fn body(app: TestApp) {
        let sim = SpawnedSim::start().await.unwrap();
        let admin = sim.admin();
        let mut ids = Vec::new();
        for name in ["gamma", "delta"] {
            let view = admin
                .create_cluster(name, ClusterSpec::default())
                .await
                .unwrap();
            ids.push(register_sim_cluster(&app, &view).await);
        }
        admin
            .set_faults("delta", &faults(true, false))
            .await
            .unwrap();
        let scheduler = app.health.clone().expect("scheduler enabled");
        // A tick two hours ahead: every cluster is due, whatever its jitter.
        let round = scheduler
            .tick_at(Instant::now() + Duration::from_secs(7200))
            .await;
        round.finish().await;
        let mut scheduled = scheduler.scheduled();
        scheduled.sort();
        let mut expected: Vec<uuid::Uuid> = ids.iter().map(|i| i.parse().unwrap()).collect();
        expected.sort();
        assert_eq!(scheduled, expected);
        let gamma: Value = app.get_cluster(&ids[0]).await.json().await.unwrap();
        assert_eq!(gamma["status"]["state"], "ONLINE", "{gamma}");
        let delta: Value = app.get_cluster(&ids[1]).await.json().await.unwrap();
        assert_eq!(delta["status"]["state"], "OFFLINE", "{delta}");

        // An update reaches the scheduler: gamma now points at delta's API server.
        let delta_url = delta["api_server_url"].as_str().unwrap();
        let response = app
            .put_cluster(&ids[0], &json!({ "api_server_url": delta_url }))
            .await;
        assert_eq!(response.status(), 200);
        scheduler
            .tick_at(Instant::now() + Duration::from_secs(4 * 3600))
            .await
            .finish()
            .await;
        let gamma: Value = app.get_cluster(&ids[0]).await.json().await.unwrap();
        assert_eq!(gamma["status"]["state"], "OFFLINE", "{gamma}");

        // A deletion too.
        assert_eq!(app.delete_cluster(&ids[1]).await.status(), 204);
        let round = scheduler
            .tick_at(Instant::now() + Duration::from_secs(6 * 3600))
            .await;
        assert_eq!(round.started(), 1, "only gamma is left to check");
        round.finish().await;
        assert_eq!(
            scheduler.scheduled(),
            vec![ids[0].parse::<uuid::Uuid>().unwrap()]
        );

        let metrics = app.get("/metrics").await.text().await.unwrap();
        assert!(
            metrics.contains("fleetreg_health_checks_total"),
            "{metrics}"
        );
    }

    on_both_stores!(hourly);
}

mod discovery_on_registration {
    use super::*;

    fn on(settings: &mut Settings) {
        manual(settings);
        settings.discovery.on_registration = true;
    }

    async fn body(app: TestApp) {
        let sim = SpawnedSim::start().await.unwrap();
        let view = sim
            .admin()
            .create_cluster("epsilon", rich_spec())
            .await
            .unwrap();
        let id = register_sim_cluster(&app, &view).await;
        wait_for_cluster(&app, &id, "discovery after registration", |c| {
            c["capabilities"]["gpu_count"] == 12 && c["capabilities"]["has_ptp"] == true
        })
        .await;
        // A registration whose discovery fails still stands.
        let body = app
            .register("nowhere", json!({ "api_server_url": "http://127.0.0.1:9" }))
            .await;
        assert_eq!(body["status"]["state"], "UNKNOWN");
    }

    on_both_stores!(on);
}

mod scheduler_rediscovers_periodically {
    use super::*;

    /// Hourly checks, no discovery on registration, rediscovery every 24 h.
    /// Discovery shares the check timeout and lists page by page: 10 s, so a
    /// loaded machine does not turn a slow rediscovery into a failed one.
    fn daily(settings: &mut Settings) {
        scheduled(settings, 3600, 10);
        settings.discovery.on_registration = false;
        settings.discovery.periodic_refresh_hours = 24;
    }

    async fn round(app: &TestApp, hours_ahead: u64) {
        let scheduler = app.health.clone().expect("scheduler enabled");
        scheduler
            .tick_at(Instant::now() + Duration::from_secs(hours_ahead * 3600))
            .await
            .finish()
            .await;
    }

    async fn capabilities(app: &TestApp, id: &str) -> Value {
        let cluster: Value = app.get_cluster(id).await.json().await.unwrap();
        cluster["capabilities"].clone()
    }

    async fn body(app: TestApp) {
        let sim = SpawnedSim::start().await.unwrap();
        let admin = sim.admin();
        let mut spec = rich_spec();
        let view = admin.create_cluster("zeta", spec.clone()).await.unwrap();
        let id = register_sim_cluster(&app, &view).await;
        assert!(
            capabilities(&app, &id).await.is_null(),
            "not discovered yet"
        );

        // Never discovered: the first successful check discovers.
        round(&app, 2).await;
        assert_eq!(capabilities(&app, &id).await["gpu_count"], 12);
        let changed = || events_of(&app, &id, "CLUSTER_CAPABILITIES_CHANGED");
        assert_eq!(changed().await.len(), 1);

        // The cluster gains GPUs; within the period nothing is rediscovered.
        spec.gpu_count = 16;
        admin.set_spec("zeta", &spec).await.unwrap();
        round(&app, 3).await;
        assert_eq!(capabilities(&app, &id).await["gpu_count"], 12);
        let discoveries = |log: &fleetreg_sim::RequestPage| {
            log.items
                .iter()
                .filter(|r| r.path.starts_with("/api/v1/nodes"))
                .count()
        };
        let before = discoveries(&admin.requests(0, Some("zeta")).await.unwrap());

        // A day later it is: one discovery, one event.
        round(&app, 27).await;
        assert_eq!(capabilities(&app, &id).await["gpu_count"], 16);
        assert_eq!(changed().await.len(), 2);
        let after = discoveries(&admin.requests(0, Some("zeta")).await.unwrap());
        assert!(after > before, "nodes were listed again");

        // An unreachable cluster is not rediscovered (the check failed first).
        admin
            .set_faults("zeta", &faults(true, false))
            .await
            .unwrap();
        round(&app, 60).await;
        let last = discoveries(&admin.requests(0, Some("zeta")).await.unwrap());
        assert_eq!(last, after);
    }

    on_both_stores!(daily);
}

mod refresh_and_scheduler_never_overlap {
    use super::*;

    fn hourly(settings: &mut Settings) {
        scheduled(settings, 3600, 5);
        settings.discovery.on_registration = false;
        settings.discovery.periodic_refresh_hours = 0;
    }

    async fn body(app: TestApp) {
        let sim = SpawnedSim::start().await.unwrap();
        let admin = sim.admin();
        let view = admin
            .create_cluster("eta", ClusterSpec::default())
            .await
            .unwrap();
        let id = register_sim_cluster(&app, &view).await;
        // Each API call takes 300 ms: overlapping probes would interleave.
        admin
            .set_faults(
                "eta",
                &FaultsPatch {
                    api_latency_ms: Some(300),
                    ..FaultsPatch::default()
                },
            )
            .await
            .unwrap();
        let scheduler = app.health.clone().expect("scheduler enabled");
        let start = admin.requests(0, Some("eta")).await.unwrap().next_after;
        let scheduled = scheduler
            .tick_at(Instant::now() + Duration::from_secs(7200))
            .await;
        let refreshes: Vec<_> = (0..3).map(|_| refresh(&app, &id)).collect();
        let (_, answers) = tokio::join!(scheduled.finish(), futures::future::join_all(refreshes));
        for answer in answers {
            assert_eq!(answer.status(), 200);
        }
        // The API server saw the probes one after another: every namespace list
        // arrived at least 300 ms after the previous one.
        let log = admin.requests(start, Some("eta")).await.unwrap();
        let lists: Vec<_> = log
            .items
            .iter()
            .filter(|r| is_check_api_call(&r.path))
            .map(|r| r.time)
            .collect();
        let paths: Vec<_> = log.items.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            lists.len(),
            4,
            "one scheduled check and three refreshes: {paths:?}"
        );
        for pair in lists.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= chrono::Duration::milliseconds(290),
                "two probes of one cluster overlapped: {lists:?}"
            );
        }
    }

    on_both_stores!(hourly);
}

mod a_backlog_starts_the_longest_due_first {
    use super::*;
    use fleetreg_server::health::{HealthScheduler, MAX_CONCURRENT_CHECKS};
    use std::collections::{BTreeSet, HashMap};

    /// Clusters beyond the permits: this many wait in the first round.
    const EXTRA: usize = 44;
    const YEAR: u64 = 365 * 24 * 3600;

    /// Yearly checks: the app's own scheduler checks each cluster once, right
    /// after its registration, and not again while the test runs. A timeout no
    /// loaded CI machine reaches: every started check must reach the simulator.
    fn yearly(settings: &mut Settings) {
        scheduled(settings, YEAR, 60);
    }

    /// The names whose API server was checked after log position `after`.
    async fn checked_after(admin: &fleetreg_sim::SimAdmin, after: u64) -> (BTreeSet<String>, u64) {
        let mut names = BTreeSet::new();
        let mut position = after;
        loop {
            let page = admin.requests(position, None).await.unwrap();
            if page.items.is_empty() {
                return (names, position);
            }
            for entry in &page.items {
                // The check's API-server call.
                if is_check_api_call(&entry.path) {
                    assert!(
                        names.insert(entry.cluster.clone()),
                        "{} checked twice",
                        entry.cluster
                    );
                }
            }
            position = page.next_after;
        }
    }

    async fn body(app: TestApp) {
        let sim = SpawnedSim::start().await.unwrap();
        let admin = sim.admin();
        let mut names_by_id = HashMap::new();
        for i in 0..MAX_CONCURRENT_CHECKS + EXTRA {
            let view = admin
                .create_cluster(&format!("backlog-{i:03}"), ClusterSpec::default())
                .await
                .unwrap();
            let body = app
                .register(&view.name, json!({ "api_server_url": view.api_server_url }))
                .await;
            let id: uuid::Uuid = body["id"].as_str().unwrap().parse().unwrap();
            names_by_id.insert(id, view.name);
        }
        // The app's own first check of every cluster (its next is a year away).
        let mut first_checks = BTreeSet::new();
        let mut mark = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        while first_checks.len() < names_by_id.len() {
            assert!(
                Instant::now() < deadline,
                "the app checked only {} of {} clusters",
                first_checks.len(),
                names_by_id.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (seen, position) = checked_after(&admin, mark).await;
            assert!(
                seen.is_disjoint(&first_checks),
                "the app checked a cluster twice"
            );
            first_checks.extend(seen);
            mark = position;
        }

        // ... and recorded them (a check the simulator saw may still be on its
        // way to the store; the second scheduler spreads only clusters checked
        // before over the year).
        let (store, context, hub) = app.health.as_ref().expect("scheduler on").parts();
        let registered = names_by_id.len();
        crate::helpers::wait_for(
            "every first check recorded",
            Duration::from_secs(60),
            || {
                let store = store.clone();
                async move {
                    let clusters = fleetreg_server::health::all_clusters(store.as_ref())
                        .await
                        .ok()?;
                    let recorded = clusters.iter().all(|c| c.status.checked_at.is_some());
                    (recorded && clusters.len() == registered).then_some(())
                }
            },
        )
        .await;

        // A second scheduler driven by hand loads the table now: first due
        // times spread over the year by the id's jitter.
        let scheduler = HealthScheduler::new(store, context, hub);
        let every_one_due = Instant::now() + Duration::from_secs(YEAR);
        let first = scheduler.tick_at(every_one_due).await;
        assert_eq!(first.started(), MAX_CONCURRENT_CHECKS);
        assert_eq!(first.waiting(), EXTRA);
        first.finish().await;
        let (first_checked, mark) = checked_after(&admin, mark).await;

        // Oldest due first: the ids with the smallest jitter (the scheduler's
        // `jitter`: the id's low 64 bits modulo the interval in milliseconds).
        let mut by_due: Vec<(u64, &uuid::Uuid)> = names_by_id
            .keys()
            .map(|id| (id.as_u64_pair().1 % (YEAR * 1000), id))
            .collect();
        by_due.sort();
        let expected: BTreeSet<String> = by_due[..MAX_CONCURRENT_CHECKS]
            .iter()
            .map(|(_, id)| names_by_id[id].clone())
            .collect();
        assert_eq!(first_checked, expected);

        // The next round starts exactly the ones left waiting.
        let second = scheduler.tick_at(every_one_due).await;
        assert_eq!((second.started(), second.waiting()), (EXTRA, 0));
        second.finish().await;
        let (second_checked, _) = checked_after(&admin, mark).await;
        let rest: BTreeSet<String> = by_due[MAX_CONCURRENT_CHECKS..]
            .iter()
            .map(|(_, id)| names_by_id[id].clone())
            .collect();
        assert_eq!(second_checked, rest);
    }

    on_both_stores!(yearly);
}

/// The scheduler skips reading the credentials of clusters it knows have
/// none (registered without, found without): an upload after that is
/// presented by its next check, and a removal is noticed by the one after.
mod scheduled_checks_follow_credential_changes {
    use super::*;
    use crate::helpers::upload;
    use fleetreg_server::health::HealthScheduler;

    const YEAR: u64 = 365 * 24 * 3600;
    const TOKEN: &str = "sched-token-3c1f";

    /// The app's own scheduler checks each cluster once, at registration;
    /// the test drives a second one by hand.
    fn yearly(settings: &mut Settings) {
        scheduled(settings, YEAR, 10);
    }

    /// Round `k` of the hand-driven scheduler: `k` years ahead, so the
    /// cluster is due again each round; it checks exactly the one cluster,
    /// reading its stored credentials unless `known_none`.
    async fn round(scheduler: &HealthScheduler, k: u64, known_none: bool) {
        let tick = scheduler
            .tick_at(Instant::now() + Duration::from_secs(k * YEAR))
            .await;
        assert_eq!(tick.started(), 1, "round {k}");
        let skipped = tick.known_without_credentials();
        assert_eq!(skipped, usize::from(known_none), "round {k}: read skipped");
        tick.finish().await;
    }

    /// Uploads the token, and waits for the check after the upload (ONLINE).
    async fn upload_token(app: &TestApp, id: &str) {
        upload(app, id, json!({ "auth_type": "TOKEN", "token": TOKEN })).await;
        wait_for_cluster(app, id, "the check after the upload", |c| {
            c["status"]["state"] == "ONLINE"
        })
        .await;
    }

    async fn state(app: &TestApp, id: &str) -> String {
        let cluster: Value = app.get_cluster(id).await.json().await.unwrap();
        cluster["status"]["state"].as_str().unwrap().to_owned()
    }

    async fn body(app: TestApp) {
        let sim = SpawnedSim::start().await.unwrap();
        let spec = ClusterSpec {
            token: Some(TOKEN.into()),
            ..ClusterSpec::default()
        };
        let view = sim.admin().create_cluster("guarded", spec).await.unwrap();
        let (store, context, hub) = app.health.as_ref().expect("scheduler on").parts();
        let scheduler = HealthScheduler::new(store, context, hub);
        let empty = scheduler.tick_at(Instant::now()).await;
        assert_eq!(empty.started(), 0, "no clusters yet");

        // Registered without credentials: the table learns it from the
        // registration's event, and checks go anonymous (401).
        let body = app
            .register(&view.name, json!({ "api_server_url": view.api_server_url }))
            .await;
        let id = body["id"].as_str().unwrap().to_owned();
        // The app's own check comes first (and is its last).
        wait_for_cluster(&app, &id, "the app's first check", |c| {
            c["status"]["checked_at"].is_string()
        })
        .await;
        round(&scheduler, 1, true).await;
        assert_eq!(state(&app, &id).await, "OFFLINE");

        // Uploaded: the check after the upload answers ONLINE, and so must
        // the scheduler's next, presenting the token it had known absent.
        upload_token(&app, &id).await;
        round(&scheduler, 2, false).await;
        assert_eq!(state(&app, &id).await, "ONLINE", "the upload was presented");
        round(&scheduler, 3, false).await;
        assert_eq!(state(&app, &id).await, "ONLINE");

        // Removed: the next check reads none and goes anonymous again, and
        // so does the one after (known none).
        let removed = app
            .client
            .delete(app.url(&format!("/api/v1/clusters/{id}/credentials")))
            .send()
            .await
            .unwrap();
        assert_eq!(removed.status(), 204);
        round(&scheduler, 4, false).await;
        assert_eq!(state(&app, &id).await, "OFFLINE", "the removal was noticed");
        round(&scheduler, 5, true).await;
        assert_eq!(state(&app, &id).await, "OFFLINE");

        // Uploaded again after a check found none: presented too.
        upload_token(&app, &id).await;
        round(&scheduler, 6, false).await;
        assert_eq!(
            state(&app, &id).await,
            "ONLINE",
            "the second upload was presented"
        );
        let changes = transitions(&events_of(&app, &id, "CLUSTER_STATUS_CHANGED").await);
        let dropped = changes
            .iter()
            .filter(|(old, new)| old == "ONLINE" && new == "OFFLINE")
            .count();
        assert_eq!(dropped, 1, "only the removal took it offline: {changes:?}");
    }

    on_both_stores!(yearly);
}
