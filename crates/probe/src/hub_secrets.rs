//! [`HubSecrets`]: the Secrets of one namespace on the hub cluster, where the
//! server's Kubernetes credentials backend keeps each cluster's sealed
//! envelopes (seed 7.2). A thin kube-rs client: get, create, replace (with the
//! `resourceVersion` read as precondition), delete, and a start-up check.
//!
//! The values this module moves are whatever the caller gives it (the server
//! gives vault envelopes, never plaintext); it never logs them, and the hub's
//! bearer token is only in the client's sensitive header and a redacted `Debug`.

use crate::remote::{escape_remote, fetch, CapLayer};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, GetParams, ListParams, PostParams};
use kube::core::ObjectList;
use kube::Api;
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one call to the hub may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where the hub's API server is and how to reach it.
#[derive(Clone)]
pub struct HubConfig {
    /// The hub's API server URL (`https://…`; a path is kept as a prefix).
    pub api_url: String,
    /// The bearer token of the registry's service account on the hub.
    pub token: SecretString,
    /// The CA bundle (PEM) to trust for the hub, besides none other.
    pub ca_pem: Option<String>,
    /// Do not verify the hub's certificate (tests and labs only).
    pub insecure_skip_tls_verify: bool,
    /// The namespace the Secrets live in.
    pub namespace: String,
}

impl std::fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConfig")
            .field("api_url", &self.api_url)
            .field("token", &"<redacted>")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// One Secret as this module reads and writes it (values as UTF-8 text).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HubSecret {
    /// The Secret's name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
    /// `data`, decoded from base64 (each value must be UTF-8).
    pub data: BTreeMap<String, String>,
    /// The `resourceVersion` it was read at (`None`: not read from the hub).
    pub resource_version: Option<String>,
}

impl std::fmt::Debug for HubSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSecret")
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field("annotations", &self.annotations)
            .field("data_keys", &self.data.keys().collect::<Vec<_>>())
            .field("resource_version", &self.resource_version)
            .finish()
    }
}

/// The most bytes of one answer from the hub read (Secrets are at most 1 MiB;
/// a list of one is less).
const MAX_RESPONSE_BYTES: u64 = crate::remote::DEFAULT_MAX_RESPONSE_BYTES;

/// Why a call to the hub failed (never a Secret's value or the token).
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The configuration cannot make a client (URL, CA bundle, TLS).
    #[error("invalid hub configuration: {0}")]
    Config(String),
    /// The Secret changed since it was read (or exists although it was not
    /// there when read): `409 Conflict` / `AlreadyExists`.
    #[error("Secret {0} changed on the hub since it was read")]
    Conflict(String),
    /// The Secret's `data` is not what this module writes.
    #[error("Secret {name} holds a value under {key} that is not UTF-8 text")]
    NotText {
        /// The Secret.
        name: String,
        /// The data key.
        key: String,
    },
    /// The hub answered with an error status.
    #[error("hub API answered {code} ({reason}): {message}")]
    Status {
        /// HTTP status.
        code: u16,
        /// The Kubernetes reason (`Forbidden`, `NotFound`, …).
        reason: String,
        /// The hub's message.
        message: String,
    },
    /// The hub could not be reached (connection, TLS, timeout).
    #[error("hub unreachable: {0}")]
    Unreachable(String),
}

impl HubError {
    /// A failed call; the hub's reason and message escaped and truncated, an
    /// answer over the size limit or that does not decode as `Unreachable`
    /// with its cause.
    fn from_probe(error: crate::Error, name: &str) -> HubError {
        match error {
            crate::Error::Kube {
                source: kube::Error::Api(status),
                ..
            } if status.code == 409 => HubError::Conflict(name.to_owned()),
            crate::Error::Kube {
                source: kube::Error::Api(status),
                ..
            } => HubError::Status {
                code: status.code,
                reason: escape_remote(&status.reason),
                message: escape_remote(&status.message),
            },
            crate::Error::Kube { source, .. } => HubError::Unreachable(crate::cause_chain(&source)),
            other => HubError::Unreachable(other.to_string()),
        }
    }

    fn is_not_found(error: &crate::Error) -> bool {
        matches!(error, crate::Error::Kube { source: kube::Error::Api(status), .. } if status.code == 404)
    }
}

/// The Secrets of one namespace on the hub. Cheap to clone.
#[derive(Clone)]
pub struct HubSecrets {
    client: kube::Client,
    api: Api<Secret>,
    namespace: String,
    api_url: String,
}

impl std::fmt::Debug for HubSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSecrets")
            .field("api_url", &self.api_url)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl HubSecrets {
    /// A client for `config` (nothing is sent yet; see [`HubSecrets::check`]).
    pub fn new(config: &HubConfig) -> Result<HubSecrets, HubError> {
        let uri: http::Uri = config
            .api_url
            .parse()
            .map_err(|_| HubError::Config(format!("api_url {:?} is not a URL", config.api_url)))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(HubError::Config(
                "api_url: expected http:// or https:// with a host".into(),
            ));
        }
        let mut kube_config = kube::Config::new(uri);
        kube_config.default_namespace = config.namespace.clone();
        kube_config.connect_timeout = Some(TIMEOUT);
        kube_config.read_timeout = Some(TIMEOUT);
        kube_config.write_timeout = Some(TIMEOUT);
        if let Some(pem) = &config.ca_pem {
            let certificates = crate::pki::certificates(pem)
                .map_err(|reason| HubError::Config(format!("ca_cert_file: {reason}")))?;
            kube_config.root_cert = Some(certificates.ders);
        }
        kube_config.accept_invalid_certs = config.insecure_skip_tls_verify;
        kube_config.auth_info.token = Some(SecretString::from(
            config.token.expose_secret().trim().to_owned(),
        ));
        let client = kube::client::ClientBuilder::try_from(kube_config)
            .map_err(|e| HubError::Config(crate::cause_chain(&e)))?
            .with_layer(&CapLayer::new(MAX_RESPONSE_BYTES))
            .build();
        Ok(HubSecrets {
            api: Api::namespaced(client.clone(), &config.namespace),
            client,
            namespace: config.namespace.clone(),
            api_url: config.api_url.clone(),
        })
    }

    /// The namespace the Secrets live in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Proves the hub answers and accepts the token: lists at most one Secret
    /// carrying `label_selector` in the namespace.
    pub async fn check(&self, label_selector: &str) -> Result<(), HubError> {
        let params = ListParams::default().labels(label_selector).limit(1);
        let request = self.request().list(&params);
        fetch::<ObjectList<Secret>>(&self.client, request, "list Secrets")
            .await
            .map_err(|e| HubError::from_probe(e, &self.namespace))?;
        Ok(())
    }

    /// The Secret `name`, `None` when there is none.
    pub async fn get(&self, name: &str) -> Result<Option<HubSecret>, HubError> {
        let request = self.request().get(name, &GetParams::default());
        match fetch::<Secret>(&self.client, request, "read Secret").await {
            Ok(secret) => from_secret(name, secret).map(Some),
            Err(error) if HubError::is_not_found(&error) => Ok(None),
            Err(error) => Err(HubError::from_probe(error, name)),
        }
    }

    /// Requests to the Secrets of the namespace (sent with [`fetch`], never
    /// kube-rs' `Api` methods, which log an undecodable body whole).
    fn request(&self) -> kube::core::Request {
        kube::core::Request::new(self.api.resource_url())
    }

    /// Writes `secret` (type `Opaque`): created when its `resource_version` is
    /// `None` (a [`HubError::Conflict`] when one exists meanwhile), else
    /// replaced only while the hub's copy still has that version. Returns it as
    /// stored, with its new `resource_version`.
    pub async fn put(&self, secret: &HubSecret) -> Result<HubSecret, HubError> {
        let body = serde_json::to_vec(&to_secret(secret))
            .map_err(|e| HubError::Config(format!("cannot encode the Secret: {e}")))?;
        let params = PostParams::default();
        let request = match &secret.resource_version {
            None => self.request().create(&params, body),
            Some(_) => self.request().replace(&secret.name, &params, body),
        };
        let written: Secret = fetch(&self.client, request, "write Secret")
            .await
            .map_err(|e| HubError::from_probe(e, &secret.name))?;
        from_secret(&secret.name, written)
    }

    /// Deletes the Secret `name`; false when it was already gone.
    pub async fn delete(&self, name: &str) -> Result<bool, HubError> {
        let request = self.request().delete(name, &DeleteParams::default());
        match fetch::<serde_json::Value>(&self.client, request, "delete Secret").await {
            Ok(_) => Ok(true),
            Err(error) if HubError::is_not_found(&error) => Ok(false),
            Err(error) => Err(HubError::from_probe(error, name)),
        }
    }
}

fn to_secret(secret: &HubSecret) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(secret.name.clone()),
            labels: Some(secret.labels.clone()),
            annotations: Some(secret.annotations.clone()),
            resource_version: secret.resource_version.clone(),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            secret
                .data
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

fn from_secret(name: &str, secret: Secret) -> Result<HubSecret, HubError> {
    let mut data = BTreeMap::new();
    for (key, value) in secret.data.unwrap_or_default() {
        let text = String::from_utf8(value.0).map_err(|_| HubError::NotText {
            name: name.to_owned(),
            key: key.clone(),
        })?;
        data.insert(key, text);
    }
    for (key, value) in secret.string_data.unwrap_or_default() {
        data.insert(key, value);
    }
    Ok(HubSecret {
        name: secret.metadata.name.unwrap_or_else(|| name.to_owned()),
        labels: secret.metadata.labels.unwrap_or_default(),
        annotations: secret.metadata.annotations.unwrap_or_default(),
        data,
        resource_version: secret.metadata.resource_version,
    })
}
