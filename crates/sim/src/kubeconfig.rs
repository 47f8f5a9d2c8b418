//! Kubeconfig files for simulated clusters, with every credential inline (no
//! paths to other files), as tests and demos hand them to kubectl or kube-rs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Which credential a kubeconfig carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KubeconfigAuth {
    /// A new bearer token the cluster accepts (`users[].user.token`).
    #[default]
    Token,
    /// A new client certificate and key (`client-certificate-data`,
    /// `client-key-data`); needs the simulator on HTTPS.
    Cert,
    /// No credential.
    None,
}

/// The credential written into a kubeconfig.
#[derive(Debug, Clone)]
pub(crate) enum KubeCredential {
    Token(String),
    Cert { cert_pem: String, key_pem: String },
    None,
}

/// A kubeconfig (YAML) with one cluster, one user and one context, all named
/// after the cluster except the user.
pub(crate) fn render(
    cluster: &str,
    server: &str,
    ca_pem: Option<&str>,
    user: &str,
    credential: &KubeCredential,
) -> Result<String, serde_yaml::Error> {
    let mut cluster_entry = Map::new();
    cluster_entry.insert("server".into(), json!(server));
    if let Some(ca) = ca_pem {
        cluster_entry.insert(
            "certificate-authority-data".into(),
            json!(STANDARD.encode(ca)),
        );
    }
    let user_entry = match credential {
        KubeCredential::Token(token) => json!({"token": token}),
        KubeCredential::Cert { cert_pem, key_pem } => json!({
            "client-certificate-data": STANDARD.encode(cert_pem),
            "client-key-data": STANDARD.encode(key_pem),
        }),
        KubeCredential::None => json!({}),
    };
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": Value::Object(cluster_entry)}],
        "users": [{"name": user, "user": user_entry}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
        "preferences": {},
    });
    serde_yaml::to_string(&config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_token_and_ca() {
        let yaml = render(
            "c1",
            "https://127.0.0.1:1/c/c1",
            Some("PEM"),
            "alice",
            &KubeCredential::Token("tok".into()),
        )
        .unwrap();
        let parsed: Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(
            parsed["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:1/c/c1"
        );
        assert_eq!(
            parsed["clusters"][0]["cluster"]["certificate-authority-data"],
            STANDARD.encode("PEM")
        );
        assert_eq!(parsed["users"][0]["user"]["token"], "tok");
        assert_eq!(parsed["current-context"], "c1");
    }
}
