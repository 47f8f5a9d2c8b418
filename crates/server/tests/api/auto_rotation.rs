//! Automatic rotation of service account tokens (seed 13.3): rounds are driven
//! with `AutoRotation::tick_at` instead of sleeping. A simulated cluster's
//! TokenRequest API issues the first token (one hour: within the 7-day warning
//! window) and the rotated one (`token_ttl_hours`); the simulator's request log
//! shows which token each request carried.

use crate::helpers::{credentials_of, log_position, refresh_ok, upload, wait_for, TestApp};
use chrono::{DateTime, Duration, Utc};
use fleetreg_server::credentials::auto_rotate::AutoRotation;
use fleetreg_server::settings::Settings;
use fleetreg_sim::{AuthSpec, ClusterSpec, KubeconfigAuth, Service, SpawnedSim, TokenSource};
use serde_json::{json, Value};

const NAMESPACE: &str = "fleet-system";
const SERVICE_ACCOUNT: &str = "fleetreg";
const TOKEN_PATH: &str = "/api/v1/namespaces/fleet-system/serviceaccounts/fleetreg/token";

fn manual(settings: &mut Settings) {
    settings.health_check.enabled = false;
    settings.health_check.timeout_seconds = Some(3);
    // Rounds only when the test ticks.
    settings.credentials.auto_rotation.check_interval_seconds = 24 * 3600;
    settings.credentials.auto_rotation.max_backoff_seconds = 600;
}

fn bootstrap_token(name: &str) -> String {
    format!("bootstrap-{name}")
}

/// A simulated cluster that requires a token; `bootstrap_token(name)` is
/// accepted forever (it only asks for the first service account token).
async fn locked_cluster(app: &TestApp, sim: &SpawnedSim, name: &str) -> String {
    let auth = AuthSpec {
        required: true,
        tokens: vec![bootstrap_token(name)],
        ..AuthSpec::default()
    };
    let view = sim
        .admin()
        .create_cluster_with_auth(name, ClusterSpec::default(), auth)
        .await
        .unwrap();
    let created = app
        .register(name, json!({ "api_server_url": view.api_server_url }))
        .await;
    created["id"].as_str().unwrap().to_owned()
}

/// A service account token from the cluster's TokenRequest API, valid one hour.
async fn service_account_token(sim: &SpawnedSim, name: &str) -> String {
    let url = format!("{}/c/{name}{TOKEN_PATH}", sim.base_url());
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(bootstrap_token(name))
        .json(
            &json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                       "spec": { "expirationSeconds": 3600 } }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "TokenRequest");
    let body: Value = response.json().await.unwrap();
    body["status"]["token"].as_str().unwrap().to_owned()
}

/// The API server requests of `cluster` after `after`: (path, bearer token).
async fn api_requests(sim: &SpawnedSim, cluster: &str, after: u64) -> Vec<(String, String)> {
    let log = sim.admin().requests(after, Some(cluster)).await.unwrap();
    log.items
        .iter()
        .filter(|r| r.service == Service::ApiServer)
        .map(|r| (r.path.clone(), r.bearer_token.clone().unwrap_or_default()))
        .collect()
}

/// Waits until the health check and discovery that follow an upload are done
/// (discovery records the platform version last), so that later requests in
/// the simulator's log are the test's own.
async fn settled(app: &TestApp, id: &str) {
    wait_for(
        "the check and discovery after the upload",
        std::time::Duration::from_secs(60),
        || async {
            let cluster: Value = app.get_cluster(id).await.json().await.unwrap();
            cluster["platform_version"].is_string().then_some(())
        },
    )
    .await;
}

/// The cluster's `credentials.rotate` audit entries by the rotation worker:
/// (result, error code).
async fn rotation_audit(app: &TestApp, id: &str) -> Vec<(String, Option<String>)> {
    let audit = app
        .store
        .list_audit(&fleetreg_store::AuditQuery {
            resource_id: Some(id.parse().unwrap()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    audit
        .iter()
        .filter(|e| e.action == "credentials.rotate" && e.actor == "system:credential-rotation")
        .map(|e| {
            let result = match e.result {
                fleetreg_model::AuditResult::Success => "success",
                fleetreg_model::AuditResult::Failure => "failure",
            };
            (result.to_owned(), e.error_code.clone())
        })
        .collect()
}

/// The cluster's `credentials.decrypt` audit entries.
async fn decryptions(app: &TestApp, id: &str) -> usize {
    let audit = app
        .store
        .list_audit(&fleetreg_store::AuditQuery {
            resource_id: Some(id.parse().unwrap()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    audit
        .iter()
        .filter(|e| e.action == "credentials.decrypt")
        .count()
}

fn rotation(app: &TestApp) -> AutoRotation {
    app.rotation
        .clone()
        .expect("auto rotation is on by default")
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("{value}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// Equal up to the microsecond precision timestamps may be kept at.
fn assert_close(actual: DateTime<Utc>, expected: DateTime<Utc>) {
    let off = (actual - expected)
        .num_microseconds()
        .unwrap_or(i64::MAX)
        .abs();
    assert!(off <= 1, "{actual} vs {expected}");
}

mod service_account_token_is_rotated_within_the_warning_window {
    use super::*;

    async fn body(app: TestApp) {
        let sim = SpawnedSim::start().await.unwrap();
        let id = locked_cluster(&app, &sim, "sa-rotated").await;
        let old = service_account_token(&sim, "sa-rotated").await;
        upload(&app, &id, json!({ "auth_type": "TOKEN", "token": old })).await;
        settled(&app, &id).await;

        let before = credentials_of(&app, &id).await;
        assert_eq!(before["version"], 1);
        assert_eq!(before["expiry"], "EXPIRING", "{before}");
        assert_eq!(before["rotation"]["mode"], "auto", "{before}");
        assert_eq!(
            before["rotation"]["service_account"],
            format!("{NAMESPACE}/{SERVICE_ACCOUNT}")
        );
        assert_eq!(before["rotation"]["consecutive_failures"], 0);

        let position = log_position(&sim);
        let round = rotation(&app).tick().await;
        assert_eq!(
            round.rotated,
            [id.parse::<uuid::Uuid>().unwrap()],
            "{round:?}"
        );

        // A new version with the new token's expiry (token_ttl_hours: 720).
        let after = credentials_of(&app, &id).await;
        assert_eq!(after["version"], 2, "{after}");
        assert_eq!(after["expiry"], "OK", "{after}");
        let expires_at = time(&after["expires_at"]);
        let expected = Utc::now() + Duration::hours(720);
        assert!(
            (expires_at - expected).num_seconds().abs() < 120,
            "{expires_at} vs {expected}"
        );
        assert_eq!(after["rotation"]["mode"], "auto");
        assert_eq!(after["rotation"]["consecutive_failures"], 0);
        assert!(after["rotation"]["last_error"].is_null(), "{after}");
        assert!(after["rotation"]["last_success_at"].is_string(), "{after}");
        assert!(after["rotation"]["next_attempt_at"].is_null(), "{after}");

        // The cluster issued it for the same service account.
        let tokens = sim.admin().tokens("sa-rotated").await.unwrap();
        let issued: Vec<_> = tokens
            .iter()
            .filter(|t| t.source == TokenSource::TokenRequest)
            .collect();
        assert_eq!(issued.len(), 2, "{tokens:?}");
        let new = issued
            .iter()
            .find(|t| t.token != old)
            .map(|t| t.token.clone())
            .unwrap();
        assert!(issued
            .iter()
            .all(|t| t.subject.as_deref() == Some("system:serviceaccount:fleet-system:fleetreg")));

        // The TokenRequest carried the old token; every request after it the
        // new one (validation, the check after the rotation, a refresh).
        let refreshed = refresh_ok(&app, &id).await;
        assert_eq!(refreshed["status"]["state"], "ONLINE", "{refreshed}");
        let requests = api_requests(&sim, "sa-rotated", position).await;
        let at = requests
            .iter()
            .position(|(path, _)| path.starts_with(TOKEN_PATH))
            .expect("a TokenRequest");
        assert_eq!(
            requests[at].1, old,
            "the TokenRequest used the current token"
        );
        let later = &requests[at + 1..];
        assert!(!later.is_empty());
        assert!(
            later.iter().all(|(_, token)| *token == new),
            "after the rotation only the new token is used: {:?}",
            later
                .iter()
                .map(|(p, t)| (p, t == &old))
                .collect::<Vec<_>>()
        );

        // Audited as the system's rotation; one event per credential write.
        assert_eq!(
            rotation_audit(&app, &id).await,
            [("success".to_owned(), None)]
        );
        let events: Value = app
            .get("/api/v1/events?after=0&limit=1000")
            .await
            .json()
            .await
            .unwrap();
        let updates = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "CLUSTER_CREDENTIALS_UPDATED")
            .count();
        assert_eq!(updates, 2, "upload and rotation");

        // Far from expiry now: the next round leaves it alone.
        let round = rotation(&app).tick().await;
        assert!(
            round.rotated.is_empty() && round.failed.is_empty(),
            "{round:?}"
        );
        assert_eq!(credentials_of(&app, &id).await["version"], 2);

        // Shown in the expiring list and counted in /metrics.
        let list: Value = app
            .get("/api/v1/credentials/expiring?within_days=60")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(list["items"][0]["rotation"]["mode"], "auto", "{list}");
        let metrics = app.get("/metrics").await.text().await.unwrap();
        assert!(
            metrics.contains("fleetreg_credentials_rotations_total{result=\"success\"}"),
            "{metrics}"
        );
        assert!(!metrics.contains(&new) && !list.to_string().contains(&new));

        // A write based on the version read before (what a rotation racing a
        // newer write would do) is refused by the store, nothing written.
        let stale = app
            .store
            .put_credentials(
                fleetreg_store::PutCredentials {
                    cluster_id: id.parse().unwrap(),
                    write: fleetreg_model::CredentialWrite::Rotate,
                    auth_type: fleetreg_model::AuthType::Token,
                    sealed: Default::default(),
                    key_id: "unused".into(),
                    expires_at: None,
                    expected_version: Some(1),
                    origins: Default::default(),
                },
                &fleetreg_model::Audit::system("test"),
            )
            .await;
        assert!(
            matches!(
                stale,
                Err(fleetreg_store::StoreError::PreconditionFailed {
                    expected: 1,
                    actual: 2,
                    ..
                })
            ),
            "{stale:?}"
        );
        assert_eq!(credentials_of(&app, &id).await["version"], 2);
    }

    on_both_stores!(manual);
}

mod failed_rotation_keeps_the_old_token_and_backs_off {
    use super::*;

    async fn body(app: TestApp) {
        let sim = SpawnedSim::start().await.unwrap();
        let id = locked_cluster(&app, &sim, "sa-faulty").await;
        let old = service_account_token(&sim, "sa-faulty").await;
        upload(&app, &id, json!({ "auth_type": "TOKEN", "token": old })).await;
        settled(&app, &id).await;
        sim.admin()
            .set_token_request_fault("sa-faulty", true)
            .await
            .unwrap();
        let rotation = rotation(&app);
        let uuid: uuid::Uuid = id.parse().unwrap();

        // The TokenRequest fails: nothing written, the failure shows.
        let t0 = Utc::now();
        let round = rotation.tick_at(t0).await;
        assert_eq!(round.failed, [uuid], "{round:?}");
        let credentials = credentials_of(&app, &id).await;
        assert_eq!(credentials["version"], 1, "{credentials}");
        let status = &credentials["rotation"];
        assert_eq!(status["mode"], "auto");
        assert_eq!(status["consecutive_failures"], 1, "{status}");
        let error = status["last_error"].as_str().unwrap();
        assert!(error.contains("TokenRequest"), "{error}");
        assert!(!error.contains(&old), "{error}");
        assert_close(time(&status["next_attempt_at"]), t0 + Duration::seconds(60));
        assert_eq!(
            rotation_audit(&app, &id).await,
            [("failure".to_owned(), Some("CLUSTER_UNREACHABLE".to_owned()))]
        );

        // The old token stays in force: checks keep working with it.
        let position = log_position(&sim);
        let refreshed = refresh_ok(&app, &id).await;
        assert_eq!(refreshed["status"]["state"], "ONLINE", "{refreshed}");
        let requests = api_requests(&sim, "sa-faulty", position).await;
        assert!(!requests.is_empty() && requests.iter().all(|(_, t)| *t == old));

        // Within the backoff nothing is tried.
        let position = log_position(&sim);
        let round = rotation.tick_at(t0 + Duration::seconds(30)).await;
        assert_eq!(round.skipped, [uuid], "{round:?}");
        assert!(api_requests(&sim, "sa-faulty", position).await.is_empty());
        assert_eq!(
            credentials_of(&app, &id).await["rotation"]["consecutive_failures"],
            1
        );

        // After it, tried again: still failing, the wait doubles.
        let t1 = t0 + Duration::seconds(61);
        let round = rotation.tick_at(t1).await;
        assert_eq!(round.failed, [uuid], "{round:?}");
        let status = credentials_of(&app, &id).await["rotation"].clone();
        assert_eq!(status["consecutive_failures"], 2, "{status}");
        assert_close(
            time(&status["next_attempt_at"]),
            t1 + Duration::seconds(120),
        );
        assert_eq!(rotation_audit(&app, &id).await.len(), 2);

        // The fault cleared, the retry after the backoff succeeds.
        sim.admin()
            .set_token_request_fault("sa-faulty", false)
            .await
            .unwrap();
        let t2 = t1 + Duration::seconds(121);
        let round = rotation.tick_at(t2).await;
        assert_eq!(round.rotated, [uuid], "{round:?}");
        let credentials = credentials_of(&app, &id).await;
        assert_eq!(credentials["version"], 2, "{credentials}");
        let status = &credentials["rotation"];
        assert_eq!(status["consecutive_failures"], 0, "{status}");
        assert!(status["last_error"].is_null(), "{status}");
        assert!(status["next_attempt_at"].is_null(), "{status}");
        assert_close(time(&status["last_success_at"]), t2);
        let audit = rotation_audit(&app, &id).await;
        assert_eq!(audit.len(), 3, "{audit:?}");
        assert_eq!(audit[2], ("success".to_owned(), None));
        let metrics = app.get("/metrics").await.text().await.unwrap();
        assert!(
            metrics.contains("fleetreg_credentials_rotations_total{result=\"failure\"}"),
            "{metrics}"
        );
    }

    on_both_stores!(manual);
}

mod a_capped_token_is_renewed_two_thirds_into_its_lifetime {
    use super::*;

    /// The cluster issues no token longer than an hour (less than the 7-day
    /// warning window): after a rotation the new token is still "expiring",
    /// but the next rounds leave it alone until two thirds of its lifetime
    /// have passed, and the status says why.
    async fn body(app: TestApp) {
        let sim = SpawnedSim::start().await.unwrap();
        let id = locked_cluster(&app, &sim, "sa-capped").await;
        let uuid: uuid::Uuid = id.parse().unwrap();
        let old = service_account_token(&sim, "sa-capped").await;
        upload(&app, &id, json!({ "auth_type": "TOKEN", "token": old })).await;
        settled(&app, &id).await;
        sim.admin()
            .set_token_request_max_seconds("sa-capped", Some(3600))
            .await
            .unwrap();
        let rotation = rotation(&app);

        let t0 = Utc::now();
        let round = rotation.tick_at(t0).await;
        assert_eq!(round.rotated, [uuid], "{round:?}");
        let credentials = credentials_of(&app, &id).await;
        assert_eq!(credentials["version"], 2, "{credentials}");
        assert_eq!(credentials["expiry"], "EXPIRING", "{credentials}");
        let expires_at = time(&credentials["expires_at"]);
        let status = &credentials["rotation"];
        assert_eq!(status["mode"], "auto", "{status}");
        assert_eq!(status["consecutive_failures"], 0, "{status}");
        assert_close(time(&status["last_success_at"]), t0);
        let note = status["last_error"].as_str().unwrap();
        assert!(note.contains("valid for only"), "{note}");
        // Two thirds into the hour: 20 minutes before it expires.
        let next = time(&status["next_attempt_at"]);
        let early = expires_at - next;
        assert!(
            (early - Duration::minutes(20)).num_seconds().abs() < 60,
            "{next} vs {expires_at}"
        );

        // Rounds before then (every 5 minutes by default) do not rotate.
        let position = log_position(&sim);
        for minutes in [5, 10, 30] {
            let round = rotation.tick_at(t0 + Duration::minutes(minutes)).await;
            assert_eq!(round.skipped, [uuid], "{minutes} min: {round:?}");
        }
        // (The check after the rotation may still be running: only
        // TokenRequests count.)
        let requests = api_requests(&sim, "sa-capped", position).await;
        assert!(
            requests
                .iter()
                .all(|(path, _)| !path.starts_with(TOKEN_PATH)),
            "{requests:?}"
        );
        assert_eq!(credentials_of(&app, &id).await["version"], 2);
        assert_eq!(rotation_audit(&app, &id).await.len(), 1);

        // Then it is renewed (and the wait starts again).
        let round = rotation.tick_at(next + Duration::seconds(1)).await;
        assert_eq!(round.rotated, [uuid], "{round:?}");
        let credentials = credentials_of(&app, &id).await;
        assert_eq!(credentials["version"], 3, "{credentials}");
        assert!(time(&credentials["rotation"]["next_attempt_at"]) > next);

        // Another writer's version (a replica's rotation, a restart) waits
        // too: the cap is remembered per cluster.
        let fresh = service_account_token(&sim, "sa-capped").await;
        upload(&app, &id, json!({ "auth_type": "TOKEN", "token": fresh })).await;
        let round = rotation.tick_at(Utc::now() + Duration::minutes(5)).await;
        assert_eq!(round.skipped, [uuid], "{round:?}");
        let status = credentials_of(&app, &id).await["rotation"].clone();
        assert!(
            status["last_error"]
                .as_str()
                .unwrap()
                .contains("valid for only"),
            "{status}"
        );

        // The cap lifted: the next rotation gets a long token, no more wait.
        sim.admin()
            .set_token_request_max_seconds("sa-capped", None)
            .await
            .unwrap();
        let round = rotation.tick_at(Utc::now() + Duration::minutes(45)).await;
        assert_eq!(round.rotated, [uuid], "{round:?}");
        let credentials = credentials_of(&app, &id).await;
        assert_eq!(credentials["expiry"], "OK", "{credentials}");
        assert!(
            credentials["rotation"]["last_error"].is_null(),
            "{credentials}"
        );
        assert!(
            credentials["rotation"]["next_attempt_at"].is_null(),
            "{credentials}"
        );
    }

    on_both_stores!(manual);
}

mod kubeconfig_and_plain_tokens_are_not_rotated {
    use super::*;

    async fn body(app: TestApp) {
        let sim = SpawnedSim::start().await.unwrap();
        let soon = (Utc::now() + Duration::days(1)).to_rfc3339();

        let kube_id = locked_cluster(&app, &sim, "kube-only").await;
        let kubeconfig = sim
            .admin()
            .kubeconfig("kube-only", "alice", KubeconfigAuth::Token)
            .await
            .unwrap();
        upload(
            &app,
            &kube_id,
            json!({ "auth_type": "KUBECONFIG", "kubeconfig": kubeconfig, "expires_at": soon }),
        )
        .await;
        let plain_id = locked_cluster(&app, &sim, "plain-token").await;
        upload(
            &app,
            &plain_id,
            json!({ "auth_type": "TOKEN", "token": bootstrap_token("plain-token"), "expires_at": soon }),
        )
        .await;

        let position = log_position(&sim);
        let round = rotation(&app).tick().await;
        let mut unsupported = round.unsupported.clone();
        unsupported.sort();
        let mut expected: Vec<uuid::Uuid> =
            vec![kube_id.parse().unwrap(), plain_id.parse().unwrap()];
        expected.sort();
        assert_eq!(unsupported, expected, "{round:?}");
        assert!(
            round.rotated.is_empty() && round.failed.is_empty(),
            "{round:?}"
        );

        // Untouched: no TokenRequest, no new version, no rotation audit.
        for cluster in ["kube-only", "plain-token"] {
            let requests = api_requests(&sim, cluster, position).await;
            assert!(
                requests.iter().all(|(path, _)| !path.contains("/token")),
                "{requests:?}"
            );
        }
        let kube = credentials_of(&app, &kube_id).await;
        assert_eq!(kube["version"], 1);
        assert_eq!(kube["expiry"], "EXPIRING", "{kube}");
        assert_eq!(kube["rotation"]["mode"], "unsupported", "{kube}");
        assert!(
            kube["rotation"]["reason"]
                .as_str()
                .unwrap()
                .contains("kubeconfig"),
            "{kube}"
        );
        let plain = credentials_of(&app, &plain_id).await;
        assert_eq!(plain["version"], 1);
        assert_eq!(plain["rotation"]["mode"], "unsupported", "{plain}");
        assert!(
            plain["rotation"]["reason"]
                .as_str()
                .unwrap()
                .contains("not a service account token"),
            "{plain}"
        );
        assert!(rotation_audit(&app, &kube_id).await.is_empty());
        assert!(rotation_audit(&app, &plain_id).await.is_empty());

        // The expiring list says so too.
        let list: Value = app
            .get("/api/v1/credentials/expiring")
            .await
            .json()
            .await
            .unwrap();
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{list}");
        assert!(
            items.iter().all(|i| i["rotation"]["mode"] == "unsupported"),
            "{list}"
        );

        // Documented in the OpenAPI document.
        let openapi: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
        let schemas = &openapi["components"]["schemas"];
        assert!(schemas["RotationStatus"].is_object(), "{schemas}");
        assert!(
            schemas["CredentialsSummary"]["properties"]["rotation"].is_object(),
            "{}",
            schemas["CredentialsSummary"]
        );
    }

    on_both_stores!(manual);
}

mod a_manual_rotation_meanwhile_wins {
    use super::*;

    /// A replica (no shared lock) rotates by hand while this server's
    /// automatic rotation waits for the slow cluster: the store's version
    /// check refuses the automatic write, the manual credentials stay.
    async fn body(app: TestApp) {
        let sim = SpawnedSim::start().await.unwrap();
        let id = locked_cluster(&app, &sim, "sa-raced").await;
        let uuid: uuid::Uuid = id.parse().unwrap();
        let old = service_account_token(&sim, "sa-raced").await;
        upload(&app, &id, json!({ "auth_type": "TOKEN", "token": old })).await;
        settled(&app, &id).await;
        let replica = app.spawn_replica_with(manual).await;

        // Every API server call takes 2 s: the TokenRequest, then the new
        // token's validation, before the automatic write (at least 4 s after
        // the attempt read version 1; the manual rotation needs one call).
        let slow = fleetreg_sim::FaultsPatch {
            api_latency_ms: Some(2000),
            ..Default::default()
        };
        sim.admin().set_faults("sa-raced", &slow).await.unwrap();
        let rotation = rotation(&app);
        let round = tokio::spawn(async move { rotation.tick().await });
        // The attempt has read version 1 once it notes the attempt (just
        // before its TokenRequest; the simulator logs a request only when it
        // answers, after the latency).
        wait_for(
            "the automatic attempt to start",
            std::time::Duration::from_secs(30),
            || async {
                let credentials = credentials_of(&app, &id).await;
                credentials["rotation"]["last_attempt_at"]
                    .is_string()
                    .then_some(())
            },
        )
        .await;
        let manual_token = bootstrap_token("sa-raced");
        let response = replica
            .client
            .post(replica.url(&format!("/api/v1/clusters/{id}/credentials/rotate")))
            .json(&json!({ "auth_type": "TOKEN", "token": manual_token }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        let round = round.await.unwrap();
        assert_eq!(round.skipped, [uuid], "superseded: {round:?}");
        assert!(
            round.rotated.is_empty() && round.failed.is_empty(),
            "{round:?}"
        );

        // The manual version stands; the refused write is audited. This
        // server has not opened version 2: reading the status does not open
        // it (no decryption), the mode is pending until a check does.
        let decrypts = decryptions(&app, &id).await;
        let credentials = credentials_of(&app, &id).await;
        assert_eq!(credentials["version"], 2, "{credentials}");
        assert_eq!(credentials["rotation"]["mode"], "pending", "{credentials}");
        for path in ["/api/v1/credentials/expiring", "/api/v1/fleet/health"] {
            assert_eq!(app.get(path).await.status(), 200, "{path}");
        }
        assert_eq!(decryptions(&app, &id).await, decrypts, "a read decrypted");
        assert_eq!(
            rotation_audit(&app, &id).await,
            [("failure".to_owned(), Some("PRECONDITION_FAILED".to_owned()))]
        );
        sim.admin()
            .set_faults(
                "sa-raced",
                &fleetreg_sim::FaultsPatch {
                    api_latency_ms: Some(0),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        // Every request from now on (the replica's check after its write
        // included) presents the manual token.
        let position = log_position(&sim);
        let refreshed = refresh_ok(&app, &id).await;
        assert_eq!(refreshed["status"]["state"], "ONLINE", "{refreshed}");
        let requests = api_requests(&sim, "sa-raced", position).await;
        assert!(
            !requests.is_empty() && requests.iter().all(|(_, t)| *t == manual_token),
            "{requests:?}"
        );
        // The check opened version 2: now the mode is known.
        assert!(decryptions(&app, &id).await > decrypts);
        let credentials = credentials_of(&app, &id).await;
        assert_eq!(
            credentials["rotation"]["mode"], "unsupported",
            "{credentials}"
        );
        let metrics = app.get("/metrics").await.text().await.unwrap();
        assert!(
            metrics.contains("fleetreg_credentials_rotations_total{result=\"superseded\"}"),
            "{metrics}"
        );
    }

    on_both_stores!(manual);
}
