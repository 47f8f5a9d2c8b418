//! The Kubernetes Secrets backend (`credentials.backend: kubernetes`): each
//! cluster's vault envelopes live in the Secret `cluster-creds-{cluster-id}` of
//! `credentials.secret_namespace` on the hub (seed 7.2), not in the database
//! row, which keeps only the metadata (auth type, version, key id, expiry) and
//! an empty sealed map.
//!
//! The Secret's values are the envelope strings (ciphertext; base64 of them in
//! `data`, as Kubernetes requires), never plaintext, under the seed's
//! hyphenated keys. It is annotated with the credentials version of the row it
//! belongs to ([`VERSION_ANNOTATION`]) and the master key id; a Secret whose
//! version differs from the row's is not used.
//!
//! Writes go Secret first, then the row, both conditional on the row's
//! version `V` read once under the cluster's write lock: the Secret is written
//! only while it still carries `V` (or there is none; `resourceVersion` as
//! precondition), as `V + 1`, and the row is committed only while it is still
//! at `V`. Another writer's Secret not yet committed (another version, written
//! less than [`ABANDONED_AFTER`] ago) is never overwritten: the write is
//! refused (`PreconditionFailed`). If the row's commit fails, the previous
//! Secret is put back (or the new one deleted when there was none).
//!
//! A reader meeting a Secret one version ahead of the row (a write between its
//! two steps) reads the row again after [`COMMIT_GRACE`] before giving up.

use fleetreg_model::StoredCredentials;
use fleetreg_probe::{HubConfig, HubError, HubSecret, HubSecrets};
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

use super::{Credentials, CredentialsError};
use crate::settings::{CredentialsBackendKind, CredentialsConfig};
use fleetreg_store::StoreError;

/// Annotation holding the credentials version the Secret belongs to.
pub const VERSION_ANNOTATION: &str = "fleetreg.io/credentials-version";
/// Annotation holding the master key id wrapping the envelopes.
pub const KEY_ID_ANNOTATION: &str = "fleetreg.io/key-id";
/// Annotation holding when the Secret was written (RFC 3339).
pub const WRITTEN_AT_ANNOTATION: &str = "fleetreg.io/written-at";
/// A Secret of another version than the row's, written longer ago than this
/// (or without [`WRITTEN_AT_ANNOTATION`]), is no write in flight: a leftover
/// of a write that never committed, or of a delete whose Secret removal
/// failed; a new write may replace it.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(60);
/// How long a reader waits for the commit of a row whose Secret is one
/// version ahead before reading the row again.
const COMMIT_GRACE: Duration = Duration::from_millis(200);
/// The seed's component label and value.
pub const COMPONENT_LABEL: (&str, &str) = ("app.kubernetes.io/component", "cluster-registry");
/// The seed's cluster id label.
pub const CLUSTER_ID_LABEL: &str = "aiops.io/cluster-id";
/// The environment variable that may hold the hub's bearer token.
pub const HUB_TOKEN_ENV: &str = "FLEETREG_HUB_TOKEN";

/// The sealed fields a Secret may hold (field names as the vault's associated
/// data uses them; the Secret's keys are the same with `-` for `_`).
const FIELDS: [&str; 7] = [
    "kubeconfig",
    "token",
    "prometheus_token",
    "tempo_token",
    "loki_token",
    "ca_cert",
    "insecure_skip_tls_verify",
];

/// Field name → envelope.
pub(super) type SealedMap = BTreeMap<String, String>;

/// Why the Secrets backend cannot be set up or used (never a secret value).
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The `credentials.kubernetes` block is incomplete or unreadable.
    #[error("credentials.backend is kubernetes, but {0}")]
    Config(String),
    /// The hub refused or could not be reached.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The row says credentials exist, but their Secret does not.
    #[error("Secret {namespace}/{name} is missing on the hub")]
    Missing {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
    },
    /// The Secret belongs to another credentials version than the row (edited
    /// or replaced behind the server's back, or a write that did not finish).
    #[error(
        "Secret {name} is annotated with credentials version {found}, but the database row \
         has version {expected}; not used"
    )]
    VersionMismatch {
        /// Secret name.
        name: String,
        /// The row's version.
        expected: i64,
        /// The annotation's value (`none` when absent).
        found: String,
    },
    /// The Secret holds a key fleetreg never writes.
    #[error("Secret {name} holds an unexpected data key {key:?}; not used")]
    UnexpectedKey {
        /// Secret name.
        name: String,
        /// The key.
        key: String,
    },
    /// The database backend met a row whose envelopes are in a Secret.
    #[error(
        "the stored credentials hold no envelopes (written with credentials.backend: \
         kubernetes); set the kubernetes backend to use them"
    )]
    NotInDatabase,
}

/// The Secrets of the hub the backend writes to. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SecretsBackend {
    hub: HubSecrets,
}

/// The name of a cluster's Secret.
pub fn secret_name(cluster_id: Uuid) -> String {
    format!("cluster-creds-{cluster_id}")
}

/// The hub connection `config` asks for: `None` with the database backend;
/// an error when the kubernetes backend lacks `api_url` or a token
/// (`token_file`, or `FLEETREG_HUB_TOKEN` set into `kubernetes.token`), or a
/// file cannot be read.
pub fn hub_config(config: &CredentialsConfig) -> Result<Option<HubConfig>, SecretsError> {
    if config.backend != CredentialsBackendKind::Kubernetes {
        return Ok(None);
    }
    let k = &config.kubernetes;
    let api_url = k
        .api_url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| SecretsError::Config("credentials.kubernetes.api_url is not set".into()))?;
    let read = |what: &str, path: &PathBuf| {
        std::fs::read_to_string(path).map_err(|e| {
            SecretsError::Config(format!(
                "credentials.kubernetes.{what} {} cannot be read: {e}",
                path.display()
            ))
        })
    };
    let token = match (&k.token, &k.token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(path)) => read("token_file", path)?,
        (None, None) => {
            return Err(SecretsError::Config(format!(
                "no hub token: set credentials.kubernetes.token_file or {HUB_TOKEN_ENV}"
            )))
        }
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(SecretsError::Config("the hub token is empty".into()));
    }
    let ca_pem = k
        .ca_cert_file
        .as_ref()
        .map(|path| read("ca_cert_file", path))
        .transpose()?;
    Ok(Some(HubConfig {
        api_url,
        token: SecretString::from(token),
        ca_pem,
        insecure_skip_tls_verify: k.insecure_skip_tls_verify,
        namespace: config.secret_namespace.clone(),
    }))
}

impl SecretsBackend {
    /// The backend for `config`, after proving the hub answers and accepts the
    /// token (a list of at most one of the registry's Secrets).
    pub async fn connect(config: &HubConfig) -> Result<SecretsBackend, SecretsError> {
        if config.insecure_skip_tls_verify {
            tracing::warn!(
                api_url = %config.api_url,
                "credentials.kubernetes.insecure_skip_tls_verify: the hub's certificate is not verified"
            );
        }
        let hub = HubSecrets::new(config)?;
        hub.check(&format!("{}={}", COMPONENT_LABEL.0, COMPONENT_LABEL.1))
            .await?;
        tracing::info!(
            api_url = %config.api_url,
            namespace = %config.namespace,
            "credentials are kept in Kubernetes Secrets on the hub"
        );
        Ok(SecretsBackend { hub })
    }

    /// The hub's Secret of `cluster_id`, if any.
    pub(super) async fn read(&self, cluster_id: Uuid) -> Result<Option<HubSecret>, SecretsError> {
        Ok(self.hub.get(&secret_name(cluster_id)).await?)
    }

    /// The envelopes of `stored` from its Secret, which must carry its version.
    pub(super) async fn envelopes(
        &self,
        stored: &StoredCredentials,
    ) -> Result<SealedMap, SecretsError> {
        let name = secret_name(stored.cluster_id);
        let secret = self.hub.get(&name).await?.ok_or(SecretsError::Missing {
            namespace: self.hub.namespace().to_owned(),
            name: name.clone(),
        })?;
        envelopes_of(&secret, stored.version)
    }

    /// Writes `sealed` as the Secret of `cluster_id` for credentials version
    /// `version`, over `previous` (as read; `None`: there was none).
    pub(super) async fn write(
        &self,
        cluster_id: Uuid,
        version: i64,
        key_id: &str,
        sealed: &SealedMap,
        previous: Option<&HubSecret>,
    ) -> Result<HubSecret, SecretsError> {
        let secret = secret_for(cluster_id, version, key_id, sealed, previous);
        Ok(self.hub.put(&secret).await?)
    }

    /// Puts `previous` back in place of `written` (or deletes `written` when
    /// there was none) after the row's commit failed; failures are logged.
    pub(super) async fn restore(&self, written: &HubSecret, previous: Option<HubSecret>) {
        let result = match previous {
            Some(mut previous) => {
                previous.resource_version = written.resource_version.clone();
                self.hub.put(&previous).await.map(|_| ())
            }
            None => self.hub.delete(&written.name).await.map(|_| ()),
        };
        if let Err(error) = result {
            tracing::error!(secret = %written.name, %error, "cannot restore the Secret after a failed commit; it no longer matches the database row and will not be used");
        }
    }

    /// Deletes the Secret of `cluster_id`; false when it was already gone.
    pub(super) async fn delete(&self, cluster_id: Uuid) -> Result<bool, SecretsError> {
        Ok(self.hub.delete(&secret_name(cluster_id)).await?)
    }
}

impl Credentials {
    /// Keeps the envelopes in Secrets on the hub through `backend` (see the
    /// module docs); without it they stay in the database row.
    pub fn with_secrets(mut self, backend: Option<SecretsBackend>) -> Credentials {
        self.secrets = backend;
        self
    }

    /// With the Kubernetes backend, writes `sealed` to the cluster's Secret as
    /// version `current + 1` and empties `sealed` (the row keeps no envelope);
    /// the returned write is settled once the row's commit is known. `current`
    /// is the row's version read under the write lock (0: no row); a Secret of
    /// another version not yet abandoned is another writer's in flight, and
    /// the write is refused with `PreconditionFailed` without touching it.
    pub(super) async fn write_secret(
        &self,
        cluster_id: Uuid,
        key_id: &str,
        current: i64,
        sealed: &mut SealedMap,
    ) -> Result<Option<PendingSecret>, CredentialsError> {
        let Some(backend) = &self.secrets else {
            return Ok(None);
        };
        let error = secret_error(cluster_id);
        let previous = backend.read(cluster_id).await.map_err(error)?;
        if let Some(previous) = &previous {
            writable(previous, cluster_id, current, chrono::Utc::now())?;
        }
        let envelopes = std::mem::take(sealed);
        let written = backend
            .write(
                cluster_id,
                current + 1,
                key_id,
                &envelopes,
                previous.as_ref(),
            )
            .await
            .map_err(error)?;
        Ok(Some(PendingSecret {
            backend: backend.clone(),
            previous,
            written,
        }))
    }

    /// With the Kubernetes backend, deletes the Secret of a cluster whose
    /// credentials row was just deleted; a failure is logged (a leftover Secret
    /// is never used without a row, and a later write replaces it).
    pub(super) async fn delete_secret(&self, cluster_id: Uuid) {
        if let Some(backend) = &self.secrets {
            if let Err(error) = backend.delete(cluster_id).await {
                tracing::warn!(cluster = %cluster_id, %error, "cannot delete the credentials Secret after its row; it is left on the hub unused");
            }
        }
    }

    /// After a cluster was deleted (its row went with it): forgets what this
    /// process knew of its credentials and removes its Secret with the
    /// Kubernetes backend, logging a failure.
    pub async fn forget(&self, cluster_id: Uuid) {
        self.cache().remove(&cluster_id);
        self.rotation.forget(cluster_id);
        self.failures().remove(&cluster_id);
        self.delete_secret(cluster_id).await;
    }

    /// The envelopes of `stored`: the row's, else (Kubernetes backend) its
    /// Secret's, which must carry the row's version. A Secret one version
    /// ahead is a write between its two steps: the row is read again after
    /// [`COMMIT_GRACE`], and `stored` becomes the row it committed.
    pub(super) async fn envelopes(
        &self,
        stored: &mut StoredCredentials,
    ) -> Result<SealedMap, CredentialsError> {
        let error = secret_error(stored.cluster_id);
        if !stored.sealed.is_empty() {
            // The database backend, or a row written before the switch to Secrets.
            return Ok(stored.sealed.clone());
        }
        let Some(backend) = &self.secrets else {
            return Err(error(SecretsError::NotInDatabase));
        };
        match backend.envelopes(stored).await {
            Err(SecretsError::VersionMismatch { found, .. })
                if found == (stored.version + 1).to_string() =>
            {
                tokio::time::sleep(COMMIT_GRACE).await;
                match self.store.get_credentials(stored.cluster_id).await? {
                    Some(fresh) if fresh.version == stored.version + 1 => {
                        *stored = fresh;
                        if !stored.sealed.is_empty() {
                            return Ok(stored.sealed.clone());
                        }
                        backend.envelopes(stored).await.map_err(error)
                    }
                    _ => backend.envelopes(stored).await.map_err(error),
                }
            }
            other => other.map_err(error),
        }
    }
}

/// The error of `cluster_id`'s Secret failing for `source`.
fn secret_error(cluster_id: Uuid) -> impl Fn(SecretsError) -> CredentialsError + Copy {
    move |source| CredentialsError::Secret {
        cluster: cluster_id,
        source,
    }
}

/// Whether a write of version `current + 1` may replace `existing`: it carries
/// `current`, or no (readable) version, or it was abandoned (see
/// [`ABANDONED_AFTER`]); else `PreconditionFailed` (another writer's Secret,
/// not committed yet, or a row read before another replica's commit).
fn writable(
    existing: &HubSecret,
    cluster_id: Uuid,
    current: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), CredentialsError> {
    let Some(found) = existing
        .annotations
        .get(VERSION_ANNOTATION)
        .and_then(|v| v.parse::<i64>().ok())
    else {
        return Ok(());
    };
    if found == current && current > 0 {
        return Ok(());
    }
    let written_at = existing
        .annotations
        .get(WRITTEN_AT_ANNOTATION)
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok());
    let abandoned = written_at.is_none_or(|at| {
        (now - at.with_timezone(&chrono::Utc))
            .to_std()
            .is_ok_and(|age| age >= ABANDONED_AFTER)
    });
    if abandoned {
        tracing::warn!(cluster = %cluster_id, secret = %existing.name, found, current, "replacing a credentials Secret of another version than the row's, written too long ago to be a write in flight");
        return Ok(());
    }
    Err(CredentialsError::Store(StoreError::PreconditionFailed {
        expected: current,
        actual: found,
        id: cluster_id,
    }))
}

/// A Secret written ahead of its row's commit.
pub(super) struct PendingSecret {
    backend: SecretsBackend,
    previous: Option<HubSecret>,
    written: HubSecret,
}

impl PendingSecret {
    /// Puts the previous Secret back when the commit failed (the row, committed
    /// only at the version read, otherwise has the Secret's version).
    pub(super) async fn settle<T, E>(self, result: &Result<T, E>) {
        if result.is_err() {
            self.backend.restore(&self.written, self.previous).await;
        }
    }
}

/// The Secret holding `sealed` for `cluster_id` at `version`; keeps what
/// `previous` had beyond fleetreg's labels and annotations, and its
/// `resourceVersion` as the write's precondition.
pub(super) fn secret_for(
    cluster_id: Uuid,
    version: i64,
    key_id: &str,
    sealed: &SealedMap,
    previous: Option<&HubSecret>,
) -> HubSecret {
    let mut secret = previous.cloned().unwrap_or_default();
    secret.name = secret_name(cluster_id);
    secret
        .labels
        .insert(COMPONENT_LABEL.0.into(), COMPONENT_LABEL.1.into());
    secret
        .labels
        .insert(CLUSTER_ID_LABEL.into(), cluster_id.to_string());
    secret
        .annotations
        .insert(VERSION_ANNOTATION.into(), version.to_string());
    secret
        .annotations
        .insert(KEY_ID_ANNOTATION.into(), key_id.to_owned());
    secret.annotations.insert(
        WRITTEN_AT_ANNOTATION.into(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
    secret.data = sealed
        .iter()
        .map(|(field, envelope)| (field.replace('_', "-"), envelope.clone()))
        .collect();
    secret
}

/// The envelopes of `secret` by field name, when it carries `version`.
pub(super) fn envelopes_of(secret: &HubSecret, version: i64) -> Result<SealedMap, SecretsError> {
    let found = secret.annotations.get(VERSION_ANNOTATION);
    if found.map(String::as_str) != Some(version.to_string().as_str()) {
        return Err(SecretsError::VersionMismatch {
            name: secret.name.clone(),
            expected: version,
            found: found.cloned().unwrap_or_else(|| "none".into()),
        });
    }
    let mut sealed = SealedMap::new();
    for (key, envelope) in &secret.data {
        let field = key.replace('-', "_");
        if !FIELDS.contains(&field.as_str()) {
            return Err(SecretsError::UnexpectedKey {
                name: secret.name.clone(),
                key: key.clone(),
            });
        }
        sealed.insert(field, envelope.clone());
    }
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_fields_under_hyphenated_keys() {
        let id = Uuid::now_v7();
        let sealed: SealedMap = [
            ("token".to_owned(), "v1.a.b.c.d".to_owned()),
            ("prometheus_token".to_owned(), "v1.a.e.f.g".to_owned()),
            (
                "insecure_skip_tls_verify".to_owned(),
                "v1.a.h.i.j".to_owned(),
            ),
        ]
        .into();
        let secret = secret_for(id, 4, "k1", &sealed, None);
        assert_eq!(secret.name, format!("cluster-creds-{id}"));
        assert_eq!(
            secret.data.keys().collect::<Vec<_>>(),
            ["insecure-skip-tls-verify", "prometheus-token", "token"]
        );
        assert_eq!(secret.labels[CLUSTER_ID_LABEL], id.to_string());
        assert_eq!(envelopes_of(&secret, 4).unwrap(), sealed);
        assert!(matches!(
            envelopes_of(&secret, 5),
            Err(SecretsError::VersionMismatch { expected: 5, .. })
        ));
        let mut extra = secret.clone();
        extra.data.insert("password".into(), "x".into());
        assert!(matches!(
            envelopes_of(&extra, 4),
            Err(SecretsError::UnexpectedKey { .. })
        ));
    }

    #[test]
    fn replaces_only_the_rows_version_or_an_abandoned_secret() {
        let id = Uuid::now_v7();
        let now = chrono::Utc::now();
        let secret = secret_for(id, 3, "k1", &SealedMap::new(), None);
        assert!(writable(&secret, id, 3, now).is_ok());
        assert!(matches!(
            writable(&secret, id, 2, now),
            Err(CredentialsError::Store(StoreError::PreconditionFailed {
                expected: 2,
                actual: 3,
                ..
            }))
        ));
        assert!(writable(&secret, id, 0, now).is_err(), "no row yet");
        let later = now + chrono::Duration::from_std(ABANDONED_AFTER).unwrap();
        assert!(writable(&secret, id, 2, later + chrono::Duration::seconds(1)).is_ok());
        let mut unversioned = secret.clone();
        unversioned.annotations.remove(VERSION_ANNOTATION);
        assert!(writable(&unversioned, id, 0, now).is_ok());
    }
}
