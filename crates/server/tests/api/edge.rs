//! The edge registry and push-sync (issue 13, seed
//! service-registry-push-sync.md): domains, nodes, services and routing
//! through the API; each node's configuration pushed on its stream at every
//! change and acknowledged; retries, failure, liveness and failover,
//! reconciliation; agent tokens; two replicas on one database.

use crate::helpers::{assert_error, client_with_token, ok_json, run_sql, wait_for, TestApp};
use fleetreg_server::settings::Settings;
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

/// The seed's registry: two domains (with region tags), two VPS nodes, one
/// laptop, immich (round-robin) and open-webui (primary-backup).
pub async fn seed_registry(app: &TestApp) {
    for (name, description, region) in [
        ("curiios.com", "Personal site", "eu"),
        ("vinaysachdeva.com", "Professional site", "us"),
    ] {
        let body = json!({"name": name, "description": description, "region": region});
        ok_json(app.post_json("/api/v1/domains", body).await).await;
    }
    for body in [
        json!({"name": "vps1", "kind": "vps", "overlay_address": "100.68.225.92",
               "public_address": "45.8.133.192", "region": "eu", "provider": "contabo", "user": "root"}),
        json!({"name": "vps2", "kind": "vps", "overlay_address": "100.70.123.45",
               "public_address": "167.99.1.1", "region": "us", "provider": "digitalocean", "user": "root"}),
        json!({"name": "laptop", "kind": "laptop", "overlay_address": "100.86.112.112", "user": "vinay"}),
    ] {
        ok_json(app.post_json("/api/v1/nodes", body).await).await;
    }
    for (name, subdomain, upstreams) in [
        (
            "immich",
            "photos",
            json!(["127.0.0.1:2283", "127.0.0.1:2284"]),
        ),
        ("open-webui", "chat", json!(["127.0.0.1:3000"])),
    ] {
        let body = json!({"name": name, "subdomain": subdomain, "upstreams": upstreams});
        ok_json(app.post_json("/api/v1/services", body).await).await;
    }
    configure(app, "immich", "round-robin").await;
    configure(app, "open-webui", "primary-backup").await;
}

/// `PUT /api/v1/routing/{service}` over both domains and both VPS nodes.
pub async fn configure(app: &TestApp, service: &str, strategy: &str) -> Value {
    let body = json!({"domains": ["curiios.com", "vinaysachdeva.com"],
                      "nodes": ["vps1", "vps2"], "strategy": strategy});
    let response = app
        .client
        .put(app.url(&format!("/api/v1/routing/{service}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    ok_json(response).await
}

/// The serving node of each hostname in `GET /api/v1/routes`.
async fn serving(app: &TestApp) -> Vec<(String, String)> {
    let table = ok_json(app.get("/api/v1/routes").await).await;
    table["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["hostname"].as_str().unwrap().to_owned(),
                r["serving"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn node_sync(app: &TestApp, node: &str) -> Value {
    let health = ok_json(app.get("/api/v1/sync/health").await).await;
    health["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == node)
        .cloned()
        .unwrap_or_else(|| panic!("{node} in {health}"))
}

async fn ack(app: &TestApp, node: &str, body: Value) -> Value {
    ok_json(
        app.post_json(&format!("/api/v1/nodes/{node}/ack"), body)
            .await,
    )
    .await
}

async fn events_of(app: &TestApp, event_type: &str) -> Vec<Value> {
    let page = ok_json(app.get("/api/v1/events?limit=1000").await).await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == event_type)
        .cloned()
        .collect()
}

/// An open config stream: its frames' JSON documents, one by one.
struct ConfigStream {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl ConfigStream {
    async fn open(app: &TestApp, client: &reqwest::Client, node: &str) -> ConfigStream {
        let response = client
            .get(app.url(&format!("/api/v1/nodes/{node}/config/stream")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        ConfigStream {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next `config` frame's document, within `limit`.
    async fn next(&mut self, limit: Duration) -> Value {
        tokio::time::timeout(limit, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let frame: String = self.buffer.drain(..end + 2).collect();
                    if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                        return serde_json::from_str(data).unwrap();
                    }
                    continue;
                }
                let chunk = self.body.next().await.expect("stream open").unwrap();
                self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .expect("a config frame in time")
    }
}

api_test!(the_seed_registry_routes_and_renders, |app| {
    seed_registry(&app).await;
    let routes = serving(&app).await;
    let expect = [
        ("chat.curiios.com", "vps1"),
        ("chat.vinaysachdeva.com", "vps1"),
        ("photos.curiios.com", "vps1"),
        ("photos.vinaysachdeva.com", "vps2"),
    ];
    let expect: Vec<(String, String)> = expect
        .iter()
        .map(|(h, n)| (h.to_string(), n.to_string()))
        .collect();
    assert_eq!(routes, expect);

    let vps2 = ok_json(app.get("/api/v1/nodes/vps2/config").await).await;
    let hostnames: Vec<&str> = vps2["config"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["hostname"].as_str().unwrap())
        .collect();
    // vps2 serves photos.vinaysachdeva.com and stands by for the rest.
    assert_eq!(
        hostnames,
        [
            "chat.curiios.com",
            "chat.vinaysachdeva.com",
            "photos.curiios.com",
            "photos.vinaysachdeva.com"
        ]
    );
    assert!(vps2["revision"].as_i64().unwrap() > 0);

    for (node, format, needle) in [
        ("vps1", "traefik", "Host(`chat.curiios.com`)"),
        ("vps1", "caddy", "\"chat.curiios.com\""),
        ("laptop", "hosts", "100.68.225.92 chat.curiios.com"),
        ("laptop", "zone", "$ORIGIN curiios.com."),
    ] {
        let response = app
            .get(&format!("/api/v1/nodes/{node}/config?format={format}"))
            .await;
        assert_eq!(response.status(), 200, "{node} {format}");
        let text = response.text().await.unwrap();
        assert!(text.contains(needle), "{node} {format}: {text}");
    }
    let wrong = app.get("/api/v1/nodes/laptop/config?format=traefik").await;
    assert_error(wrong, 400, "VALIDATION_ERROR").await;

    let view = ok_json(app.get("/api/v1/routing/immich").await).await;
    assert_eq!(view["strategy"], "round-robin");
    let listed = ok_json(app.get("/api/v1/nodes?kind=laptop").await).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
});

api_test!(bad_input_and_conflicts_are_typed, |app| {
    seed_registry(&app).await;
    let again = json!({"name": "curiios.com", "description": "again"});
    assert_error(
        app.post_json("/api/v1/domains", again).await,
        409,
        "DOMAIN_ALREADY_EXISTS",
    )
    .await;
    let bad = json!({"name": "not a domain"});
    let body = assert_error(
        app.post_json("/api/v1/domains", bad).await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "name");
    let same_address = json!({"name": "vps3", "kind": "vps", "overlay_address": "100.68.225.92",
                              "public_address": "45.8.133.193"});
    let body = assert_error(
        app.post_json("/api/v1/nodes", same_address).await,
        409,
        "NODE_ADDRESS_TAKEN",
    )
    .await;
    assert_eq!(body["error"]["details"]["node"], "vps1");
    let unknown_node = json!({"domains": ["curiios.com"], "nodes": ["nowhere"], "strategy": "geo"});
    let response = app
        .client
        .put(app.url("/api/v1/routing/immich"))
        .json(&unknown_node)
        .send()
        .await
        .unwrap();
    assert_error(response, 404, "NODE_NOT_FOUND").await;
    let laptop = json!({"domains": ["curiios.com"], "nodes": ["laptop"], "strategy": "geo"});
    let response = app
        .client
        .put(app.url("/api/v1/routing/immich"))
        .json(&laptop)
        .send()
        .await
        .unwrap();
    let body = assert_error(response, 400, "VALIDATION_ERROR").await;
    assert_eq!(body["error"]["details"]["field"], "nodes");
    let in_use = app
        .client
        .delete(app.url("/api/v1/domains/curiios.com"))
        .send()
        .await
        .unwrap();
    let body = assert_error(in_use, 409, "RESOURCE_IN_USE").await;
    assert!(body["error"]["details"]["services"]
        .as_array()
        .unwrap()
        .contains(&json!("immich")));
    let stale = app
        .client
        .put(app.url("/api/v1/domains/curiios.com"))
        .header("if-match", "\"999999\"")
        .json(&json!({"description": "new"}))
        .send()
        .await
        .unwrap();
    assert_error(stale, 412, "PRECONDITION_FAILED").await;
    assert_error(
        app.get("/api/v1/nodes/nowhere").await,
        404,
        "NODE_NOT_FOUND",
    )
    .await;
    assert_error(
        app.get("/api/v1/domains/nowhere.test").await,
        404,
        "DOMAIN_NOT_FOUND",
    )
    .await;
    let reserved = json!({"name": "sync", "upstreams": ["127.0.0.1:1"]});
    assert_error(
        app.post_json("/api/v1/services", reserved).await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
    let taken = json!({"name": "immich", "upstreams": ["127.0.0.1:1"]});
    assert_error(
        app.post_json("/api/v1/services", taken).await,
        409,
        "SERVICE_ALREADY_EXISTS",
    )
    .await;
    let vps_again = json!({"name": "vps1", "kind": "vps", "overlay_address": "100.99.0.1",
                           "public_address": "192.0.2.99"});
    assert_error(
        app.post_json("/api/v1/nodes", vps_again).await,
        409,
        "NODE_ALREADY_EXISTS",
    )
    .await;
    assert_error(
        app.get("/api/v1/services/NOPE").await,
        404,
        "SERVICE_NOT_FOUND",
    )
    .await;
    assert_error(
        app.get("/api/v1/routing/open").await,
        404,
        "ROUTING_NOT_FOUND",
    )
    .await;
});

api_test!(streams_woken_together_each_get_their_own_node, |app| {
    // One change wakes every stream; they read together (one statement),
    // and each must still get its own node's configuration.
    seed_registry(&app).await;
    let mut streams = Vec::new();
    for node in ["vps1", "vps2", "laptop", "vps1", "vps2", "laptop"] {
        let mut stream = ConfigStream::open(&app, &app.client, node).await;
        let first = stream.next(Duration::from_secs(5)).await;
        assert_eq!(first["node"], node);
        streams.push((node, stream, first["revision"].as_i64().unwrap()));
    }
    configure(&app, "open-webui", "round-robin").await;
    for (node, stream, before) in &mut streams {
        let mut pushed = stream.next(Duration::from_secs(5)).await;
        while pushed["revision"].as_i64().unwrap() == *before {
            pushed = stream.next(Duration::from_secs(5)).await;
        }
        let stored = ok_json(app.get(&format!("/api/v1/nodes/{node}/config")).await).await;
        assert_eq!(pushed, stored, "{node}");
    }
});

api_test!(a_bad_row_fails_only_its_own_nodes_read, |app| {
    // Reads asked together are served by one statement; vps2's stored
    // configuration does not decode, and only vps2's ask fails.
    seed_registry(&app).await;
    run_sql(
        &app,
        "UPDATE edge_node_sync SET desired_config = '{\"not\": \"a configuration\"}' \
         WHERE node_id = (SELECT id FROM edge_nodes WHERE name = 'vps2')",
    )
    .await;
    let reads = fleetreg_server::edge_sync::ConfigReads::new(app.store.clone());
    let label = |name: &str| fleetreg_model::DnsLabel::parse("node", name).unwrap();
    let (vps1, laptop, vps2, gone) = (label("vps1"), label("laptop"), label("vps2"), label("gone"));
    // The first ask starts a read by itself; the others, asked while it
    // runs, are read together by the next.
    let (first, vps2_read, laptop_read, gone_read) = tokio::join!(
        reads.read(&vps1),
        reads.read(&vps2),
        reads.read(&laptop),
        reads.read(&gone)
    );
    for (node, read) in [("vps1", first), ("laptop", laptop_read)] {
        let desired = read.unwrap().unwrap();
        assert_eq!(desired.config.node.as_str(), node);
    }
    let error = vps2_read.unwrap_err();
    assert!(
        matches!(*error, fleetreg_store::StoreError::Corrupt(_)),
        "{error}"
    );
    assert!(gone_read.unwrap().is_none());
});

api_test!(a_change_is_pushed_to_the_stream_and_acknowledged, |app| {
    seed_registry(&app).await;
    let mut stream = ConfigStream::open(&app, &app.client, "laptop").await;
    let first = stream.next(Duration::from_secs(5)).await;
    let revision = first["revision"].as_i64().unwrap();
    assert_eq!(first["config"]["records"].as_array().unwrap().len(), 4);
    let synced = ack(&app, "laptop", json!({"applied_revision": revision})).await;
    assert_eq!(synced["status"], "active");
    assert_eq!(synced["applied_revision"], revision);

    configure(&app, "open-webui", "round-robin").await;
    // A stream may see a configuration again (a late wake-up, a re-send):
    // the agent applies it idempotently; the change comes after.
    let mut pushed = stream.next(Duration::from_secs(5)).await;
    while pushed["revision"].as_i64().unwrap() == revision {
        pushed = stream.next(Duration::from_secs(5)).await;
    }
    let next = pushed["revision"].as_i64().unwrap();
    assert!(next > revision, "{next} > {revision}");
    let chat_vs = pushed["config"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["hostname"] == "chat.vinaysachdeva.com")
        .cloned()
        .unwrap();
    assert_eq!(chat_vs["address"], "100.70.123.45", "round-robin: vps2");
    let sync = node_sync(&app, "laptop").await;
    assert_eq!(sync["desired_revision"], next);
    ack(&app, "laptop", json!({"applied_revision": next})).await;
    let sync = node_sync(&app, "laptop").await;
    assert_eq!(sync["applied_revision"], next);
    assert!(sync["last_sync_at"].is_string());

    // A change that leaves the laptop's records alone is not pushed to it.
    let unrelated = json!({"name": "grafana", "upstreams": ["127.0.0.1:3001"]});
    ok_json(app.post_json("/api/v1/services", unrelated).await).await;
    assert_eq!(node_sync(&app, "laptop").await["desired_revision"], next);

    let failed = ack(
        &app,
        "laptop",
        json!({"failed_revision": next, "error": "reload failed: exit 1"}),
    )
    .await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["last_error"], "reload failed: exit 1");
});

api_test!(agent_tokens_reach_only_their_node, |app| {
    seed_registry(&app).await;
    let created = ok_json(app.post_json("/api/v1/nodes/laptop/token", json!({})).await).await;
    assert_eq!(created["role"], "agent");
    assert_eq!(created["node"], "laptop");
    let agent = client_with_token(created["token"].as_str().unwrap());
    let own = agent
        .get(app.url("/api/v1/nodes/laptop/config"))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    for path in [
        "/api/v1/nodes/vps1/config",
        "/api/v1/clusters",
        "/api/v1/nodes",
    ] {
        let other = agent.get(app.url(path)).send().await.unwrap();
        assert_error(other, 403, "FORBIDDEN").await;
    }
    let acked = agent
        .post(app.url("/api/v1/nodes/laptop/ack"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(acked.status(), 200);
    let not_own = agent
        .post(app.url("/api/v1/nodes/vps1/ack"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_error(not_own, 403, "FORBIDDEN").await;
    // A new token for the node replaces the old one.
    ok_json(app.post_json("/api/v1/nodes/laptop/token", json!({})).await).await;
    let old = agent
        .get(app.url("/api/v1/nodes/laptop/config"))
        .send()
        .await
        .unwrap();
    assert_error(old, 401, "UNAUTHENTICATED").await;
    let minted = json!({"name": "sneaky", "role": "agent"});
    assert_error(
        app.post_json("/api/v1/tokens", minted).await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
});

/// Retries every 100 ms (then 200, 400 ms), ticks every 50 ms.
fn fast_controller(settings: &mut Settings) {
    settings.edge.push_retry_base_ms = 100;
    settings.edge.controller_tick_ms = 50;
}

mod an_unanswered_node_fails_after_three_retries {
    use super::*;

    async fn body(app: TestApp) {
        let body = json!({"name": "silent", "kind": "laptop", "overlay_address": "100.64.0.9"});
        ok_json(app.post_json("/api/v1/nodes", body).await).await;
        wait_for("the node to fail", Duration::from_secs(10), || async {
            (node_sync(&app, "silent").await["status"] == "failed").then_some(())
        })
        .await;
        let pushes = events_of(&app, "NODE_PUSH").await;
        let attempts: Vec<i64> = pushes
            .iter()
            .map(|e| e["payload"]["attempt"].as_i64().unwrap())
            .collect();
        assert_eq!(attempts, [1, 2, 3], "three retries: {pushes:?}");
        let times: Vec<chrono::DateTime<chrono::Utc>> = pushes
            .iter()
            .map(|e| e["occurred_at"].as_str().unwrap().parse().unwrap())
            .collect();
        assert!(
            times[2] - times[1] > times[1] - times[0],
            "growing delays: {times:?}"
        );
        let changes = events_of(&app, "NODE_SYNC_CHANGED").await;
        assert_eq!(changes.last().unwrap()["payload"]["new_status"], "failed");

        // The seed's manual recovery: push.
        let pushed = ok_json(
            app.post_json("/api/v1/sync/push", json!({"node": "silent"}))
                .await,
        )
        .await;
        assert_eq!(pushed["pushed"], json!(["silent"]));
        let sync = node_sync(&app, "silent").await;
        assert_ne!(sync["status"], "failed");
        assert_eq!(sync["push_attempts"], 0);
    }

    on_both_stores!(fast_controller);
}

/// A manual clock (liveness is judged by it) and a fast controller.
fn liveness(settings: &mut Settings) {
    crate::rbac::manual_clock(settings);
    fast_controller(settings);
}

mod a_silent_primary_fails_over_and_back {
    use super::*;

    async fn body(app: TestApp) {
        seed_registry(&app).await;
        for node in ["vps1", "vps2", "laptop"] {
            ack(&app, node, json!({})).await;
        }
        assert!(serving(&app)
            .await
            .contains(&("chat.curiios.com".into(), "vps1".into())));
        app.clock.advance(chrono::Duration::seconds(20));
        ack(&app, "vps2", json!({})).await;
        ack(&app, "laptop", json!({})).await;
        app.clock.advance(chrono::Duration::seconds(15));
        wait_for("chat to move to vps2", Duration::from_secs(10), || async {
            serving(&app)
                .await
                .contains(&("chat.curiios.com".into(), "vps2".into()))
                .then_some(())
        })
        .await;
        let sync = node_sync(&app, "vps1").await;
        assert_eq!(sync["up"], false, "{sync}");
        assert_ne!(sync["status"], "active", "{sync}");
        let moves = events_of(&app, "ROUTING_FAILOVER").await;
        assert!(
            moves
                .iter()
                .any(|e| e["payload"]["hostname"] == "chat.curiios.com"
                    && e["payload"]["from"] == "vps1"
                    && e["payload"]["to"] == "vps2"),
            "{moves:?}"
        );
        let audit = ok_json(app.get("/api/v1/audit?action=routing.failover").await).await;
        assert!(
            !audit["items"].as_array().unwrap().is_empty(),
            "each move is audited: {audit}"
        );
        // The laptop's DNS follows.
        let laptop = ok_json(app.get("/api/v1/nodes/laptop/config").await).await;
        assert!(laptop["config"]["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| { r["hostname"] == "chat.curiios.com" && r["address"] == "100.70.123.45" }));

        ack(&app, "vps1", json!({})).await;
        assert!(serving(&app)
            .await
            .contains(&("chat.curiios.com".into(), "vps1".into())));
        let back = events_of(&app, "ROUTING_FAILOVER").await;
        assert!(
            back.iter().any(|e| e["payload"]["to"] == "vps1"),
            "{back:?}"
        );
    }

    on_both_stores!(liveness);
}

api_test!(metrics_count_nodes_by_sync_status, |app| {
    seed_registry(&app).await;
    let desired = node_sync(&app, "laptop").await["desired_revision"].clone();
    ack(&app, "laptop", json!({"applied_revision": desired})).await;
    ack(&app, "vps1", json!({})).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    // laptop in sync; vps1 heard from but behind; vps2 never heard from.
    for line in [
        "fleetreg_edge_nodes{status=\"active\"} 2",
        "fleetreg_edge_nodes{status=\"failed\"} 0",
        "fleetreg_edge_nodes{status=\"offline\"} 1",
        "fleetreg_edge_nodes_out_of_sync 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
});

api_test!(reconcile_sends_every_node_and_takes_an_interval, |app| {
    seed_registry(&app).await;
    let answer = ok_json(
        app.post_json("/api/v1/sync/reconcile", json!({"every_seconds": 14400}))
            .await,
    )
    .await;
    assert_eq!(answer["every_seconds"], 14400);
    assert_eq!(answer["pushed"].as_array().unwrap().len(), 3);
    let too_often = json!({"every_seconds": 5});
    let body = assert_error(
        app.post_json("/api/v1/sync/reconcile", too_often).await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "every_seconds");
    let reasons: Vec<Value> = events_of(&app, "NODE_PUSH")
        .await
        .iter()
        .map(|e| e["payload"]["reason"].clone())
        .collect();
    assert!(reasons.iter().all(|r| r == "reconcile"), "{reasons:?}");
    assert_eq!(reasons.len(), 3);
});

api_test!(
    reconcile_restores_configurations_the_plan_makes_now,
    |app| {
        // vps2's configuration as an older version stored it: a backup without
        // the routes it stands by for, at an old revision.
        seed_registry(&app).await;
        let current = ok_json(app.get("/api/v1/nodes/vps2/config").await).await;
        let mut stale = current["config"].clone();
        stale["routes"] = json!([]);
        run_sql(
            &app,
            &format!(
                "UPDATE edge_node_sync SET desired_config = '{stale}', desired_revision = 1 \
             WHERE node_id = (SELECT id FROM edge_nodes WHERE name = 'vps2')"
            ),
        )
        .await;
        let before = ok_json(app.get("/api/v1/nodes/vps2/config").await).await;
        assert_eq!(before["config"]["routes"], json!([]));

        ok_json(app.post_json("/api/v1/sync/reconcile", json!({})).await).await;
        let after = ok_json(app.get("/api/v1/nodes/vps2/config").await).await;
        assert_eq!(after["config"], current["config"]);
        assert!(after["revision"].as_i64().unwrap() > current["revision"].as_i64().unwrap());
        let changed: Vec<Value> = events_of(&app, "NODE_CONFIG_CHANGED")
            .await
            .into_iter()
            .filter(|e| e["revision"].as_i64() == after["revision"].as_i64())
            .collect();
        assert_eq!(changed.len(), 1, "only vps2's differed: {changed:?}");
        assert_eq!(changed[0]["payload"]["node"], "vps2");
        // A manual push of one node re-sends, it does not recompute.
        ok_json(
            app.post_json("/api/v1/sync/push", json!({"node": "vps2"}))
                .await,
        )
        .await;
        let again = ok_json(app.get("/api/v1/nodes/vps2/config").await).await;
        assert_eq!(again["revision"], after["revision"]);
    }
);

/// The periodic reconciliations the controller ran (audited as the system).
async fn periodic_reconciles(app: &TestApp) -> usize {
    let audit = ok_json(app.get("/api/v1/audit?action=sync.reconcile").await).await;
    audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["actor"] == "system:reconcile")
        .count()
}

/// `GET /api/v1/sync/health`'s `reconcile` object.
async fn reconcile_status(app: &TestApp) -> Value {
    ok_json(app.get("/api/v1/sync/health").await).await["reconcile"].clone()
}

/// `sync reconcile --every 4h` is stored: a restarted server (whose
/// configuration still says hourly) and another replica show it, and the
/// controller reconciles at 4 h, not at 1 h.
mod the_reconcile_interval_outlasts_a_restart {
    use super::*;

    async fn body(app: TestApp) {
        seed_registry(&app).await;
        let before = reconcile_status(&app).await;
        assert_eq!(before["every_seconds"], 3600, "{before}");
        assert_eq!(before["source"], "config", "{before}");
        let answer = app
            .post_json("/api/v1/sync/reconcile", json!({"every_seconds": 14_400}))
            .await;
        assert_eq!(ok_json(answer).await["every_seconds"], 14_400);
        let audit = ok_json(
            app.get("/api/v1/audit?action=sync.reconcile_interval")
                .await,
        )
        .await;
        assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");

        let clock = app.clock.clone();
        let same_clock = clock.clone();
        let app = app
            .restart_with(move |settings| {
                settings.clock = same_clock;
                fast_controller(settings);
            })
            .await;
        let after = reconcile_status(&app).await;
        assert_eq!(after["every_seconds"], 14_400, "{after}");
        assert_eq!(after["source"], "stored", "{after}");
        assert_eq!(after["next_in_seconds"], 14_400, "{after}");
        if app.backend == crate::helpers::Backend::Postgres {
            let replica = app
                .spawn_replica_with(|settings| settings.edge.reconcile_seconds = 60)
                .await;
            assert_eq!(reconcile_status(&replica).await["every_seconds"], 14_400);
        }

        // Two hours on (the configuration's hourly one would be overdue):
        // the controller has ticked (the heartbeat-less laptop went offline)
        // and not reconciled.
        ack(&app, "laptop", json!({})).await;
        assert_eq!(node_sync(&app, "laptop").await["status"], "active");
        clock.advance(chrono::Duration::hours(2));
        wait_for("a tick after 2 h", Duration::from_secs(10), || async {
            (node_sync(&app, "laptop").await["status"] == "offline").then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(periodic_reconciles(&app).await, 0);
        // At four hours it does, and the next is four hours later.
        clock.advance(chrono::Duration::hours(2));
        wait_for(
            "the periodic reconciliation",
            Duration::from_secs(10),
            || async { (periodic_reconciles(&app).await == 1).then_some(()) },
        )
        .await;
        let next = reconcile_status(&app).await;
        assert_eq!(next["next_in_seconds"], 14_400, "{next}");
    }

    on_both_stores!(liveness);
}

/// Two replicas on one PostgreSQL database: a stream on one replica gets a
/// change made through the other, and retries run once, not once per replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_pushes_and_one_controller() {
    let Some(a) =
        crate::helpers::spawn_app_with(crate::helpers::Backend::Postgres, fast_controller).await
    else {
        return;
    };
    let b = a.spawn_replica_with(fast_controller).await;
    seed_registry(&a).await;
    let mut on_b = ConfigStream::open(&b, &b.client, "laptop").await;
    let first = on_b.next(Duration::from_secs(5)).await["revision"]
        .as_i64()
        .unwrap();
    configure(&a, "open-webui", "round-robin").await;
    let pushed = on_b.next(Duration::from_secs(5)).await["revision"]
        .as_i64()
        .unwrap();
    assert!(pushed > first);

    let body = json!({"name": "silent", "kind": "laptop", "overlay_address": "100.64.0.9"});
    ok_json(a.post_json("/api/v1/nodes", body).await).await;
    wait_for("the node to fail", Duration::from_secs(10), || async {
        (node_sync(&a, "silent").await["status"] == "failed").then_some(())
    })
    .await;
    let retries = events_of(&a, "NODE_PUSH")
        .await
        .into_iter()
        .filter(|e| e["payload"]["node"] == "silent")
        .count();
    assert_eq!(retries, 3, "one controller across both replicas");
}

mod a_restart_loses_no_pending_push {
    use super::*;

    async fn body(app: TestApp) {
        seed_registry(&app).await;
        let first = ok_json(app.get("/api/v1/nodes/laptop/config").await).await;
        ack(
            &app,
            "laptop",
            json!({"applied_revision": first["revision"]}),
        )
        .await;
        // A change nobody has applied yet, then the server goes away.
        configure(&app, "open-webui", "round-robin").await;
        let desired = node_sync(&app, "laptop").await["desired_revision"].clone();
        assert_ne!(desired, first["revision"]);
        let app = app.restart_with(fast_controller).await;
        let mut stream = ConfigStream::open(&app, &app.client, "laptop").await;
        let sent = stream.next(Duration::from_secs(5)).await;
        assert_eq!(
            sent["revision"], desired,
            "the pending change is sent on reconnect"
        );
        // And the restarted controller still retries it until acknowledged.
        wait_for(
            "a retry after the restart",
            Duration::from_secs(10),
            || async {
                let retried = events_of(&app, "NODE_PUSH").await.iter().any(|e| {
                    e["payload"]["node"] == "laptop" && e["payload"]["desired_revision"] == desired
                });
                retried.then_some(())
            },
        )
        .await;
        ack(&app, "laptop", json!({"applied_revision": desired})).await;
        assert_eq!(node_sync(&app, "laptop").await["status"], "active");
    }

    on_both_stores!(|_: &mut Settings| {});
}
