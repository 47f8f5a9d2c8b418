//! Who may call a simulated cluster: its [`AuthSpec`] (configuration) and the
//! credentials it accepts at run time (tokens added over the admin API or issued
//! by the TokenRequest API, client certificates issued by the simulator's CA).

use crate::spec::ClusterSpec;
use crate::tls::PeerCert;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Authentication settings of one simulated cluster. The default requires
/// nothing, so clusters without it behave as before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSpec {
    /// API server requests (everything under `/c/{name}/` but the observability
    /// prefixes) need an accepted bearer token or client certificate; others get a
    /// Kubernetes 401 `Status`. A legacy [`ClusterSpec::token`] also turns this on.
    pub required: bool,
    /// Bearer tokens the API server accepts without expiry, besides those added
    /// at run time.
    pub tokens: Vec<String>,
    /// When not empty, Prometheus requires `Authorization: Bearer` with one of these.
    pub prometheus_tokens: Vec<String>,
    /// When not empty, Tempo requires `Authorization: Bearer` with one of these.
    pub tempo_tokens: Vec<String>,
    /// When not empty, Loki requires `Authorization: Bearer` with one of these.
    pub loki_tokens: Vec<String>,
}

/// Where an accepted token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// [`AuthSpec::tokens`] or the legacy [`ClusterSpec::token`].
    Spec,
    /// Added over the admin API.
    Admin,
    /// Issued by the cluster's TokenRequest API.
    TokenRequest,
}

/// A token a cluster accepts, as the admin API lists it. The simulator is the
/// token's verifier, so it shows the value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenView {
    /// The bearer token.
    pub token: String,
    /// Where it came from.
    pub source: TokenSource,
    /// Whom it stands for (`system:serviceaccount:{ns}:{sa}` for TokenRequest tokens).
    pub subject: Option<String>,
    /// When it was added (simulator clock); `None` for spec tokens.
    pub created_at: Option<DateTime<Utc>>,
    /// When it stops being accepted; `None` means never.
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether it has expired by the simulator's clock.
    pub expired: bool,
}

/// Body of `POST /admin/clusters/{name}/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AddToken {
    /// The token; a random one when absent.
    pub token: Option<String>,
    /// Whom it stands for (shown in listings only).
    pub subject: Option<String>,
    /// Absolute expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Expiry relative to the simulator's clock (exclusive with `expires_at`).
    pub expires_in_seconds: Option<u64>,
}

/// A client certificate a cluster accepts, as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientCertView {
    /// Serial number in lower-case hex: its id in the admin API.
    pub serial: String,
    /// Subject common name (the Kubernetes user name).
    pub user: String,
    /// When it was issued (simulator clock).
    pub issued_at: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// Whether it has expired by the simulator's clock.
    pub expired: bool,
}

#[derive(Debug, Clone)]
struct TokenGrant {
    source: TokenSource,
    subject: Option<String>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
struct CertGrant {
    der: Vec<u8>,
    view: ClientCertView,
}

/// Expired run-time tokens are kept (and listed) this long, then forgotten.
const FORGET_EXPIRED_AFTER: chrono::Duration = chrono::Duration::hours(24);

/// The credentials one cluster accepts at run time.
#[derive(Debug, Default)]
pub(crate) struct Credentials {
    tokens: BTreeMap<String, TokenGrant>,
    certs: Vec<CertGrant>,
}

impl Credentials {
    /// Accepts `token` from now on (until `expires_at`), replacing an earlier grant.
    pub(crate) fn add_token(
        &mut self,
        token: String,
        source: TokenSource,
        subject: Option<String>,
        now: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> TokenView {
        self.tokens
            .retain(|_, g| g.expires_at.is_none_or(|e| e + FORGET_EXPIRED_AFTER > now));
        let grant = TokenGrant {
            source,
            subject,
            created_at: now,
            expires_at,
        };
        let view = token_view(&token, &grant, now);
        self.tokens.insert(token, grant);
        view
    }

    /// Stops accepting `token`; false when it was not a run-time token.
    pub(crate) fn revoke_token(&mut self, token: &str) -> bool {
        self.tokens.remove(token).is_some()
    }

    /// Run-time tokens, by value.
    pub(crate) fn tokens(&self, now: DateTime<Utc>) -> Vec<TokenView> {
        self.tokens
            .iter()
            .map(|(token, grant)| token_view(token, grant, now))
            .collect()
    }

    fn accepts_token(&self, token: &str, now: DateTime<Utc>) -> bool {
        self.tokens
            .get(token)
            .is_some_and(|g| g.expires_at.is_none_or(|e| now < e))
    }

    /// Accepts the certificate `der` from now on.
    pub(crate) fn add_cert(&mut self, der: Vec<u8>, view: ClientCertView) {
        self.certs.push(CertGrant { der, view });
    }

    /// Stops accepting the certificate with this serial; false when unknown.
    pub(crate) fn revoke_cert(&mut self, serial: &str) -> bool {
        let before = self.certs.len();
        self.certs
            .retain(|c| !c.view.serial.eq_ignore_ascii_case(serial));
        self.certs.len() != before
    }

    /// Accepted client certificates, in the order issued.
    pub(crate) fn certs(&self, now: DateTime<Utc>) -> Vec<ClientCertView> {
        self.certs
            .iter()
            .map(|c| ClientCertView {
                expired: c.view.not_after <= now,
                ..c.view.clone()
            })
            .collect()
    }

    fn accepts_cert(&self, der: &[u8], now: DateTime<Utc>) -> bool {
        self.certs
            .iter()
            .any(|c| c.der == der && now < c.view.not_after)
    }
}

fn token_view(token: &str, grant: &TokenGrant, now: DateTime<Utc>) -> TokenView {
    TokenView {
        token: token.to_owned(),
        source: grant.source,
        subject: grant.subject.clone(),
        created_at: Some(grant.created_at),
        expires_at: grant.expires_at,
        expired: grant.expires_at.is_some_and(|e| e <= now),
    }
}

/// The tokens a cluster's configuration accepts without expiry.
pub(crate) fn spec_tokens(spec: &ClusterSpec, auth: &AuthSpec) -> Vec<TokenView> {
    spec.token
        .iter()
        .chain(auth.tokens.iter())
        .map(|token| TokenView {
            token: token.clone(),
            source: TokenSource::Spec,
            subject: None,
            created_at: None,
            expires_at: None,
            expired: false,
        })
        .collect()
}

/// What a request presented.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Presented<'a> {
    /// `Authorization: Bearer` value.
    pub(crate) bearer: Option<&'a str>,
    /// The verified TLS client certificate.
    pub(crate) cert: Option<&'a PeerCert>,
}

/// Whether the API server of a cluster needs a credential at all.
pub(crate) fn required(spec: &ClusterSpec, auth: &AuthSpec) -> bool {
    auth.required || spec.token.is_some()
}

/// Whether the API server of a cluster lets this request through.
pub(crate) fn api_server_allows(
    spec: &ClusterSpec,
    auth: &AuthSpec,
    credentials: &Credentials,
    presented: Presented<'_>,
    now: DateTime<Utc>,
) -> bool {
    if !required(spec, auth) {
        return true;
    }
    let token_ok = presented.bearer.is_some_and(|token| {
        spec.token.as_deref() == Some(token)
            || auth.tokens.iter().any(|t| t == token)
            || credentials.accepts_token(token, now)
    });
    let cert_ok = presented
        .cert
        .is_some_and(|cert| credentials.accepts_cert(&cert.der, now));
    token_ok || cert_ok
}

/// Whether an observability endpoint guarded by `tokens` lets this bearer through.
pub(crate) fn endpoint_allows(tokens: &[String], bearer: Option<&str>) -> bool {
    tokens.is_empty() || bearer.is_some_and(|b| tokens.iter().any(|t| t == b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn presented(bearer: Option<&str>) -> Presented<'_> {
        Presented { bearer, cert: None }
    }

    #[test]
    fn open_unless_required() {
        let spec = ClusterSpec::default();
        let creds = Credentials::default();
        let now = Utc::now();
        let open = AuthSpec::default();
        assert!(api_server_allows(
            &spec,
            &open,
            &creds,
            presented(None),
            now
        ));
        let closed = AuthSpec {
            required: true,
            tokens: vec!["static".into()],
            ..AuthSpec::default()
        };
        assert!(!api_server_allows(
            &spec,
            &closed,
            &creds,
            presented(None),
            now
        ));
        assert!(!api_server_allows(
            &spec,
            &closed,
            &creds,
            presented(Some("x")),
            now
        ));
        assert!(api_server_allows(
            &spec,
            &closed,
            &creds,
            presented(Some("static")),
            now
        ));
        let legacy = ClusterSpec {
            token: Some("old".into()),
            ..ClusterSpec::default()
        };
        assert!(!api_server_allows(
            &legacy,
            &open,
            &creds,
            presented(None),
            now
        ));
        assert!(api_server_allows(
            &legacy,
            &open,
            &creds,
            presented(Some("old")),
            now
        ));
    }

    #[test]
    fn run_time_tokens_expire_and_revoke() {
        let spec = ClusterSpec::default();
        let auth = AuthSpec {
            required: true,
            ..AuthSpec::default()
        };
        let now = Utc::now();
        let mut creds = Credentials::default();
        let view = creds.add_token(
            "t".into(),
            TokenSource::Admin,
            None,
            now,
            Some(now + Duration::seconds(60)),
        );
        assert!(!view.expired);
        assert!(api_server_allows(
            &spec,
            &auth,
            &creds,
            presented(Some("t")),
            now
        ));
        let later = now + Duration::seconds(61);
        assert!(!api_server_allows(
            &spec,
            &auth,
            &creds,
            presented(Some("t")),
            later
        ));
        assert!(creds.tokens(later)[0].expired);
        assert!(creds.revoke_token("t"));
        assert!(!creds.revoke_token("t"));
    }

    #[test]
    fn endpoint_tokens_only_when_configured() {
        assert!(endpoint_allows(&[], None));
        let tokens = vec!["p".to_owned()];
        assert!(!endpoint_allows(&tokens, None));
        assert!(!endpoint_allows(&tokens, Some("q")));
        assert!(endpoint_allows(&tokens, Some("p")));
    }
}
