use super::{log_after, log_end, required, spec};
use fleetreg_sim::{
    AuthSpec, ClusterView, IssueClientCert, IssuedClientCert, KubeconfigAuth, SimAdmin, SpawnedSim,
};
use serde_json::Value;

/// A simulator over HTTPS with two clusters, `a` and `b`, both requiring a credential.
async fn start_tls() -> (SpawnedSim, SimAdmin, ClusterView, ClusterView) {
    let sim = SpawnedSim::start_tls().await.unwrap();
    assert!(sim.base_url().starts_with("https://127.0.0.1:"));
    let admin = sim.admin();
    let a = admin
        .create_cluster_with_auth("a", spec(), required())
        .await
        .unwrap();
    let b = admin
        .create_cluster_with_auth("b", spec(), required())
        .await
        .unwrap();
    (sim, admin, a, b)
}

/// A client trusting only the simulator's CA, presenting `identity` if given.
fn client(ca_pem: &str, identity: Option<&IssuedClientCert>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap());
    if let Some(issued) = identity {
        let pem = issued.identity_pem();
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

async fn status(http: &reqwest::Client, url: String) -> u16 {
    http.get(url).send().await.unwrap().status().as_u16()
}

fn issue(user: &str) -> IssueClientCert {
    IssueClientCert {
        user: user.into(),
        not_after: None,
    }
}

#[tokio::test]
async fn a_client_certificate_is_accepted_and_its_subject_logged() {
    let (sim, admin, a, _b) = start_tls().await;
    let ca = sim.ca_pem().unwrap();
    assert_eq!(admin.ca_pem().await.unwrap(), ca);
    let issued = admin.issue_client_cert("a", &issue("alice")).await.unwrap();
    assert_eq!(issued.ca_pem, ca);
    let http = client(ca, Some(&issued));

    let after = log_end(&admin).await;
    let response = http
        .get(format!("{}/api/v1/namespaces", a.api_server_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["kind"], "NamespaceList");
    let log = log_after(&admin, after, "a").await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].client_cert_subject.as_deref(), Some("alice"));
    assert_eq!(log[0].bearer_token, None);

    let listed = admin.client_certs("a").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].user.as_str(), listed[0].serial.as_str()),
        ("alice", issued.serial.as_str())
    );
    assert!(admin.client_certs("b").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_certificate_for_another_cluster_is_refused() {
    let (sim, admin, a, b) = start_tls().await;
    let for_b = admin.issue_client_cert("b", &issue("alice")).await.unwrap();
    let http = client(sim.ca_pem().unwrap(), Some(&for_b));
    assert_eq!(
        status(&http, format!("{}/version", a.api_server_url)).await,
        401
    );
    assert_eq!(
        status(&http, format!("{}/version", b.api_server_url)).await,
        200
    );
    let log = log_after(&admin, 0, "a").await;
    assert_eq!(
        (log[0].status, log[0].client_cert_subject.as_deref()),
        (401, Some("alice"))
    );
}

#[tokio::test]
async fn without_a_certificate_only_a_token_gets_in() {
    let (sim, admin, a, _b) = start_tls().await;
    let http = client(sim.ca_pem().unwrap(), None);
    assert_eq!(
        status(&http, format!("{}/version", a.api_server_url)).await,
        401
    );
    let with_token = http
        .get(format!("{}/version", a.api_server_url))
        .bearer_auth("bootstrap")
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), 200);
    let log = log_after(&admin, 0, "a").await;
    assert_eq!(log[1].bearer_token.as_deref(), Some("bootstrap"));
    assert_eq!(log[1].client_cert_subject, None);
}

#[tokio::test]
async fn revoked_and_expired_certificates_are_refused() {
    let (sim, admin, a, _b) = start_tls().await;
    let ca = sim.ca_pem().unwrap();
    let revoked = admin.issue_client_cert("a", &issue("bob")).await.unwrap();
    let http = client(ca, Some(&revoked));
    let url = format!("{}/version", a.api_server_url);
    assert_eq!(status(&http, url.clone()).await, 200);
    admin
        .revoke_client_cert("a", &revoked.serial)
        .await
        .unwrap();
    assert_eq!(status(&client(ca, Some(&revoked)), url.clone()).await, 401);

    let soon = IssueClientCert {
        user: "carol".into(),
        not_after: Some(sim.sim.now() + chrono::Duration::hours(1)),
    };
    let expiring = admin.issue_client_cert("a", &soon).await.unwrap();
    let http = client(ca, Some(&expiring));
    assert_eq!(status(&http, url.clone()).await, 200);
    admin.advance_clock(3601).await.unwrap();
    assert_eq!(status(&client(ca, Some(&expiring)), url).await, 401);
    let listed = admin.client_certs("a").await.unwrap();
    assert!(listed.iter().any(|c| c.user == "carol" && c.expired));
}

#[tokio::test]
async fn a_certificate_from_another_ca_fails_the_handshake() {
    let (sim, _admin, a, _b) = start_tls().await;
    let other = SpawnedSim::start_tls().await.unwrap();
    other
        .admin()
        .create_cluster_with_auth("a", spec(), AuthSpec::default())
        .await
        .unwrap();
    let foreign = other
        .admin()
        .issue_client_cert("a", &issue("mallory"))
        .await
        .unwrap();
    let http = client(sim.ca_pem().unwrap(), Some(&foreign));
    let result = http
        .get(format!("{}/version", a.api_server_url))
        .send()
        .await;
    assert!(result.is_err(), "{result:?}");
}

#[tokio::test]
async fn kubeconfig_with_a_certificate_over_tls() {
    let (sim, admin, a, _b) = start_tls().await;
    let yaml = admin
        .kubeconfig("a", "dave", KubeconfigAuth::Cert)
        .await
        .unwrap();
    let config: Value = serde_yaml::from_str(&yaml).unwrap();
    let cluster = &config["clusters"][0]["cluster"];
    assert_eq!(cluster["server"], a.api_server_url.as_str());
    let decode = |v: &Value| {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        String::from_utf8(bytes).unwrap()
    };
    let ca = decode(&cluster["certificate-authority-data"]);
    assert_eq!(ca, sim.ca_pem().unwrap());
    let user = &config["users"][0]["user"];
    let identity = format!(
        "{}{}",
        decode(&user["client-certificate-data"]),
        decode(&user["client-key-data"])
    );
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .identity(reqwest::Identity::from_pem(identity.as_bytes()).unwrap())
        .build()
        .unwrap();
    assert_eq!(
        status(&http, format!("{}/api/v1/nodes", a.api_server_url)).await,
        200
    );
    let log = log_after(&admin, 0, "a").await;
    assert_eq!(log[0].client_cert_subject.as_deref(), Some("dave"));
}
