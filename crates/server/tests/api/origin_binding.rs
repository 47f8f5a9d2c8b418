//! Credentials bound to the origins they were validated against (issue 11,
//! item 1): a cluster update moving a URL to another origin stops them being
//! presented anywhere (status, event and audit entry say so) until they are
//! uploaded again or re-bound by an admin (`POST …/credentials/rebind`); bearer tokens never go
//! over plain http except to loopback.

use crate::helpers::*;
use fleetreg_sim::SpawnedSim;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain TCP listener on 127.0.0.1 recording the head (request line and
/// headers) of every HTTP request, answering each `200 {}`.
struct HeaderSink {
    base: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl HeaderSink {
    async fn start() -> HeaderSink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let recorded = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    recorded
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&head).into_owned());
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                  content-length: 2\r\nconnection: close\r\n\r\n{}";
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        HeaderSink { base, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// The status of a cluster (`GET …/status`).
async fn status_of(app: &TestApp, id: &str) -> Value {
    let response = app.get(&format!("/api/v1/clusters/{id}/status")).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// `(result, error_code)` of each audit entry of `action` on cluster `id`.
async fn audited(app: &TestApp, action: &str, id: &str) -> Vec<(String, Value)> {
    let response = app
        .get(&format!("/api/v1/audit?action={action}&resource_id={id}"))
        .await;
    assert_eq!(response.status(), 200);
    let list: Value = response.json().await.unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["result"].as_str().unwrap().to_owned(),
                e["error_code"].clone(),
            )
        })
        .collect()
}

/// The payloads of every `CLUSTER_CREDENTIALS_UPDATED` event of cluster `id`.
async fn credential_events(app: &TestApp, id: &str) -> Vec<Value> {
    let events: Value = app
        .get("/api/v1/events?after=0&limit=1000")
        .await
        .json()
        .await
        .unwrap();
    events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "CLUSTER_CREDENTIALS_UPDATED" && e["resource_id"] == id)
        .map(|e| e["payload"].clone())
        .collect()
}

/// `PUT /clusters/{id}` with `body`, asserting 200.
async fn move_to(app: &TestApp, id: &str, body: Value) {
    let response = app.put_cluster(id, &body).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
}

/// `POST …/credentials/{action}` (`validate` or `rebind`) with `client`.
async fn credentials_action(
    app: &TestApp,
    client: &reqwest::Client,
    id: &str,
    action: &str,
) -> reqwest::Response {
    client
        .post(app.url(&format!("/api/v1/clusters/{id}/credentials/{action}")))
        .send()
        .await
        .unwrap()
}

/// The bearer tokens the API server and Prometheus of `cluster` saw after `after`.
async fn tokens_seen(sim: &SpawnedSim, cluster: &str, after: u64) -> Vec<Option<String>> {
    let log = sim.admin().requests(after, Some(cluster)).await.unwrap();
    log.items.iter().map(|r| r.bearer_token.clone()).collect()
}

api_test!(
    moving_a_url_elsewhere_stops_the_credentials_being_presented,
    |app| {
        let sim = SpawnedSim::start().await.unwrap();
        let view = target(&sim, "exfil", "api-secret-1", "prom-secret-1").await;
        let id = register_with_prometheus(&app, &view).await;
        put_token(&app, &id, "api-secret-1", "prom-secret-1", "").await;
        assert_eq!(credentials_of(&app, &id).await["binding"], "BOUND");

        // The reproduction: the cluster's URLs moved to a listener of the
        // operator's choosing, over plain http, then a refresh.
        let sink = HeaderSink::start().await;
        move_to(
            &app,
            &id,
            json!({ "api_server_url": format!("{}/x", sink.base),
                "endpoints": { "prometheus_url": format!("{}/y", sink.base) } }),
        )
        .await;
        let credentials = credentials_of(&app, &id).await;
        assert_eq!(credentials["binding"], "ORIGIN_CHANGED", "{credentials}");
        assert!(credentials["unbound_at"].is_string(), "{credentials}");
        assert_eq!(
            credentials["bound_origins"]["api_server"],
            fleetreg_model::origin_of(&view.api_server_url).unwrap()
        );
        let _ = refresh(&app, &id).await;
        // Validation without rebind answers without contacting anything.
        let body = assert_error(
            credentials_action(&app, &app.client, &id, "validate").await,
            409,
            "CREDENTIALS_ORIGIN_CHANGED",
        )
        .await;
        assert_eq!(
            body["error"]["details"]["moved"],
            json!(["api_server", "prometheus"])
        );

        let heads = sink.heads();
        assert!(!heads.is_empty(), "the check ran, anonymously");
        for head in &heads {
            let lower = head.to_ascii_lowercase();
            assert!(!lower.contains("authorization"), "{head}");
            assert!(!head.contains("secret-1"), "{head}");
        }
        let status = status_of(&app, &id).await;
        let reason = status["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("ORIGIN_CHANGED"), "{status}");

        let events = credential_events(&app, &id).await;
        assert!(
            events.contains(&json!({ "cluster_id": id, "binding": "ORIGIN_CHANGED",
                                 "moved": ["api_server", "prometheus"] })),
            "{events:?}"
        );
        assert_eq!(
            audited(&app, "credentials.unbind", &id).await,
            [("success".to_owned(), Value::Null)]
        );
        assert_eq!(
            audited(&app, "credentials.validate", &id).await,
            [("failure".to_owned(), json!("CREDENTIALS_ORIGIN_CHANGED"))]
        );

        // Back at the old origin they stay withheld: only an upload or an
        // explicit re-validation binds them again.
        let after = log_position(&sim);
        move_to(
            &app,
            &id,
            json!({ "api_server_url": view.api_server_url,
                "endpoints": { "prometheus_url": view.prometheus_url } }),
        )
        .await;
        let _ = refresh(&app, &id).await;
        assert_eq!(credentials_of(&app, &id).await["binding"], "ORIGIN_CHANGED");
        let seen = tokens_seen(&sim, "exfil", after).await;
        assert!(!seen.is_empty());
        assert!(seen.iter().all(Option::is_none), "{seen:?}");
    }
);

/// Two simulators (kept running by the caller): the same cluster at two
/// origins, accepting the same tokens; its view on each.
async fn two_origins(
    name: &str,
) -> (
    SpawnedSim,
    SpawnedSim,
    fleetreg_sim::ClusterView,
    fleetreg_sim::ClusterView,
) {
    let (a, b) = (
        SpawnedSim::start().await.unwrap(),
        SpawnedSim::start().await.unwrap(),
    );
    let here = target(&a, name, "api-secret-2", "prom-secret-2").await;
    let there = target(&b, name, "api-secret-2", "prom-secret-2").await;
    (a, b, here, there)
}

api_test!(uploading_again_binds_them_to_the_new_origin, |app| {
    let (_a, b, here, there) = two_origins("reupload").await;
    let id = register_with_prometheus(&app, &here).await;
    put_token(&app, &id, "api-secret-2", "prom-secret-2", "").await;
    move_to(
        &app,
        &id,
        json!({ "api_server_url": there.api_server_url,
                "endpoints": { "prometheus_url": there.prometheus_url } }),
    )
    .await;
    let after = log_position(&b);
    let _ = refresh(&app, &id).await;
    let seen = tokens_seen(&b, "reupload", after).await;
    assert!(
        !seen.is_empty() && seen.iter().all(Option::is_none),
        "{seen:?}"
    );

    put_token(&app, &id, "api-secret-2", "prom-secret-2", "").await;
    let credentials = credentials_of(&app, &id).await;
    assert_eq!(credentials["binding"], "BOUND", "{credentials}");
    assert_eq!(
        credentials["bound_origins"]["api_server"],
        fleetreg_model::origin_of(&there.api_server_url).unwrap()
    );
    let after = log_position(&b);
    refresh_ok(&app, &id).await;
    let seen = tokens_seen(&b, "reupload", after).await;
    assert!(seen.contains(&Some("api-secret-2".into())), "{seen:?}");
    assert!(seen.contains(&Some("prom-secret-2".into())), "{seen:?}");
});

api_test!(
    an_explicit_revalidation_rebinds_them_and_is_audited,
    |app| {
        let (_a, b, here, there) = two_origins("revalidate").await;
        let id = register_with_prometheus(&app, &here).await;
        put_token(&app, &id, "api-secret-2", "prom-secret-2", "").await;

        // To an origin that refuses them: nothing is bound, the attempt audited.
        let sink = HeaderSink::start().await;
        let elsewhere = SpawnedSim::start().await.unwrap();
        let stranger = elsewhere
            .admin()
            .create_cluster_with_auth(
                "revalidate",
                fleetreg_sim::ClusterSpec::default(),
                fleetreg_sim::AuthSpec {
                    required: true,
                    ..fleetreg_sim::AuthSpec::default()
                },
            )
            .await
            .unwrap();
        move_to(
            &app,
            &id,
            json!({ "api_server_url": stranger.api_server_url,
                "endpoints": { "prometheus_url": sink.base } }),
        )
        .await;
        // Only an admin may send the stored secrets to where an operator moved the URLs.
        let operator = crate::rbac::create_token(&app, "mover", "operator", None).await;
        let operator = client_with_token(operator["token"].as_str().unwrap());
        assert_error(
            credentials_action(&app, &operator, &id, "rebind").await,
            403,
            "FORBIDDEN",
        )
        .await;
        assert_error(
            credentials_action(&app, &app.client, &id, "rebind").await,
            400,
            "CREDENTIALS_INVALID",
        )
        .await;
        assert_eq!(credentials_of(&app, &id).await["binding"], "ORIGIN_CHANGED");

        // To the origin that accepts them: bound, audited, presented again.
        move_to(
            &app,
            &id,
            json!({ "api_server_url": there.api_server_url,
                "endpoints": { "prometheus_url": there.prometheus_url } }),
        )
        .await;
        let response = credentials_action(&app, &app.client, &id, "rebind").await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["status"], "rebound", "{answer}");
        assert_eq!(answer["validation"]["api_server"], "success");
        assert_eq!(answer["version"], 1, "same secrets, same version");
        assert_eq!(credentials_of(&app, &id).await["binding"], "BOUND");
        assert_eq!(
            audited(&app, "credentials.rebind", &id).await,
            [
                ("failure".to_owned(), json!("FORBIDDEN")),
                ("failure".to_owned(), json!("CREDENTIALS_INVALID")),
                ("success".to_owned(), Value::Null)
            ]
        );
        let events = credential_events(&app, &id).await;
        let last = events.last().unwrap();
        assert_eq!(last["binding"], "BOUND", "{events:?}");
        let after = log_position(&b);
        refresh_ok(&app, &id).await;
        let seen = tokens_seen(&b, "revalidate", after).await;
        assert!(seen.contains(&Some("api-secret-2".into())), "{seen:?}");
        // The explicit re-validation presented each token to its own component only.
        assert!(sink.heads().iter().all(|h| !h.contains("api-secret-2")));
    }
);

api_test!(a_change_within_the_same_origin_keeps_the_binding, |app| {
    let sim = SpawnedSim::start().await.unwrap();
    let view = target(&sim, "same-origin", "api-secret-3", "prom-secret-3").await;
    let other = target(&sim, "same-origin-b", "api-secret-3", "prom-secret-3").await;
    let id = register_with_prometheus(&app, &view).await;
    put_token(&app, &id, "api-secret-3", "prom-secret-3", "").await;
    // Another path on the same scheme, host and port.
    move_to(
        &app,
        &id,
        json!({ "api_server_url": other.api_server_url,
                "endpoints": { "prometheus_url": other.prometheus_url } }),
    )
    .await;
    assert_eq!(credentials_of(&app, &id).await["binding"], "BOUND");
    let after = log_position(&sim);
    refresh_ok(&app, &id).await;
    let seen = tokens_seen(&sim, "same-origin-b", after).await;
    assert!(seen.contains(&Some("api-secret-3".into())), "{seen:?}");
    assert!(audited(&app, "credentials.unbind", &id).await.is_empty());
});

mod tokens_are_refused_over_plain_http_to_other_than_loopback {
    use super::*;

    // Only loopback is reachable at all: the anonymous discovery after
    // registration is refused by the egress policy, never sent.
    on_both_stores!(|s: &mut fleetreg_server::settings::Settings| {
        s.health_check.allowed_networks = vec!["127.0.0.0/8".into()];
    });

    async fn body(app: TestApp) {
        // 192.0.2.1 is TEST-NET-1: never contacted. The refusal comes before any
        // connection (a connection attempt would time out instead).
        let cluster = app
            .register(
                "plain-http",
                json!({ "api_server_url": "http://192.0.2.1:9/",
                    "endpoints": { "prometheus_url": "http://192.0.2.1:9/prom" } }),
            )
            .await;
        let id = cluster["id"].as_str().unwrap();
        let response = app
            .client
            .post(app.url(&format!("/api/v1/clusters/{id}/credentials")))
            .json(&json!({ "auth_type": "TOKEN", "token": "api-secret-4",
                       "prometheus_token": "prom-secret-4" }))
            .send()
            .await
            .unwrap();
        let body = assert_error(response, 400, "CREDENTIALS_INVALID").await;
        let causes = &body["error"]["details"]["causes"];
        for component in ["api_server", "prometheus"] {
            let cause = causes[component].as_str().unwrap_or_default();
            assert!(
                cause.contains(
                    "refusing to send a bearer token over plain http to http://192.0.2.1:9"
                ),
                "{component}: {body}"
            );
        }
        assert!(!body.to_string().contains("secret-4"));
    }
}
