//! Cluster credentials against the simulator over real HTTP(S): tokens, client
//! certificates, observability tokens, validation, the TokenRequest API, expiry,
//! and every kubeconfig the probe must refuse.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Duration as Span, Utc};
use fleetreg_model::{Component, CredentialValidation, Endpoints, ValidationOutcome};
use fleetreg_probe::{
    ApiAuth, ClusterCredential, CredentialError, EgressPolicy, Error, Prober, Target, TlsTrust,
};
use fleetreg_sim::{
    AuthSpec, ClusterSpec, ClusterView, IssueClientCert, KubeconfigAuth, LogEntry, Service,
    SimAdmin, SpawnedSim,
};
use secrecy::{ExposeSecret, SecretString};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

const TIMEOUT: Duration = Duration::from_secs(5);
const PROM: &str = "prom-token-111";
const TEMPO: &str = "tempo-token-222";
const LOKI: &str = "loki-token-333";

/// API server auth required; every observability endpoint wants its own token.
fn locked() -> AuthSpec {
    AuthSpec {
        required: true,
        prometheus_tokens: vec![PROM.into()],
        tempo_tokens: vec![TEMPO.into()],
        loki_tokens: vec![LOKI.into()],
        ..AuthSpec::default()
    }
}

async fn cluster(sim: &SpawnedSim, name: &str, auth: AuthSpec) -> ClusterView {
    let spec = ClusterSpec {
        gpu_count: 2,
        dcgm: true,
        ..ClusterSpec::default()
    };
    sim.admin()
        .create_cluster_with_auth(name, spec, auth)
        .await
        .unwrap()
}

fn api_only(view: &ClusterView) -> Target {
    Target {
        api_server_url: view.api_server_url.clone(),
        endpoints: Endpoints::default(),
        credential: None,
    }
}

fn everything(view: &ClusterView) -> Target {
    Target {
        endpoints: Endpoints {
            prometheus_url: Some(view.prometheus_url.clone()),
            tempo_url: Some(view.tempo_url.clone()),
            loki_url: Some(view.loki_url.clone()),
        },
        ..api_only(view)
    }
}

fn prober() -> Prober {
    Prober::new(EgressPolicy::default()).unwrap()
}

fn secret(text: &str) -> SecretString {
    SecretString::from(text)
}

fn api_token(credential: &ClusterCredential) -> String {
    match credential.api_auth() {
        ApiAuth::BearerToken(token) => token.expose_secret().to_owned(),
        other => panic!("not a token: {other:?}"),
    }
}

fn cause(failures: &[fleetreg_probe::Failure], component: Component) -> String {
    failures
        .iter()
        .find(|f| f.component == component)
        .map(|f| f.cause.clone())
        .unwrap_or_else(|| panic!("{component} did not fail: {failures:?}"))
}

/// The log entries of `cluster` after `after`.
async fn log_after(admin: &SimAdmin, after: u64, cluster: &str) -> Vec<LogEntry> {
    admin.requests(after, Some(cluster)).await.unwrap().items
}

async fn log_position(admin: &SimAdmin) -> u64 {
    admin.log_end().await.unwrap()
}

#[tokio::test]
async fn without_a_credential_the_api_server_fails_with_401() {
    let sim = SpawnedSim::start().await.unwrap();
    let view = cluster(&sim, "locked", locked()).await;
    let report = prober().check(&api_only(&view), TIMEOUT).await;
    assert!(!report.results.api_server, "{report:?}");
    let cause = cause(&report.failures, Component::ApiServer);
    assert!(cause.starts_with("HTTP 401 Unauthorized"), "{cause}");
}

#[tokio::test]
async fn a_token_kubeconfig_from_the_sim_passes_and_the_token_is_what_was_sent() {
    let sim = SpawnedSim::start().await.unwrap();
    let admin = sim.admin();
    let view = cluster(&sim, "tok", locked()).await;
    let yaml = admin
        .kubeconfig("tok", "alice", KubeconfigAuth::Token)
        .await
        .unwrap();
    let credential = Arc::new(ClusterCredential::from_kubeconfig(&yaml).unwrap());
    assert_eq!(credential.server(), Some(view.api_server_url.as_str()));
    assert_eq!(credential.tls_trust(), &TlsTrust::PlatformRoots);
    let token = api_token(&credential);

    let prober = prober();
    let after = log_position(&admin).await;
    let target = api_only(&view).with_credential(credential);
    let report = prober.check(&target, TIMEOUT).await;
    assert!(report.results.all_pass(), "{report:?}");
    prober.discover(&target, TIMEOUT).await.unwrap();
    let log = log_after(&admin, after, "tok").await;
    assert!(log.len() > 2, "{log:?}");
    for entry in &log {
        assert_eq!(
            entry.bearer_token.as_deref(),
            Some(token.as_str()),
            "{entry:?}"
        );
        assert_ne!(entry.status, 401, "{entry:?}");
    }
    assert_eq!(
        prober.credential_pools(),
        0,
        "a token over the platform roots shares the common pool"
    );
}

#[tokio::test]
async fn a_client_certificate_kubeconfig_over_tls_passes_with_its_own_pool() {
    let sim = SpawnedSim::start_tls().await.unwrap();
    let admin = sim.admin();
    let view = cluster(&sim, "mtls", locked()).await;
    assert!(view.api_server_url.starts_with("https://"));
    let yaml = admin
        .kubeconfig("mtls", "cert-user", KubeconfigAuth::Cert)
        .await
        .unwrap();
    let credential = Arc::new(ClusterCredential::from_kubeconfig(&yaml).unwrap());
    assert!(matches!(
        credential.api_auth(),
        ApiAuth::ClientCertificate { .. }
    ));
    assert_eq!(
        credential.tls_trust(),
        &TlsTrust::CaPem(sim.ca_pem().unwrap().to_owned())
    );

    let prober = prober();
    let after = log_position(&admin).await;
    let target = api_only(&view).with_credential(credential.clone());
    for _ in 0..3 {
        let report = prober.check(&target, TIMEOUT).await;
        assert!(report.results.all_pass(), "{report:?}");
    }
    assert_eq!(
        prober.credential_pools(),
        1,
        "one pool, reused by every check"
    );
    let log = log_after(&admin, after, "mtls").await;
    assert_eq!(log.len(), 3, "{log:?}");
    for entry in &log {
        assert_eq!(entry.client_cert_subject.as_deref(), Some("cert-user"));
        assert_eq!(entry.bearer_token, None);
        assert_eq!(entry.status, 200);
    }

    // Another credential, another pool; without any, the platform roots do not
    // know the simulator's CA.
    let other = admin
        .kubeconfig("mtls", "bob", KubeconfigAuth::Cert)
        .await
        .unwrap();
    let other = Arc::new(ClusterCredential::from_kubeconfig(&other).unwrap());
    assert_ne!(other.id(), credential.id());
    let with_other = api_only(&view).with_credential(other);
    assert!(prober.check(&with_other, TIMEOUT).await.results.api_server);
    assert_eq!(prober.credential_pools(), 2);
    let anonymous = prober.check(&api_only(&view), TIMEOUT).await;
    assert!(!anonymous.results.api_server);

    // The observability endpoints (HTTPS too) trust the credential's CA besides
    // the platform's roots.
    let full = ClusterCredential::from_kubeconfig(&yaml)
        .unwrap()
        .with_observability_tokens(Some(secret(PROM)), Some(secret(TEMPO)), Some(secret(LOKI)))
        .unwrap();
    let report = prober
        .check(&everything(&view).with_credential(Arc::new(full)), TIMEOUT)
        .await;
    assert!(report.results.all_pass(), "{report:?}");
    let report = prober.check(&everything(&view), TIMEOUT).await;
    assert_eq!(report.results.prometheus, Some(false), "{report:?}");
}

#[tokio::test]
async fn a_certificate_for_another_cluster_fails() {
    let sim = SpawnedSim::start_tls().await.unwrap();
    let admin = sim.admin();
    let a = cluster(&sim, "cluster-a", locked()).await;
    cluster(&sim, "cluster-b", locked()).await;
    let for_b = admin
        .kubeconfig("cluster-b", "mallory", KubeconfigAuth::Cert)
        .await
        .unwrap();
    let credential = ClusterCredential::from_kubeconfig(&for_b).unwrap();
    let target = api_only(&a).with_credential(Arc::new(credential));
    let report = prober().check(&target, TIMEOUT).await;
    assert!(!report.results.api_server, "{report:?}");
    let cause = cause(&report.failures, Component::ApiServer);
    assert!(cause.starts_with("HTTP 401 Unauthorized"), "{cause}");
    let log = log_after(&admin, 0, "cluster-a").await;
    assert_eq!(log[0].client_cert_subject.as_deref(), Some("mallory"));
}

#[tokio::test]
async fn observability_tokens_reach_only_their_own_endpoints() {
    let sim = SpawnedSim::start().await.unwrap();
    let admin = sim.admin();
    let view = cluster(&sim, "obs", locked()).await;
    let yaml = admin
        .kubeconfig("obs", "alice", KubeconfigAuth::Token)
        .await
        .unwrap();
    let credential = ClusterCredential::from_kubeconfig(&yaml).unwrap();
    let api = api_token(&credential);
    let prober = prober();

    // The API token alone: the observability endpoints refuse, and never see it.
    let after = log_position(&admin).await;
    let bare = everything(&view)
        .with_credential(Arc::new(ClusterCredential::from_kubeconfig(&yaml).unwrap()));
    let report = prober.check(&bare, TIMEOUT).await;
    assert!(report.results.api_server);
    for component in [Component::Prometheus, Component::Tempo, Component::Loki] {
        assert_eq!(cause(&report.failures, component), "HTTP 401 Unauthorized");
    }
    for entry in log_after(&admin, after, "obs").await {
        let expected = (entry.service == Service::ApiServer).then_some(api.as_str());
        assert_eq!(entry.bearer_token.as_deref(), expected, "{entry:?}");
    }

    let credential = credential
        .with_observability_tokens(Some(secret(PROM)), Some(secret(TEMPO)), Some(secret(LOKI)))
        .unwrap();
    let target = everything(&view).with_credential(Arc::new(credential));
    let after = log_position(&admin).await;
    let report = prober.check(&target, TIMEOUT).await;
    assert!(report.results.all_pass(), "{report:?}");
    let discovery = prober.discover(&target, TIMEOUT).await.unwrap();
    assert_eq!(
        discovery.gpu_evidence.dcgm_gpus,
        Some(2),
        "the DCGM query was let in"
    );
    let log = log_after(&admin, after, "obs").await;
    for service in [
        Service::ApiServer,
        Service::Prometheus,
        Service::Tempo,
        Service::Loki,
    ] {
        assert!(
            log.iter().any(|e| e.service == service),
            "{service:?}: {log:?}"
        );
    }
    for entry in &log {
        let expected = match entry.service {
            Service::ApiServer => api.as_str(),
            Service::Prometheus => PROM,
            Service::Tempo => TEMPO,
            Service::Loki => LOKI,
        };
        assert_eq!(entry.bearer_token.as_deref(), Some(expected), "{entry:?}");
        assert_ne!(entry.status, 401, "{entry:?}");
    }
}

#[tokio::test]
async fn validate_reports_each_component() {
    let sim = SpawnedSim::start().await.unwrap();
    let admin = sim.admin();
    let view = cluster(&sim, "val", locked()).await;
    let yaml = admin
        .kubeconfig("val", "alice", KubeconfigAuth::Token)
        .await
        .unwrap();
    let prober = prober();
    let with = |prometheus: &str| {
        let credential = ClusterCredential::from_kubeconfig(&yaml)
            .unwrap()
            .with_observability_tokens(
                Some(secret(prometheus)),
                Some(secret(TEMPO)),
                Some(secret(LOKI)),
            )
            .unwrap();
        everything(&view).with_credential(Arc::new(credential))
    };

    let after = log_position(&admin).await;
    let (validation, failures) = prober.validate(&with(PROM), TIMEOUT).await;
    let success = Some(ValidationOutcome::Success);
    assert_eq!(
        validation,
        CredentialValidation {
            api_server: success,
            prometheus: success,
            tempo: success,
            loki: success,
        }
    );
    assert!(validation.passed() && failures.is_empty(), "{failures:?}");
    let log = log_after(&admin, after, "val").await;
    let prometheus = log
        .iter()
        .find(|e| e.service == Service::Prometheus)
        .unwrap();
    assert_eq!(prometheus.path, "/prometheus/api/v1/query?query=up");

    let (validation, failures) = prober.validate(&with("wrong-token"), TIMEOUT).await;
    assert_eq!(validation.prometheus, Some(ValidationOutcome::Failed));
    assert_eq!(validation.api_server, success);
    assert_eq!(validation.tempo, success);
    assert!(!validation.passed());
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        cause(&failures, Component::Prometheus),
        "HTTP 401 Unauthorized"
    );

    // No credential, endpoints not configured: only the API server, failed.
    let (validation, failures) = prober.validate(&api_only(&view), TIMEOUT).await;
    assert_eq!(
        validation,
        CredentialValidation {
            api_server: Some(ValidationOutcome::Failed),
            ..CredentialValidation::default()
        }
    );
    let cause = cause(&failures, Component::ApiServer);
    assert!(cause.starts_with("HTTP 401 Unauthorized"), "{cause}");
}

#[tokio::test]
async fn a_requested_token_passes_a_check_and_its_jwt_exp_is_its_expiry() {
    let sim = SpawnedSim::start().await.unwrap();
    let admin = sim.admin();
    let view = cluster(&sim, "rot", locked()).await;
    let yaml = admin
        .kubeconfig("rot", "alice", KubeconfigAuth::Token)
        .await
        .unwrap();
    let prober = prober();
    let current = api_only(&view)
        .with_credential(Arc::new(ClusterCredential::from_kubeconfig(&yaml).unwrap()));
    let now = admin.clock().await.unwrap().now;
    let (token, expires_at) = prober
        .request_token(&current, "fleet-system", "fleetreg", 3600, TIMEOUT)
        .await
        .unwrap();
    let expected = now + Span::seconds(3600);
    assert!(
        (expires_at - expected).num_seconds().abs() <= 2,
        "{expires_at} vs {expected}"
    );

    let fresh = ClusterCredential::from_token(token.clone(), None, false).unwrap();
    assert_eq!(fresh.expires_at(), Some(expires_at), "the JWT's exp");
    let rotated = api_only(&view).with_credential(Arc::new(fresh));
    let after = log_position(&admin).await;
    let report = prober.check(&rotated, TIMEOUT).await;
    assert!(report.results.all_pass(), "{report:?}");
    let log = log_after(&admin, after, "rot").await;
    assert_eq!(
        log[0].bearer_token.as_deref(),
        Some(token.expose_secret()),
        "the new token was used"
    );

    // Past its expiry the cluster refuses it.
    admin.advance_clock(3601).await.unwrap();
    assert!(!prober.check(&rotated, TIMEOUT).await.results.api_server);

    // The cluster's refusals surface as errors.
    let error = prober
        .request_token(&current, "fleet-system", "fleetreg", 60, TIMEOUT)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("422"), "{error}");
    let anonymous = prober
        .request_token(&api_only(&view), "fleet-system", "fleetreg", 3600, TIMEOUT)
        .await
        .unwrap_err();
    assert!(anonymous.to_string().contains("401"), "{anonymous}");
    let bad_name = prober
        .request_token(&current, "../secrets", "x", 3600, TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(bad_name, Error::InvalidName { .. }), "{bad_name}");
}

/// A kubeconfig with inline client certificate, key and CA.
fn cert_kubeconfig(server: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    \
         client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: x\n  \
         context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
        ca = STANDARD.encode(ca_pem),
        cert = STANDARD.encode(cert_pem),
        key = STANDARD.encode(key_pem),
    )
}

#[tokio::test]
async fn a_client_certificate_expires_at_its_not_after() {
    let sim = SpawnedSim::start_tls().await.unwrap();
    let admin = sim.admin();
    let view = cluster(&sim, "expiry", locked()).await;
    let not_after: DateTime<Utc> =
        DateTime::from_timestamp((Utc::now() + Span::days(30)).timestamp(), 0).unwrap();
    let issued = admin
        .issue_client_cert(
            "expiry",
            &IssueClientCert {
                user: "carol".into(),
                not_after: Some(not_after),
            },
        )
        .await
        .unwrap();
    let yaml = cert_kubeconfig(
        &view.api_server_url,
        &issued.ca_pem,
        &issued.cert_pem,
        &issued.key_pem,
    );
    let credential = ClusterCredential::from_kubeconfig(&yaml).unwrap();
    assert_eq!(credential.expires_at(), Some(not_after));

    // An observability token that is a JWT expiring sooner wins.
    let soon = (Utc::now() + Span::hours(1)).timestamp();
    let jwt = format!(
        "{}.{}.c2ln",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{soon}}}"#)),
    );
    let credential = credential
        .with_observability_tokens(Some(secret(&jwt)), None, Some(secret("opaque")))
        .unwrap();
    assert_eq!(credential.expires_at().map(|t| t.timestamp()), Some(soon));

    let target = api_only(&view)
        .with_credential(Arc::new(ClusterCredential::from_kubeconfig(&yaml).unwrap()));
    assert!(prober().check(&target, TIMEOUT).await.results.api_server);

    // A key that does not belong to the certificate is refused at upload.
    let other = admin
        .issue_client_cert(
            "expiry",
            &IssueClientCert {
                user: "dave".into(),
                not_after: None,
            },
        )
        .await
        .unwrap();
    let mismatched = cert_kubeconfig(
        &view.api_server_url,
        &issued.ca_pem,
        &issued.cert_pem,
        &other.key_pem,
    );
    let error = ClusterCredential::from_kubeconfig(&mismatched).unwrap_err();
    assert_eq!(error.field(), "users[0].user.client-key-data", "{error}");
    assert!(error.reason().contains("does not match"), "{error}");
}

/// A valid token kubeconfig with `user_extra` and `cluster_extra` lines (already
/// indented for the `user` and `cluster` mappings) and `tail` appended.
fn kubeconfig(user_extra: &str, cluster_extra: &str, tail: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    \
         server: https://api.example.test:6443\n{cluster_extra}users:\n- name: u\n  user:\n    \
         token: {TOKEN}\n{user_extra}contexts:\n- name: x\n  context:\n    cluster: c\n    \
         user: u\ncurrent-context: x\n{tail}"
    )
}

const TOKEN: &str = "kubeconfig-secret-token-9f8e7d";
const PASSWORD: &str = "hunter2-password-value";

#[test]
fn the_baseline_kubeconfig_is_accepted() {
    let credential = ClusterCredential::from_kubeconfig(&kubeconfig("", "", "")).unwrap();
    assert_eq!(api_token(&credential), TOKEN);
    assert_eq!(credential.server(), Some("https://api.example.test:6443"));
    assert_eq!(credential.tls_trust(), &TlsTrust::PlatformRoots);
    assert_eq!(
        credential.expires_at(),
        None,
        "an opaque token says nothing"
    );
    let insecure = ClusterCredential::from_kubeconfig(&kubeconfig(
        "",
        "    insecure-skip-tls-verify: true\n",
        "",
    ))
    .unwrap();
    assert!(insecure.insecure_skip_tls_verify());
}

#[test]
fn every_unsafe_kubeconfig_is_refused_with_the_field_named() {
    let user = "users[0].user";
    let cluster = "clusters[0].cluster";
    let cases: Vec<(&str, String, String)> = vec![
        (
            "exec",
            kubeconfig(
                "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n      args: [\"-c\", \"id\"]\n",
                "",
                "",
            ),
            format!("{user}.exec"),
        ),
        (
            "auth-provider",
            kubeconfig(
                "    auth-provider:\n      name: gcp\n      config:\n        cmd-path: /usr/bin/gcloud\n",
                "",
                "",
            ),
            format!("{user}.auth-provider"),
        ),
        (
            "tokenFile",
            kubeconfig("    tokenFile: /var/run/secrets/token\n", "", ""),
            format!("{user}.tokenFile"),
        ),
        (
            "client-certificate path",
            kubeconfig("    client-certificate: /etc/kubernetes/pki/admin.crt\n", "", ""),
            format!("{user}.client-certificate"),
        ),
        (
            "client-key path",
            kubeconfig("    client-key: /etc/kubernetes/pki/admin.key\n", "", ""),
            format!("{user}.client-key"),
        ),
        (
            "certificate-authority path",
            kubeconfig("", "    certificate-authority: /etc/kubernetes/pki/ca.crt\n", ""),
            format!("{cluster}.certificate-authority"),
        ),
        (
            "basic auth",
            kubeconfig(&format!("    username: admin\n    password: {PASSWORD}\n"), "", ""),
            format!("{user}.username"),
        ),
        (
            "password alone",
            kubeconfig(&format!("    password: {PASSWORD}\n"), "", ""),
            format!("{user}.password"),
        ),
        (
            "proxy-url",
            kubeconfig("", "    proxy-url: http://proxy.internal:3128\n", ""),
            format!("{cluster}.proxy-url"),
        ),
        (
            "impersonate user",
            kubeconfig("    as: system:admin\n", "", ""),
            format!("{user}.as"),
        ),
        (
            "impersonate groups",
            kubeconfig("    as-groups: [\"system:masters\"]\n", "", ""),
            format!("{user}.as-groups"),
        ),
        (
            "impersonate uid",
            kubeconfig("    as-uid: \"0\"\n", "", ""),
            format!("{user}.as-uid"),
        ),
        (
            "impersonate extra",
            kubeconfig("    as-user-extra:\n      scopes: [all]\n", "", ""),
            format!("{user}.as-user-extra"),
        ),
        (
            "exec spelt otherwise",
            kubeconfig("    Exec:\n      command: /bin/sh\n", "", ""),
            format!("{user}.Exec"),
        ),
        (
            "an unknown field",
            kubeconfig("    token-file: /etc/token\n", "", ""),
            format!("{user}.token-file"),
        ),
        (
            "a YAML merge key",
            kubeconfig("    <<: {exec: {command: sh}}\n", "", ""),
            format!("{user}.<<"),
        ),
        (
            "exec in a user no context uses",
            kubeconfig("", "", "").replace(
                "contexts:",
                "- name: unused\n  user:\n    exec:\n      command: /bin/sh\ncontexts:",
            ),
            "users[1].user.exec".into(),
        ),
        (
            "missing context",
            kubeconfig("", "", "").replace("current-context: x", "current-context: nope"),
            "current-context".into(),
        ),
        (
            "no context at all",
            kubeconfig("", "", "").replace(
                "contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
                "",
            ),
            "contexts".into(),
        ),
        (
            "a context naming a missing user",
            kubeconfig("", "", "").replace("    user: u\n", "    user: ghost\n"),
            "contexts[0].context.user".into(),
        ),
        (
            "a context naming a missing cluster",
            kubeconfig("", "", "").replace("    cluster: c\n", "    cluster: ghost\n"),
            "contexts[0].context.cluster".into(),
        ),
        (
            "a duplicate key",
            kubeconfig(&format!("    token: {TOKEN}-again\n"), "", ""),
            "kubeconfig".into(),
        ),
        (
            "a CA that is not base64",
            kubeconfig("", "    certificate-authority-data: '%%%'\n", ""),
            format!("{cluster}.certificate-authority-data"),
        ),
        (
            "a CA and skipped verification",
            kubeconfig(
                "",
                &format!(
                    "    certificate-authority-data: {}\n    insecure-skip-tls-verify: true\n",
                    STANDARD.encode("x")
                ),
                "",
            ),
            format!("{cluster}.insecure-skip-tls-verify"),
        ),
        (
            "a certificate without its key",
            kubeconfig("", "", "").replace(
                &format!("    token: {TOKEN}\n"),
                &format!("    client-certificate-data: {}\n", STANDARD.encode("x")),
            ),
            format!("{user}.client-key-data"),
        ),
        (
            "a token and a certificate",
            kubeconfig(
                &format!("    client-certificate-data: {}\n", STANDARD.encode("x")),
                "",
                "",
            ),
            format!("{user}.token"),
        ),
        (
            "a server that is not a URL",
            kubeconfig("", "", "").replace("https://api.example.test:6443", "file:///etc/passwd"),
            format!("{cluster}.server"),
        ),
    ];
    for (what, yaml, field) in cases {
        let error: CredentialError = match ClusterCredential::from_kubeconfig(&yaml) {
            Ok(credential) => panic!("{what}: accepted: {credential:?}\n{yaml}"),
            Err(error) => error,
        };
        assert_eq!(error.field(), field, "{what}: {error}");
        let hint = match what {
            "exec"
            | "auth-provider"
            | "exec spelt otherwise"
            | "exec in a user no context uses" => Some("run commands"),
            "tokenFile" => Some("token file would be read"),
            "client-certificate path" | "client-key path" | "certificate-authority path" => {
                Some("file paths would be read")
            }
            "basic auth" | "password alone" => Some("basic authentication"),
            "proxy-url" => Some("proxy"),
            w if w.starts_with("impersonate") => Some("impersonation"),
            "an unknown field" | "a YAML merge key" => Some("unknown field"),
            _ => None,
        };
        if let Some(hint) = hint {
            assert!(
                matches!(error, CredentialError::Forbidden { .. }),
                "{what}: {error:?}"
            );
            assert!(error.reason().contains(hint), "{what}: {error}");
        }
        let text = error.to_string();
        assert!(text.starts_with(&field), "{what}: {text}");
        for secret in [TOKEN, PASSWORD, "/bin/sh", "/etc/kubernetes"] {
            assert!(!text.contains(secret), "{what}: {text}");
            assert!(!format!("{error:?}").contains(secret), "{what}: {error:?}");
        }
    }
}

#[test]
fn from_token_names_its_fields() {
    let cases: [(&str, Result<ClusterCredential, CredentialError>); 5] = [
        (
            "insecure_skip_tls_verify",
            ClusterCredential::from_token(secret("t"), Some("pem"), true),
        ),
        (
            "ca_cert",
            ClusterCredential::from_token(secret("t"), Some("not a certificate"), false),
        ),
        (
            "token",
            ClusterCredential::from_token(secret(""), None, false),
        ),
        (
            "token",
            ClusterCredential::from_token(secret("has space"), None, false),
        ),
        (
            "loki_token",
            ClusterCredential::from_token(secret("t"), None, false)
                .unwrap()
                .with_observability_tokens(None, None, Some(secret("line\nbreak"))),
        ),
    ];
    for (field, result) in cases {
        let error = result.unwrap_err();
        assert_eq!(error.field(), field, "{error}");
        assert!(!error.to_string().contains("line\nbreak"));
    }
    let insecure = ClusterCredential::from_token(secret("t"), None, true).unwrap();
    assert_eq!(insecure.tls_trust(), &TlsTrust::InsecureSkipVerify);
}

#[tokio::test]
async fn debug_never_shows_a_secret() {
    let sim = SpawnedSim::start_tls().await.unwrap();
    let admin = sim.admin();
    cluster(&sim, "dbg", locked()).await;
    let issued = admin
        .issue_client_cert(
            "dbg",
            &IssueClientCert {
                user: "erin".into(),
                not_after: None,
            },
        )
        .await
        .unwrap();
    let view = admin.cluster("dbg").await.unwrap();
    let yaml = cert_kubeconfig(
        &view.api_server_url,
        &issued.ca_pem,
        &issued.cert_pem,
        &issued.key_pem,
    );
    let key_lines: Vec<&str> = issued
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(!key_lines.is_empty());

    let cert = ClusterCredential::from_kubeconfig(&yaml)
        .unwrap()
        .with_observability_tokens(Some(secret(PROM)), Some(secret(TEMPO)), Some(secret(LOKI)))
        .unwrap();
    let token = ClusterCredential::from_kubeconfig(&kubeconfig("", "", "")).unwrap();
    let from_token =
        ClusterCredential::from_token(secret(TOKEN), Some(&issued.ca_pem), false).unwrap();
    let insecure = ClusterCredential::from_token(secret(TOKEN), None, true).unwrap();
    let mut texts = Vec::new();
    for credential in [cert, token, from_token, insecure] {
        texts.push(format!("{credential:?}"));
        texts.push(format!("{credential:#?}"));
        texts.push(format!("{:?}", credential.api_auth()));
        texts.push(format!("{:?}", credential.tls_trust()));
        let target = api_only(&view).with_credential(Arc::new(credential));
        texts.push(format!("{target:?}"));
    }
    for text in &texts {
        for secret in [TOKEN, PROM, TEMPO, LOKI, "PRIVATE KEY"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        for line in &key_lines {
            assert!(!text.contains(line), "key material in {text}");
        }
    }
    assert!(texts[0].contains("<redacted>"), "{}", texts[0]);
}

/// The `Authorization` header of every request a [`recorder`] received.
type Seen = Arc<Mutex<Vec<Option<String>>>>;

/// A server answering every GET with 200 (or a redirect to `redirect_to`),
/// recording the `Authorization` header of each request.
async fn recorder(redirect_to: Option<String>) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let handler = |State((seen, redirect_to)): State<(Seen, Option<String>)>,
                   headers: HeaderMap| async move {
        let auth = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_owned());
        seen.lock().unwrap().push(auth);
        match redirect_to {
            Some(to) => (StatusCode::FOUND, [(header::LOCATION, to)]).into_response(),
            None => (StatusCode::OK, "ready").into_response(),
        }
    };
    let app = Router::new()
        .route("/{*path}", get(handler))
        .with_state((seen.clone(), redirect_to));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn a_redirect_to_another_host_does_not_carry_the_token() {
    let (elsewhere, seen_elsewhere) = recorder(None).await;
    // `localhost` instead of 127.0.0.1, and another port: another host.
    let elsewhere = elsewhere.replace("127.0.0.1", "localhost");
    let (first, seen_first) = recorder(Some(format!("{elsewhere}/-/ready"))).await;
    let credential = ClusterCredential::from_token(secret("api"), None, false)
        .unwrap()
        .with_observability_tokens(Some(secret(PROM)), None, None)
        .unwrap();
    let target = Target {
        api_server_url: first.clone(),
        endpoints: Endpoints {
            prometheus_url: Some(first),
            ..Endpoints::default()
        },
        credential: Some(Arc::new(credential)),
    };
    let report = prober().check(&target, TIMEOUT).await;
    assert_eq!(report.results.prometheus, Some(true), "{report:?}");
    let first: Vec<_> = seen_first.lock().unwrap().clone();
    assert!(
        first.contains(&Some(format!("Bearer {PROM}"))),
        "the token went to Prometheus: {first:?}"
    );
    let elsewhere: Vec<_> = seen_elsewhere.lock().unwrap().clone();
    assert_eq!(elsewhere, vec![None], "nothing carried across the redirect");
}

#[tokio::test]
async fn credentialed_pools_resolve_through_the_egress_policy() {
    // A listener that must never be contacted.
    let trap = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = trap.local_addr().unwrap().port();
    let contacted = Arc::new(Mutex::new(0usize));
    let counter = contacted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = trap.accept().await {
            *counter.lock().unwrap() += 1;
            drop(stream);
        }
    });
    let only = EgressPolicy::parse(&["127.0.0.2/32".into()]).unwrap();
    let prober = Prober::new(only).unwrap();
    // Skipping verification needs a pool of its own.
    let credential = ClusterCredential::from_token(secret("tok"), None, true).unwrap();
    let target = Target {
        api_server_url: format!("https://localhost:{port}"),
        endpoints: Endpoints::default(),
        credential: Some(Arc::new(credential)),
    };
    let report = prober.check(&target, TIMEOUT).await;
    let cause = cause(&report.failures, Component::ApiServer);
    assert!(
        cause.starts_with("blocked by health_check.allowed_networks"),
        "{cause}"
    );
    assert_eq!(prober.credential_pools(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(*contacted.lock().unwrap(), 0);
}
