use super::{get, log_after, log_end, required, start};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fleetreg_sim::{AddToken, AuthSpec, ClusterSpec, KubeconfigAuth, Service, TokenSource};
use serde_json::{json, Value};

#[tokio::test]
async fn api_server_refuses_requests_without_an_accepted_credential() {
    let (_sim, admin, view) = start("locked", required()).await;
    let http = reqwest::Client::new();
    let (status, body) = get(&http, &view, "/api/v1/namespaces", None).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
    );
    assert_eq!(get(&http, &view, "/version", Some("wrong")).await.0, 401);
    assert_eq!(
        get(&http, &view, "/version", Some("bootstrap")).await.0,
        200
    );
    // Observability endpoints have their own (here: no) token lists.
    let ready = http
        .get(format!("{}/ready", view.loki_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    let log = log_after(&admin, 0, "locked").await;
    let statuses: Vec<_> = log
        .iter()
        .map(|e| (e.status, e.bearer_token.as_deref()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (401, None),
            (401, Some("wrong")),
            (200, Some("bootstrap")),
            (200, None)
        ]
    );
}

#[tokio::test]
async fn an_added_token_works_and_is_logged() {
    let (_sim, admin, view) = start("tokens", required()).await;
    let http = reqwest::Client::new();
    let added = admin
        .add_token(
            "tokens",
            &AddToken {
                subject: Some("vault".into()),
                ..AddToken::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(added.source, TokenSource::Admin);
    assert!(added.expires_at.is_none());
    let after = log_end(&admin).await;
    let (status, body) = get(&http, &view, "/api/v1/nodes", Some(&added.token)).await;
    assert_eq!((status, body["kind"].as_str()), (200, Some("NodeList")));
    let log = log_after(&admin, after, "tokens").await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].bearer_token.as_deref(), Some(added.token.as_str()));
    assert_eq!(log[0].client_cert_subject, None);

    let listed = admin.tokens("tokens").await.unwrap();
    let sources: Vec<_> = listed
        .iter()
        .map(|t| (t.token.as_str(), t.source))
        .collect();
    assert_eq!(
        sources,
        vec![
            ("bootstrap", TokenSource::Spec),
            (added.token.as_str(), TokenSource::Admin)
        ]
    );
}

#[tokio::test]
async fn revoked_and_expired_tokens_are_refused() {
    let (_sim, admin, view) = start("expiry", required()).await;
    let http = reqwest::Client::new();
    let short = admin
        .add_token(
            "expiry",
            &AddToken {
                token: Some("short-lived".into()),
                expires_in_seconds: Some(60),
                ..AddToken::default()
            },
        )
        .await
        .unwrap();
    let revoked = admin
        .add_token("expiry", &AddToken::default())
        .await
        .unwrap();
    assert_eq!(
        get(&http, &view, "/version", Some("short-lived")).await.0,
        200
    );
    assert_eq!(
        get(&http, &view, "/version", Some(&revoked.token)).await.0,
        200
    );

    admin.revoke_token("expiry", &revoked.token).await.unwrap();
    assert_eq!(
        get(&http, &view, "/version", Some(&revoked.token)).await.0,
        401
    );
    let again = admin.revoke_token("expiry", &revoked.token).await;
    assert!(
        matches!(again, Err(fleetreg_sim::Error::Status { status: 404, .. })),
        "{again:?}"
    );
    let spec_token = admin.revoke_token("expiry", "bootstrap").await;
    assert!(
        matches!(
            spec_token,
            Err(fleetreg_sim::Error::Status { status: 400, .. })
        ),
        "{spec_token:?}"
    );

    admin.advance_clock(61).await.unwrap();
    assert_eq!(
        get(&http, &view, "/version", Some("short-lived")).await.0,
        401
    );
    let listed = admin.tokens("expiry").await.unwrap();
    let short_view = listed.iter().find(|t| t.token == short.token).unwrap();
    assert!(short_view.expired);
    assert_eq!(
        get(&http, &view, "/version", Some("bootstrap")).await.0,
        200
    );
}

fn claims(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

async fn token_request(
    http: &reqwest::Client,
    url: &str,
    credential: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = http.post(url).json(&body);
    if let Some(token) = credential {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn token_request_issues_a_token_that_works_until_it_expires() {
    let (_sim, admin, view) = start("tr", required()).await;
    let http = reqwest::Client::new();
    let url = format!(
        "{}/api/v1/namespaces/fleetreg/serviceaccounts/prober/token",
        view.api_server_url
    );
    let body = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 600, "audiences": ["fleetreg"]},
    });
    assert_eq!(token_request(&http, &url, None, body.clone()).await.0, 401);

    let (status, answer) = token_request(&http, &url, Some("bootstrap"), body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["kind"], "TokenRequest");
    assert_eq!(answer["spec"]["expirationSeconds"], 600);
    let token = answer["status"]["token"].as_str().unwrap().to_owned();
    let claims = claims(&token);
    assert_eq!(claims["sub"], "system:serviceaccount:fleetreg:prober");
    assert_eq!(claims["aud"], json!(["fleetreg"]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    let expires: chrono::DateTime<chrono::Utc> = answer["status"]["expirationTimestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(expires.timestamp(), claims["exp"].as_i64().unwrap());

    // The new token is accepted, and may itself request the next one (rotation).
    let after = log_end(&admin).await;
    assert_eq!(
        get(&http, &view, "/api/v1/namespaces", Some(&token))
            .await
            .0,
        200
    );
    let (status, next) = token_request(&http, &url, Some(&token), json!({})).await;
    assert_eq!(status, 201);
    assert_eq!(next["spec"]["expirationSeconds"], 3600, "default lifetime");
    let log = log_after(&admin, after, "tr").await;
    assert!(log
        .iter()
        .all(|e| e.bearer_token.as_deref() == Some(token.as_str())));

    let listed = admin.tokens("tr").await.unwrap();
    let issued = listed.iter().find(|t| t.token == token).unwrap();
    assert_eq!(issued.source, TokenSource::TokenRequest);
    assert_eq!(
        issued.subject.as_deref(),
        Some("system:serviceaccount:fleetreg:prober")
    );

    admin.advance_clock(601).await.unwrap();
    assert_eq!(
        get(&http, &view, "/api/v1/namespaces", Some(&token))
            .await
            .0,
        401
    );
    let next_token = next["status"]["token"].as_str().unwrap();
    assert_eq!(
        get(&http, &view, "/api/v1/namespaces", Some(next_token))
            .await
            .0,
        200
    );

    let short = json!({"spec": {"expirationSeconds": 599}});
    let (status, refused) = token_request(&http, &url, Some("bootstrap"), short).await;
    assert_eq!((status, refused["reason"].as_str()), (422, Some("Invalid")));
}

#[tokio::test]
async fn token_request_fault_answers_500() {
    let (_sim, admin, view) = start("trfail", required()).await;
    let http = reqwest::Client::new();
    let url = format!(
        "{}/api/v1/namespaces/default/serviceaccounts/default/token",
        view.api_server_url
    );
    let faulty = admin.set_token_request_fault("trfail", true).await.unwrap();
    assert!(faulty.faults.token_request_fail);
    let (status, body) = token_request(&http, &url, Some("bootstrap"), json!({})).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (500, Some("InternalError"))
    );
    assert_eq!(
        admin.tokens("trfail").await.unwrap().len(),
        1,
        "nothing issued"
    );
    // Other faults are untouched; the flag clears the same way.
    assert!(!faulty.faults.api_down);
    admin
        .set_token_request_fault("trfail", false)
        .await
        .unwrap();
    assert_eq!(
        token_request(&http, &url, Some("bootstrap"), json!({}))
            .await
            .0,
        201
    );
}

#[tokio::test]
async fn observability_tokens_are_checked_only_when_configured() {
    let auth = AuthSpec {
        prometheus_tokens: vec!["prom".into()],
        ..AuthSpec::default()
    };
    let (_sim, admin, view) = start("obs", auth).await;
    let http = reqwest::Client::new();
    let status = |url: String, token: Option<&'static str>| {
        let mut request = http.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let ready = format!("{}/-/ready", view.prometheus_url);
    assert_eq!(status(ready.clone(), None).await, 401);
    assert_eq!(status(ready.clone(), Some("nope")).await, 401);
    assert_eq!(status(ready, Some("prom")).await, 200);
    assert_eq!(status(format!("{}/ready", view.tempo_url), None).await, 200);
    // The API server stays open: `required` is false.
    assert_eq!(
        status(format!("{}/version", view.api_server_url), None).await,
        200
    );
    let log = log_after(&admin, 0, "obs").await;
    assert_eq!(log[2].service, Service::Prometheus);
    assert_eq!(log[2].bearer_token.as_deref(), Some("prom"));
}

#[tokio::test]
async fn auth_changes_at_run_time_and_the_legacy_token_still_works() {
    let (_sim, admin, view) = start("live", AuthSpec::default()).await;
    let http = reqwest::Client::new();
    assert_eq!(get(&http, &view, "/version", None).await.0, 200);
    let changed = admin.set_auth("live", &required()).await.unwrap();
    assert!(changed.auth.required);
    assert_eq!(get(&http, &view, "/version", None).await.0, 401);
    admin.set_auth("live", &AuthSpec::default()).await.unwrap();
    assert_eq!(get(&http, &view, "/version", None).await.0, 200);

    let legacy = ClusterSpec {
        token: Some("old-style".into()),
        ..ClusterSpec::default()
    };
    admin.set_spec("live", &legacy).await.unwrap();
    assert_eq!(get(&http, &view, "/version", None).await.0, 401);
    assert_eq!(
        get(&http, &view, "/version", Some("old-style")).await.0,
        200
    );
}

#[tokio::test]
async fn kubeconfig_with_a_token_reaches_the_cluster() {
    let (_sim, admin, view) = start("kc", required()).await;
    let yaml = admin
        .kubeconfig("kc", "alice", KubeconfigAuth::Token)
        .await
        .unwrap();
    let config: Value = serde_yaml::from_str(&yaml).unwrap();
    let cluster = &config["clusters"][0]["cluster"];
    assert_eq!(cluster["server"], view.api_server_url.as_str());
    assert!(
        cluster.get("certificate-authority-data").is_none(),
        "plain HTTP"
    );
    assert_eq!(config["users"][0]["name"], "alice");
    let token = config["users"][0]["user"]["token"].as_str().unwrap();
    let http = reqwest::Client::new();
    assert_eq!(
        get(&http, &view, "/api/v1/namespaces", Some(token)).await.0,
        200
    );
    let listed = admin.tokens("kc").await.unwrap();
    assert!(listed
        .iter()
        .any(|t| t.token == token && t.subject.as_deref() == Some("alice")));

    // Certificates need HTTPS.
    let cert = admin.kubeconfig("kc", "alice", KubeconfigAuth::Cert).await;
    assert!(
        matches!(cert, Err(fleetreg_sim::Error::Status { status: 409, .. })),
        "{cert:?}"
    );
    let ca = admin.ca_pem().await;
    assert!(
        matches!(ca, Err(fleetreg_sim::Error::Status { status: 409, .. })),
        "{ca:?}"
    );
}
