//! kube-rs, the client fleetreg's probe uses, against the simulator over HTTPS with
//! a kubeconfig from the admin API.

use super::{log_after, required, spec};
use fleetreg_sim::{KubeconfigAuth, SpawnedSim};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::collections::BTreeMap;

async fn client(yaml: &str) -> kube::Client {
    let kubeconfig = Kubeconfig::from_yaml(yaml).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn api_code<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> u16 {
    match result {
        Err(kube::Error::Api(status)) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn kube_rs_manages_secrets_and_token_requests() {
    let sim = SpawnedSim::start_tls().await.unwrap();
    let admin = sim.admin();
    admin
        .create_cluster_with_auth("kube", spec(), required())
        .await
        .unwrap();
    let yaml = admin
        .kubeconfig("kube", "erin", KubeconfigAuth::Cert)
        .await
        .unwrap();
    let client = client(&yaml).await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(!namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "fleetreg");
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("db".into()),
            labels: Some(BTreeMap::from([("app".into(), "fleetreg".into())])),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([("password".into(), "pw-1".into())])),
        ..Secret::default()
    };
    let created = secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    assert_eq!(created.data.as_ref().unwrap()["password"].0, b"pw-1");
    assert_eq!(
        api_code(secrets.create(&PostParams::default(), &secret).await),
        409
    );
    assert_eq!(api_code(secrets.get("missing").await), 404);
    let listed = secrets
        .list(&ListParams::default().labels("app=fleetreg"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let patch = serde_json::json!({"stringData": {"password": "pw-2"}});
    let patched = secrets
        .patch("db", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(patched.data.as_ref().unwrap()["password"].0, b"pw-2");
    assert_ne!(
        patched.metadata.resource_version,
        created.metadata.resource_version
    );
    let deleted = secrets
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    assert!(deleted.is_right(), "deleted at once: a Status");
    assert_eq!(api_code(secrets.get("db").await), 404);

    let accounts: Api<ServiceAccount> = Api::namespaced(client, "fleetreg");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(900),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let answer = accounts
        .create_token_request("prober", &PostParams::default(), &request)
        .await
        .unwrap();
    let token = answer.status.unwrap().token;
    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(sim.ca_pem().unwrap().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let view = admin.cluster("kube").await.unwrap();
    let response = http
        .get(format!("{}/version", view.api_server_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let log = log_after(&admin, 0, "kube").await;
    assert!(log.iter().filter(|e| e.bearer_token.is_none()).all(|e| e
        .client_cert_subject
        .as_deref()
        == Some("erin")
        && e.status < 500));
}
