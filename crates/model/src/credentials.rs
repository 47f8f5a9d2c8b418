//! Cluster credentials on the wire (seed 4.2 "Upload Credentials") and as the
//! store keeps them: sealed by the vault, never as plaintext.

pub use crate::enums::{AuthType, CredentialBinding, CredentialExpiry};
use crate::error::Error;
use crate::origin::CredentialOrigins;
use crate::ClusterStatus;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

/// The credential fields that hold secrets, by their name in requests and in
/// the Kubernetes Secret layout of seed 7.2.
pub const SECRET_FIELDS: [(&str, &str); 5] = [
    ("kubeconfig", "kubeconfig"),
    ("token", "token"),
    ("prometheus_token", "prometheus-token"),
    ("tempo_token", "tempo-token"),
    ("loki_token", "loki-token"),
];

/// `POST /api/v1/clusters/{id}/credentials` and `…/credentials/rotate`.
///
/// Secret fields are [`SecretString`]s: their `Debug` is redacted and they
/// cannot be serialised back, so a request body never reaches a log or a
/// response by accident.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialInput {
    /// `KUBECONFIG` or `TOKEN`.
    pub auth_type: AuthType,
    /// The kubeconfig (YAML), inline data only; required for `KUBECONFIG`.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub kubeconfig: Option<SecretString>,
    /// The API server bearer token; required for `TOKEN`.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub token: Option<SecretString>,
    /// PEM CA bundle of the API server (for `TOKEN`).
    #[serde(default)]
    pub ca_cert: Option<String>,
    /// Skip TLS verification of the API server (for `TOKEN`; logged and audited).
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    /// Bearer token for the cluster's Prometheus.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub prometheus_token: Option<SecretString>,
    /// Bearer token for Tempo.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub tempo_token: Option<SecretString>,
    /// Bearer token for Loki.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub loki_token: Option<SecretString>,
    /// When the credentials expire, if the credential itself does not say
    /// (a client certificate's NotAfter or a JWT's `exp` take precedence).
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

impl CredentialInput {
    /// Checks the combination of fields: what `auth_type` requires is present,
    /// nothing is empty, and TOKEN credentials name their CA or skip TLS
    /// verification explicitly for an `https` API server.
    pub fn validate(&self, api_server_url: &str) -> Result<(), Error> {
        let invalid = |field: &str, reason: &str| Error::invalid(field, reason);
        for (field, value) in self.secrets() {
            if value.expose_secret().trim().is_empty() {
                return Err(invalid(field, "must not be empty"));
            }
        }
        if let Some(expires_at) = &self.expires_at {
            crate::time::check_storable("expires_at", expires_at)?;
        }
        match self.auth_type {
            AuthType::Kubeconfig => {
                if self.kubeconfig.is_none() {
                    return Err(invalid(
                        "kubeconfig",
                        "required when auth_type is KUBECONFIG",
                    ));
                }
                if self.token.is_some() {
                    return Err(invalid(
                        "token",
                        "not allowed with auth_type KUBECONFIG (put the token in the kubeconfig)",
                    ));
                }
                if self.ca_cert.is_some() || self.insecure_skip_tls_verify {
                    return Err(invalid(
                        "ca_cert",
                        "not allowed with auth_type KUBECONFIG (use certificate-authority-data)",
                    ));
                }
            }
            AuthType::Token => {
                if self.token.is_none() {
                    return Err(invalid("token", "required when auth_type is TOKEN"));
                }
                if self.kubeconfig.is_some() {
                    return Err(invalid("kubeconfig", "not allowed with auth_type TOKEN"));
                }
                let https = api_server_url.starts_with("https://");
                if https && self.ca_cert.is_none() && !self.insecure_skip_tls_verify {
                    return Err(invalid(
                        "ca_cert",
                        "required for an https API server (or set insecure_skip_tls_verify: true)",
                    ));
                }
                if self.ca_cert.is_some() && self.insecure_skip_tls_verify {
                    return Err(invalid(
                        "insecure_skip_tls_verify",
                        "cannot be combined with ca_cert",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The secret fields present, by request field name.
    pub fn secrets(&self) -> Vec<(&'static str, &SecretString)> {
        [
            ("kubeconfig", &self.kubeconfig),
            ("token", &self.token),
            ("prometheus_token", &self.prometheus_token),
            ("tempo_token", &self.tempo_token),
            ("loki_token", &self.loki_token),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| (name, v)))
        .collect()
    }
}

/// The outcome of validating one component with the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValidationOutcome {
    /// The component accepted the credentials.
    Success,
    /// The component refused them or could not be reached.
    Failed,
}

/// Per-component validation results (components without an endpoint are absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CredentialValidation {
    /// The API server.
    pub api_server: Option<ValidationOutcome>,
    /// Prometheus.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<ValidationOutcome>,
    /// Tempo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tempo: Option<ValidationOutcome>,
    /// Loki.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loki: Option<ValidationOutcome>,
}

impl CredentialValidation {
    /// True when every component checked accepted the credentials.
    pub fn passed(&self) -> bool {
        [self.api_server, self.prometheus, self.tempo, self.loki]
            .iter()
            .all(|o| *o != Some(ValidationOutcome::Failed))
    }
}

/// The answer to storing, rotating or validating credentials (seed 4.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CredentialStatus {
    /// `stored`, `rotated`, `valid`, or `rebound` (validated with
    /// `POST …/credentials/rebind` and bound to the cluster's current origins).
    pub status: String,
    /// What each component said.
    pub validation: CredentialValidation,
    /// When the credentials expire, when known.
    pub expires_at: Option<DateTime<Utc>>,
    /// The stored version (increments on every store and rotation).
    pub version: i64,
}

/// Credentials as the store keeps them: metadata in the clear, every secret
/// field sealed by the vault (opaque strings to the store).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCredentials {
    /// The cluster.
    pub cluster_id: Uuid,
    /// 1 on first store, +1 on every store or rotation.
    pub version: i64,
    /// How they authenticate.
    pub auth_type: AuthType,
    /// Secret field name → vault envelope.
    pub sealed: BTreeMap<String, String>,
    /// Id of the master key that wraps the data keys.
    pub key_id: String,
    /// When they expire, when known.
    pub expires_at: Option<DateTime<Utc>>,
    /// First stored.
    pub created_at: DateTime<Utc>,
    /// Last stored or rotated.
    pub updated_at: DateTime<Utc>,
    /// The origins they were validated against, the only ones they are
    /// presented to.
    pub origins: CredentialOrigins,
    /// When a cluster update moved a URL to another origin: from then on they
    /// are presented nowhere until stored again or re-validated. `None`: bound.
    pub unbound_at: Option<DateTime<Utc>>,
}

impl StoredCredentials {
    /// `BOUND`, or `ORIGIN_CHANGED` once an update moved a URL elsewhere.
    pub fn binding(&self) -> CredentialBinding {
        match self.unbound_at {
            None => CredentialBinding::Bound,
            Some(_) => CredentialBinding::OriginChanged,
        }
    }

    /// Whether they may be presented to `cluster` as it is: bound, and every
    /// URL of the cluster at the origin they were validated against.
    pub fn presentable_to(&self, cluster: &crate::Cluster) -> bool {
        self.unbound_at.is_none()
            && self
                .origins
                .moved(&CredentialOrigins::of(cluster))
                .is_empty()
    }
}

/// A cluster whose credentials expire soon or have expired (fleet health,
/// `fleetreg credentials expiring`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExpiringCredentials {
    /// The cluster.
    pub cluster_id: Uuid,
    /// Its name.
    pub cluster_name: String,
    /// The credentials' version.
    pub version: i64,
    /// How they authenticate.
    pub auth_type: AuthType,
    /// When they expire.
    pub expires_at: DateTime<Utc>,
    /// True when that time has passed.
    pub expired: bool,
    /// How they are rotated and how the last automatic attempt went (filled
    /// in by the server, absent where it does not know).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationStatus>,
}

/// How a cluster's credentials get rotated (`credentials.auto_rotation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RotationMode {
    /// A service account token: the server requests a fresh one through the
    /// TokenRequest API before it expires.
    Auto,
    /// Rotatable, but automatic rotation is disabled: rotate by hand.
    Manual,
    /// Cannot be rotated automatically (a kubeconfig, or a token that is not a
    /// service account token); `reason` says which.
    Unsupported,
    /// Not yet known: a `TOKEN` credential this server has not opened yet.
    /// Decided when the credentials are first used (the next health check or
    /// automatic rotation round opens them); reading a status never opens them.
    Pending,
}

/// The `rotation` object of a cluster's credentials: metadata only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RotationStatus {
    /// `auto`, `manual`, `unsupported`, or `pending` (not yet known).
    pub mode: RotationMode,
    /// Why the mode is not `auto`, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The service account the token stands for (`{namespace}/{name}`), when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// When this server last tried to rotate them automatically.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When an automatic rotation last succeeded.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Why the last automatic attempt failed, or why the token it obtained is
    /// renewed early (the cluster capped its lifetime below the warning window;
    /// `consecutive_failures` stays 0); `null` otherwise. Never a secret.
    pub last_error: Option<String>,
    /// Automatic attempts failed in a row (0 after a success).
    pub consecutive_failures: u32,
    /// No automatic attempt before this time (backoff after failures, or the
    /// early renewal of a capped token).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl CredentialExpiry {
    /// Judges `expires_at` at `now`: `EXPIRED` once it is not after `now`,
    /// `EXPIRING` when at most `warning` remains, `OK` otherwise, `UNKNOWN`
    /// without an expiry.
    pub fn classify(
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        warning: chrono::Duration,
    ) -> CredentialExpiry {
        match expires_at {
            None => CredentialExpiry::Unknown,
            Some(at) if at <= now => CredentialExpiry::Expired,
            Some(at) if at - now <= warning => CredentialExpiry::Expiring,
            Some(_) => CredentialExpiry::Ok,
        }
    }
}

/// The `credentials` object of a cluster's status and of a single cluster
/// read: what is stored and how close it is to expiry, never a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CredentialsSummary {
    /// Whether credentials are stored for the cluster.
    pub stored: bool,
    /// Their version (`null` when none are stored).
    pub version: Option<i64>,
    /// How they authenticate (`null` when none are stored).
    pub auth_type: Option<AuthType>,
    /// When they expire, when known.
    pub expires_at: Option<DateTime<Utc>>,
    /// `OK`, `EXPIRING`, `EXPIRED` or `UNKNOWN` (no expiry known); `null` when
    /// none are stored.
    pub expiry: Option<CredentialExpiry>,
    /// How they are rotated and how the last automatic attempt went (absent
    /// when none are stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationStatus>,
    /// `BOUND`, or `ORIGIN_CHANGED` when a cluster update moved a URL to
    /// another origin: then they are presented nowhere until uploaded again
    /// or re-validated (`POST …/credentials/rebind`, admin only). Absent
    /// when none are stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<CredentialBinding>,
    /// The origins they were validated against (absent when none are stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_origins: Option<CredentialOrigins>,
    /// When they became `ORIGIN_CHANGED` (absent while bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unbound_at: Option<DateTime<Utc>>,
}

impl CredentialsSummary {
    /// The summary of `stored` (none: `stored: false`) at `now`, with
    /// `warning` as the rotation warning window.
    pub fn of(
        stored: Option<&StoredCredentials>,
        now: DateTime<Utc>,
        warning: chrono::Duration,
    ) -> CredentialsSummary {
        match stored {
            None => CredentialsSummary {
                stored: false,
                version: None,
                auth_type: None,
                expires_at: None,
                expiry: None,
                rotation: None,
                binding: None,
                bound_origins: None,
                unbound_at: None,
            },
            Some(s) => CredentialsSummary {
                stored: true,
                version: Some(s.version),
                auth_type: Some(s.auth_type),
                expires_at: s.expires_at,
                expiry: Some(CredentialExpiry::classify(s.expires_at, now, warning)),
                rotation: None,
                binding: Some(s.binding()),
                bound_origins: Some(s.origins.clone()),
                unbound_at: s.unbound_at,
            },
        }
    }
}

/// `GET /api/v1/credentials/expiring`: clusters whose credentials expire
/// within a window or have expired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExpiringCredentialsList {
    /// The window, in days from now.
    pub within_days: u64,
    /// Clusters whose credentials expire within the window, not yet expired.
    pub expiring_count: u64,
    /// Clusters whose credentials have expired.
    pub expired_count: u64,
    /// Both kinds, soonest expiry first (so expired ones first), at most `limit`.
    pub items: Vec<ExpiringCredentials>,
}

/// `GET /api/v1/clusters/{id}/status`: the last check's status plus the
/// read-time `credentials` summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterStatusDetail {
    /// The status of the last check.
    #[serde(flatten)]
    pub status: ClusterStatus,
    /// The cluster's stored credentials, metadata only.
    pub credentials: CredentialsSummary,
}

/// What kind of credential write this is (for the audit log and the response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialWrite {
    /// `POST …/credentials`.
    Store,
    /// `POST …/credentials/rotate`.
    Rotate,
}

impl CredentialWrite {
    /// The audit action.
    pub fn action(self) -> &'static str {
        match self {
            CredentialWrite::Store => "credentials.store",
            CredentialWrite::Rotate => "credentials.rotate",
        }
    }

    /// The `status` of the response.
    pub fn status(self) -> &'static str {
        match self {
            CredentialWrite::Store => "stored",
            CredentialWrite::Rotate => "rotated",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(value: serde_json::Value) -> CredentialInput {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn debug_never_shows_secrets() {
        let i = input(json!({ "auth_type": "TOKEN", "token": "marker-123",
            "prometheus_token": "marker-456", "insecure_skip_tls_verify": true }));
        let text = format!("{i:?}");
        assert!(
            !text.contains("marker-123") && !text.contains("marker-456"),
            "{text}"
        );
    }

    #[test]
    fn validate_requires_what_the_auth_type_needs() {
        let https = "https://api.example.com:6443";
        assert!(
            input(json!({ "auth_type": "KUBECONFIG", "kubeconfig": "x" }))
                .validate(https)
                .is_ok()
        );
        let cases = [
            (json!({ "auth_type": "KUBECONFIG" }), "kubeconfig"),
            (
                json!({ "auth_type": "KUBECONFIG", "kubeconfig": "x", "token": "t" }),
                "token",
            ),
            (json!({ "auth_type": "TOKEN" }), "token"),
            (json!({ "auth_type": "TOKEN", "token": "t" }), "ca_cert"),
            (json!({ "auth_type": "TOKEN", "token": " " }), "token"),
            (
                json!({ "auth_type": "TOKEN", "token": "t", "ca_cert": "pem", "insecure_skip_tls_verify": true }),
                "insecure_skip_tls_verify",
            ),
        ];
        for (body, field) in cases {
            match input(body.clone()).validate(https) {
                Err(e) => assert_eq!(e.field(), field, "{body}"),
                Ok(()) => panic!("{body} was accepted"),
            }
        }
        // Plain http needs no CA.
        assert!(input(json!({ "auth_type": "TOKEN", "token": "t" }))
            .validate("http://127.0.0.1:9000/c/a")
            .is_ok());
    }

    #[test]
    fn expiry_is_judged_against_the_warning_window() {
        let now = crate::now();
        let week = chrono::Duration::days(7);
        let at = |days: i64| Some(now + chrono::Duration::days(days));
        let classify = |t| CredentialExpiry::classify(t, now, week);
        assert_eq!(classify(at(8)), CredentialExpiry::Ok);
        assert_eq!(classify(at(7)), CredentialExpiry::Expiring);
        assert_eq!(
            classify(at(7).map(|t| t + chrono::Duration::microseconds(1))),
            CredentialExpiry::Ok
        );
        assert_eq!(classify(at(1)), CredentialExpiry::Expiring);
        assert_eq!(classify(at(0)), CredentialExpiry::Expired);
        assert_eq!(classify(at(-3)), CredentialExpiry::Expired);
        assert_eq!(classify(None), CredentialExpiry::Unknown);
    }

    #[test]
    fn summaries_carry_metadata_only() {
        let now = crate::now();
        let none = CredentialsSummary::of(None, now, chrono::Duration::days(7));
        assert_eq!(
            serde_json::to_value(&none).unwrap(),
            json!({ "stored": false, "version": null, "auth_type": null,
                    "expires_at": null, "expiry": null })
        );
        let stored = StoredCredentials {
            cluster_id: Uuid::nil(),
            version: 3,
            auth_type: AuthType::Token,
            sealed: BTreeMap::from([("token".to_owned(), "v1.sealed".to_owned())]),
            key_id: "k1".into(),
            expires_at: None,
            created_at: now,
            updated_at: now,
            origins: CredentialOrigins::of_urls("https://a:6443", &crate::Endpoints::default()),
            unbound_at: None,
        };
        let summary = CredentialsSummary::of(Some(&stored), now, chrono::Duration::days(7));
        let value = serde_json::to_value(&summary).unwrap();
        assert_eq!(value["stored"], true);
        assert_eq!(value["version"], 3);
        assert_eq!(value["auth_type"], "TOKEN");
        assert_eq!(value["expiry"], "UNKNOWN");
        assert_eq!(value["binding"], "BOUND");
        assert_eq!(value["bound_origins"]["api_server"], "https://a:6443");
        assert!(!value.to_string().contains("sealed"), "{value}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let r: Result<CredentialInput, _> = serde_json::from_value(
            json!({ "auth_type": "TOKEN", "token": "t", "tokenFile": "/etc/x" }),
        );
        assert!(r.is_err());
    }
}
