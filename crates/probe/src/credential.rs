//! [`ClusterCredential`]: how the probe authenticates to one cluster (seed 4.2
//! "Upload Credentials"): the API server's authentication and TLS trust, and
//! bearer tokens for Prometheus, Tempo and Loki.
//!
//! Secrets (tokens, the client key) live in [`SecretString`]s, zeroed when
//! dropped; `Debug` shows none of them. Every credential gets a random id when
//! built: the [`Prober`](crate::Prober) keys its per-credential connection
//! pools by it, so a rotated credential never reuses the old one's TLS set-up.

use crate::credential_error::CredentialError;
use crate::pki::{self, Certificates};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use kube::client::ConfigExt;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use uuid::Uuid;
use zeroize::Zeroize;

/// How the probe proves itself to the API server.
#[derive(Clone)]
#[non_exhaustive]
pub enum ApiAuth {
    /// Anonymous.
    None,
    /// `Authorization: Bearer <token>` on every API request.
    BearerToken(SecretString),
    /// A TLS client certificate (mutual TLS).
    ClientCertificate {
        /// The certificate chain, leaf first (PEM; public).
        certificate_pem: String,
        /// Its private key (PEM).
        key_pem: SecretString,
    },
}

/// Which certificates the probe accepts from the API server.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsTrust {
    /// The platform's trust store.
    PlatformRoots,
    /// Only these CA certificates (PEM), instead of the platform's.
    CaPem(String),
    /// No verification at all (`insecure-skip-tls-verify`): only for the API
    /// server, never for the observability endpoints.
    InsecureSkipVerify,
}

/// Credentials for one cluster, checked when built. Share it as
/// `Arc<ClusterCredential>` ([`Target::with_credential`](crate::Target::with_credential)).
pub struct ClusterCredential {
    id: Uuid,
    api_auth: ApiAuth,
    tls: TlsTrust,
    /// DER of the certificates of [`TlsTrust::CaPem`].
    ca: Vec<Vec<u8>>,
    tls_server_name: Option<String>,
    server: Option<String>,
    client_not_after: Option<DateTime<Utc>>,
    prometheus_token: Option<SecretString>,
    tempo_token: Option<SecretString>,
    loki_token: Option<SecretString>,
}

/// What a constructor read, before the common checks.
pub(crate) struct Parts {
    pub(crate) api_auth: ApiAuth,
    /// The client certificate's chain, read from [`ApiAuth::ClientCertificate`].
    pub(crate) client_chain: Option<Certificates>,
    pub(crate) tls: TlsTrust,
    pub(crate) ca: Option<Certificates>,
    pub(crate) tls_server_name: Option<String>,
    pub(crate) server: Option<String>,
    /// Where each part came from, for errors.
    pub(crate) fields: Fields,
}

/// The names of the fields a credential was read from, to blame in errors.
pub(crate) struct Fields {
    /// The bearer token or the client key.
    pub(crate) key: String,
    /// The client certificate.
    pub(crate) certificate: String,
    /// The CA bundle.
    pub(crate) ca: String,
    /// The TLS server name.
    pub(crate) server_name: String,
}

impl ClusterCredential {
    /// A bearer token for the API server (a service account's, say), trusting
    /// `ca_pem` (the API server's CA bundle) or, without it, the platform's
    /// roots, unless `insecure_skip_tls_verify`. Errors name the request fields
    /// `token`, `ca_cert` and `insecure_skip_tls_verify`.
    pub fn from_token(
        token: SecretString,
        ca_pem: Option<&str>,
        insecure_skip_tls_verify: bool,
    ) -> Result<ClusterCredential, CredentialError> {
        let (tls, ca) = match (ca_pem, insecure_skip_tls_verify) {
            (Some(_), true) => {
                return Err(CredentialError::invalid(
                    "insecure_skip_tls_verify",
                    "cannot be combined with ca_cert",
                ))
            }
            (Some(pem), false) => {
                let read = pki::certificates(pem)
                    .map_err(|reason| CredentialError::invalid("ca_cert", reason))?;
                (TlsTrust::CaPem(pem.to_owned()), Some(read))
            }
            (None, true) => (TlsTrust::InsecureSkipVerify, None),
            (None, false) => (TlsTrust::PlatformRoots, None),
        };
        ClusterCredential::assemble(Parts {
            api_auth: ApiAuth::BearerToken(token),
            client_chain: None,
            tls,
            ca,
            tls_server_name: None,
            server: None,
            fields: Fields {
                key: "token".into(),
                certificate: "token".into(),
                ca: "ca_cert".into(),
                server_name: "tls_server_name".into(),
            },
        })
    }

    /// The credential of an uploaded kubeconfig, inline data only: see
    /// [`crate::kubeconfig`] for what is refused (exec and auth-provider
    /// plugins, file paths, basic auth, proxies, impersonation, unknown fields).
    /// The current context (or the only one) picks the cluster and user.
    pub fn from_kubeconfig(yaml: &str) -> Result<ClusterCredential, CredentialError> {
        ClusterCredential::assemble(crate::kubeconfig::read(yaml)?)
    }

    /// The same credential also sending `Authorization: Bearer` to Prometheus,
    /// Tempo and Loki, each its own token (to that endpoint only). Errors name
    /// `prometheus_token`, `tempo_token` or `loki_token`.
    pub fn with_observability_tokens(
        self,
        prometheus: Option<SecretString>,
        tempo: Option<SecretString>,
        loki: Option<SecretString>,
    ) -> Result<ClusterCredential, CredentialError> {
        for (field, token) in [
            ("prometheus_token", &prometheus),
            ("tempo_token", &tempo),
            ("loki_token", &loki),
        ] {
            if let Some(token) = token {
                check_token(field, token)?;
            }
        }
        Ok(ClusterCredential {
            prometheus_token: prometheus,
            tempo_token: tempo,
            loki_token: loki,
            ..self
        })
    }

    /// Checks what every constructor shares and gives the credential its id.
    fn assemble(parts: Parts) -> Result<ClusterCredential, CredentialError> {
        if let ApiAuth::BearerToken(token) = &parts.api_auth {
            check_token(&parts.fields.key, token)?;
        }
        let credential = ClusterCredential {
            id: Uuid::new_v4(),
            api_auth: parts.api_auth,
            tls: parts.tls,
            ca: parts.ca.map(|c| c.ders).unwrap_or_default(),
            tls_server_name: parts.tls_server_name,
            server: parts.server,
            client_not_after: parts.client_chain.map(|c| c.first_not_after),
            prometheus_token: None,
            tempo_token: None,
            loki_token: None,
        };
        credential.check_tls(&parts.fields)?;
        Ok(credential)
    }

    /// Builds the TLS connector once, so a key that does not parse, a CA
    /// rustls cannot use or a bad server name is refused at upload rather than
    /// at the first check. The messages are fixed texts: the parser's own may
    /// quote input.
    fn check_tls(&self, fields: &Fields) -> Result<(), CredentialError> {
        if !self.needs_own_tls() {
            return Ok(());
        }
        let mut config = self.kube_tls_config();
        // The trust anchors do not matter for this check; an empty set avoids
        // loading the platform's.
        config.root_cert.get_or_insert_with(Vec::new);
        config.accept_invalid_certs = false;
        let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
        tcp.enforce_http(false);
        use kube::client::RustlsTlsError as Tls;
        match config.rustls_https_connector_with_connector(tcp) {
            Ok(_) => Ok(()),
            Err(kube::Error::RustlsTls(error)) => Err(match error {
                Tls::InvalidServerName(_) => CredentialError::invalid(
                    &fields.server_name,
                    "not a valid DNS name or IP address",
                ),
                Tls::MissingCertificate => CredentialError::invalid(
                    &fields.certificate,
                    "holds no certificate usable for TLS client authentication",
                ),
                Tls::AddRootCertificate(_) => CredentialError::invalid(
                    &fields.ca,
                    "a certificate cannot be used as a trust anchor",
                ),
                Tls::MissingPrivateKey => CredentialError::invalid(
                    &fields.key,
                    "holds no private key (PKCS#8, PKCS#1 RSA or SEC1 EC PEM expected)",
                ),
                Tls::InvalidIdentityPem(_) => CredentialError::invalid(&fields.key, "not valid PEM"),
                _ => CredentialError::invalid(
                    &fields.key,
                    "the private key cannot be used (unsupported type, or it does not match the certificate)",
                ),
            }),
            Err(_) => Err(CredentialError::invalid(
                &fields.key,
                "the certificate and key cannot be used for TLS",
            )),
        }
    }

    /// Its random id, fixed at construction: the key of its connection pool.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// How it authenticates to the API server.
    pub fn api_auth(&self) -> &ApiAuth {
        &self.api_auth
    }

    /// Which API server certificates it accepts.
    pub fn tls_trust(&self) -> &TlsTrust {
        &self.tls
    }

    /// Whether API server certificates go unverified (to be logged and audited).
    pub fn insecure_skip_tls_verify(&self) -> bool {
        self.tls == TlsTrust::InsecureSkipVerify
    }

    /// The `server` of the kubeconfig's chosen cluster (`None` for a token).
    /// The probe connects to the registered `api_server_url`, never to this;
    /// callers may compare the two.
    pub fn server(&self) -> Option<&str> {
        self.server.as_deref()
    }

    /// The name to verify the API server's certificate against instead of the
    /// URL's host (kubeconfig `tls-server-name`).
    pub fn tls_server_name(&self) -> Option<&str> {
        self.tls_server_name.as_deref()
    }

    /// When it stops working, when it says so: the earliest of the client
    /// certificate's NotAfter and the `exp` claim of each JWT-shaped token (the
    /// API server's and the observability tokens; opaque tokens say nothing).
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        let api_token = match &self.api_auth {
            ApiAuth::BearerToken(token) => Some(token),
            _ => None,
        };
        let token_expiries = [
            api_token,
            self.prometheus_token.as_ref(),
            self.tempo_token.as_ref(),
            self.loki_token.as_ref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|token| crate::jwt::expiry(token.expose_secret()));
        self.client_not_after
            .into_iter()
            .chain(token_expiries)
            .min()
    }

    /// The service account the API server token stands for, as `(namespace,
    /// name)`, read from its JWT claims without verifying them; `None` for a
    /// client certificate or a token that is not a service account JWT.
    pub fn service_account(&self) -> Option<(String, String)> {
        crate::jwt::service_account(self.api_token()?.expose_secret())
    }

    /// The `exp` of the API server token, when it is a JWT that has one.
    pub fn api_token_expires_at(&self) -> Option<DateTime<Utc>> {
        crate::jwt::expiry(self.api_token()?.expose_secret())
    }

    /// The bearer token for the API server, if that is how it authenticates.
    pub(crate) fn api_token(&self) -> Option<&SecretString> {
        match &self.api_auth {
            ApiAuth::BearerToken(token) => Some(token),
            _ => None,
        }
    }

    /// The token for Prometheus.
    pub(crate) fn prometheus_token(&self) -> Option<&SecretString> {
        self.prometheus_token.as_ref()
    }

    /// The token for Tempo.
    pub(crate) fn tempo_token(&self) -> Option<&SecretString> {
        self.tempo_token.as_ref()
    }

    /// The token for Loki.
    pub(crate) fn loki_token(&self) -> Option<&SecretString> {
        self.loki_token.as_ref()
    }

    /// The CA certificates (DER) it trusts for the cluster, if it names any.
    pub(crate) fn ca_certificates(&self) -> &[Vec<u8>] {
        &self.ca
    }

    /// Whether the API server needs a TLS set-up of its own (and so a
    /// connection pool of its own): a CA, skipped verification, a client
    /// certificate or a server name. A token over the platform's roots does not.
    pub(crate) fn needs_own_tls(&self) -> bool {
        self.tls != TlsTrust::PlatformRoots
            || matches!(self.api_auth, ApiAuth::ClientCertificate { .. })
            || self.tls_server_name.is_some()
    }

    /// A `kube::Config` carrying only its TLS settings (trust, client identity,
    /// server name), for building a connector. The URL is a placeholder.
    pub(crate) fn kube_tls_config(&self) -> kube::Config {
        let mut config = kube::Config::new(http::Uri::from_static("http://localhost"));
        match &self.tls {
            TlsTrust::PlatformRoots => {}
            TlsTrust::CaPem(_) => config.root_cert = Some(self.ca.clone()),
            TlsTrust::InsecureSkipVerify => config.accept_invalid_certs = true,
        }
        if let ApiAuth::ClientCertificate {
            certificate_pem,
            key_pem,
        } = &self.api_auth
        {
            config.auth_info.client_certificate_data = Some(STANDARD.encode(certificate_pem));
            config.auth_info.client_key_data =
                Some(secret(STANDARD.encode(key_pem.expose_secret().as_bytes())));
        }
        config.tls_server_name = self.tls_server_name.clone();
        config
    }
}

/// `s` as a [`SecretString`], the original buffer zeroed (a `String` whose
/// capacity exceeds its length would be reallocated, and the old buffer left
/// behind, by the plain conversion).
pub(crate) fn secret(mut s: String) -> SecretString {
    let out = SecretString::from(s.as_str());
    s.zeroize();
    out
}

/// A bearer token is usable in an `Authorization` header: not empty, visible
/// ASCII only, no white space anywhere.
pub(crate) fn check_token(field: &str, token: &SecretString) -> Result<(), CredentialError> {
    let value = token.expose_secret();
    if value.is_empty() {
        return Err(CredentialError::invalid(field, "must not be empty"));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CredentialError::invalid(
            field,
            "only visible ASCII characters without white space are allowed in a bearer token",
        ));
    }
    if !crate::jwt::exp_is_storable(value) {
        return Err(CredentialError::invalid(
            field,
            "the token's exp claim lies outside years 0001-9999",
        ));
    }
    Ok(())
}

struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Debug for ApiAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiAuth::None => f.write_str("None"),
            ApiAuth::BearerToken(_) => f.debug_tuple("BearerToken").field(&Redacted).finish(),
            ApiAuth::ClientCertificate { .. } => f
                .debug_struct("ClientCertificate")
                .field("certificate_pem", &Redacted)
                .field("key_pem", &Redacted)
                .finish(),
        }
    }
}

impl fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsTrust::PlatformRoots => f.write_str("PlatformRoots"),
            TlsTrust::CaPem(_) => f.write_str("CaPem(..)"),
            TlsTrust::InsecureSkipVerify => f.write_str("InsecureSkipVerify"),
        }
    }
}

impl fmt::Debug for ClusterCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |token: &Option<SecretString>| token.as_ref().map(|_| Redacted);
        f.debug_struct("ClusterCredential")
            .field("id", &self.id)
            .field("api_auth", &self.api_auth)
            .field("tls", &self.tls)
            .field("tls_server_name", &self.tls_server_name)
            .field("server", &self.server)
            .field("prometheus_token", &set(&self.prometheus_token))
            .field("tempo_token", &set(&self.tempo_token))
            .field("loki_token", &set(&self.loki_token))
            .field("expires_at", &self.expires_at())
            .finish()
    }
}
