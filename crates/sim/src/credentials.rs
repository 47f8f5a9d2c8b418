//! The credential side of [`Sim`]: tokens and client certificates a cluster
//! accepts, its stored Secrets, and kubeconfigs to reach it.

use crate::auth::{spec_tokens, AddToken, ClientCertView, TokenSource, TokenView};
use crate::error::Error;
use crate::kubeconfig::{self, KubeCredential, KubeconfigAuth};
use crate::secrets::SecretRecord;
use crate::state::{lock, Sim};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Client certificates issued without `not_after` are valid this long.
pub const DEFAULT_CLIENT_CERT_DAYS: i64 = 365;

/// Body of `POST /admin/clusters/{name}/client-certs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueClientCert {
    /// Subject common name: the Kubernetes user name.
    pub user: String,
    /// End of validity; [`DEFAULT_CLIENT_CERT_DAYS`] from now when absent.
    #[serde(default)]
    pub not_after: Option<DateTime<Utc>>,
}

/// A client certificate just issued, with its private key: the only time the
/// key is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuedClientCert {
    /// Serial number, lower-case hex: its id in the admin API.
    pub serial: String,
    /// Subject common name.
    pub user: String,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
    /// The CA that signed it and the server certificate (PEM).
    pub ca_pem: String,
}

impl IssuedClientCert {
    /// Certificate and key in one PEM, as `reqwest::Identity::from_pem` reads it.
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

impl Sim {
    /// Makes cluster `name` accept a bearer token (a random one unless given).
    pub fn add_token(&self, name: &str, request: AddToken) -> Result<TokenView, Error> {
        let cluster = self.cluster(name)?;
        let now = self.now();
        let expires_at = match (request.expires_at, request.expires_in_seconds) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidRequest {
                    reason: "give expires_at or expires_in_seconds, not both".to_owned(),
                })
            }
            (Some(at), None) => Some(at),
            (None, Some(seconds)) => {
                let seconds = i64::try_from(seconds).unwrap_or(i64::MAX / 1000);
                Some(now + Duration::seconds(seconds.min(i64::MAX / 1000)))
            }
            (None, None) => None,
        };
        let token = match request.token {
            Some(token) if token.trim().is_empty() || token.trim() != token => {
                return Err(Error::InvalidRequest {
                    reason: "a token may not be empty or start or end with white space".to_owned(),
                })
            }
            Some(token) => token,
            None => crate::random::token(),
        };
        let mut credentials = lock(&cluster.credentials);
        Ok(credentials.add_token(token, TokenSource::Admin, request.subject, now, expires_at))
    }

    /// Stops cluster `name` accepting a token added at run time (admin API or
    /// TokenRequest). Tokens of the cluster's spec change with its spec.
    pub fn revoke_token(&self, name: &str, token: &str) -> Result<(), Error> {
        let cluster = self.cluster(name)?;
        if lock(&cluster.credentials).revoke_token(token) {
            return Ok(());
        }
        if spec_tokens(&cluster.spec, &cluster.auth)
            .iter()
            .any(|t| t.token == token)
        {
            return Err(Error::InvalidRequest {
                reason: "this token is part of the cluster's spec or auth settings; change those"
                    .to_owned(),
            });
        }
        Err(Error::UnknownCredential {
            cluster: name.to_owned(),
            what: "token",
            id: token.to_owned(),
        })
    }

    /// Every token cluster `name` knows: those of its settings, then the run-time
    /// ones (expired ones included for a day, marked `expired`).
    pub fn tokens(&self, name: &str) -> Result<Vec<TokenView>, Error> {
        let cluster = self.cluster(name)?;
        let mut tokens = spec_tokens(&cluster.spec, &cluster.auth);
        tokens.extend(lock(&cluster.credentials).tokens(self.now()));
        Ok(tokens)
    }

    /// Issues a client certificate with `CN={user}` from the simulator's CA and
    /// makes cluster `name` (only) accept it.
    pub fn issue_client_cert(
        &self,
        name: &str,
        request: &IssueClientCert,
    ) -> Result<IssuedClientCert, Error> {
        let cluster = self.cluster(name)?;
        let pki = self.pki().ok_or(Error::TlsDisabled)?;
        if request.user.is_empty() {
            return Err(Error::InvalidRequest {
                reason: "user must not be empty".to_owned(),
            });
        }
        let now = self.now();
        let not_after = request
            .not_after
            .unwrap_or(now + Duration::days(DEFAULT_CLIENT_CERT_DAYS));
        let cert = pki.issue_client(&request.user, now, not_after)?;
        let view = ClientCertView {
            serial: cert.serial.clone(),
            user: request.user.clone(),
            issued_at: now,
            not_after,
            expired: not_after <= now,
        };
        lock(&cluster.credentials).add_cert(cert.der, view);
        Ok(IssuedClientCert {
            serial: cert.serial,
            user: request.user.clone(),
            not_after,
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
            ca_pem: pki.ca_pem().to_owned(),
        })
    }

    /// The client certificates cluster `name` accepts.
    pub fn client_certs(&self, name: &str) -> Result<Vec<ClientCertView>, Error> {
        let cluster = self.cluster(name)?;
        let certs = lock(&cluster.credentials).certs(self.now());
        Ok(certs)
    }

    /// Stops cluster `name` accepting the client certificate with this serial.
    pub fn revoke_client_cert(&self, name: &str, serial: &str) -> Result<(), Error> {
        let cluster = self.cluster(name)?;
        if lock(&cluster.credentials).revoke_cert(serial) {
            Ok(())
        } else {
            Err(Error::UnknownCredential {
                cluster: name.to_owned(),
                what: "client certificate",
                id: serial.to_owned(),
            })
        }
    }

    /// The Secrets stored in cluster `name`, with their data decoded.
    pub fn secrets(&self, name: &str) -> Result<Vec<SecretRecord>, Error> {
        let cluster = self.cluster(name)?;
        let records = lock(&cluster.secrets).records();
        Ok(records)
    }

    /// A kubeconfig for cluster `name` with a new credential for `user` (a token
    /// or client certificate the cluster then accepts) and, over HTTPS, the CA.
    pub fn kubeconfig(
        &self,
        name: &str,
        user: &str,
        auth: KubeconfigAuth,
    ) -> Result<String, Error> {
        let view = self.get(name)?;
        let credential = match auth {
            KubeconfigAuth::Token => {
                let request = AddToken {
                    subject: Some(user.to_owned()),
                    ..AddToken::default()
                };
                KubeCredential::Token(self.add_token(name, request)?.token)
            }
            KubeconfigAuth::Cert => {
                let request = IssueClientCert {
                    user: user.to_owned(),
                    not_after: None,
                };
                let issued = self.issue_client_cert(name, &request)?;
                KubeCredential::Cert {
                    cert_pem: issued.cert_pem,
                    key_pem: issued.key_pem,
                }
            }
            KubeconfigAuth::None => KubeCredential::None,
        };
        kubeconfig::render(name, &view.api_server_url, self.ca_pem(), user, &credential).map_err(
            |e| Error::InvalidRequest {
                reason: format!("cannot render the kubeconfig: {e}"),
            },
        )
    }
}
