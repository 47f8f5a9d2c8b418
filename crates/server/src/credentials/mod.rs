//! Cluster credentials in the server: sealing uploads with the vault before they
//! reach the store, and opening them for the probe — once per credential
//! version, audited, kept in memory that is zeroed on drop.
//!
//! Invariant: plaintext exists only inside the probe's `ClusterCredential`
//! (redacted `Debug`, zeroized on drop); the store, responses, events, logs and
//! errors see sealed envelopes or nothing.

pub mod auto_rotate;
mod expiry;
mod keys;
mod reload;
mod replace;
pub mod rotate;
mod secrets;

pub use expiry::{ExpiryCounts, MAX_WINDOW_DAYS};
pub use keys::{load_keyring, KeyError};
use reload::SharedKeyring;
pub(crate) use replace::check_in_background;
pub use replace::{replace, validate_against, Replace, ReplaceError, Replaced};
pub use secrets::{
    hub_config, secret_name, SecretsBackend, SecretsError, ABANDONED_AFTER, HUB_TOKEN_ENV,
    KEY_ID_ANNOTATION, VERSION_ANNOTATION, WRITTEN_AT_ANNOTATION,
};

use fleetreg_model::{
    Audit, AuditResult, AuthType, Cluster, CredentialInput, CredentialOrigins, CredentialWrite,
    ErrorCode, StoredCredentials,
};
use fleetreg_probe::{ClusterCredential, CredentialError};
use fleetreg_store::{AuditOnly, PutCredentials, Store, StoreError};
use fleetreg_vault::{Keyring, Sealed, VaultError};
use secrecy::{ExposeSecret, SecretString};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Field names of the sealed map beyond the request's secret fields.
const CA_CERT: &str = "ca_cert";
const INSECURE: &str = "insecure_skip_tls_verify";

/// Why credentials could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The upload is unusable (kubeconfig safety, malformed token or CA); names
    /// the field, never its value.
    #[error(transparent)]
    Invalid(#[from] CredentialError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored credentials could not be opened (wrong master key, tampering).
    #[error("stored credentials of cluster {cluster} cannot be opened: {source}")]
    Vault {
        /// The cluster.
        cluster: Uuid,
        /// Why (never secret material).
        source: VaultError,
    },
    /// The Kubernetes Secrets backend failed, or the cluster's Secret does not
    /// belong to the stored version.
    #[error("credentials of cluster {cluster} in the hub's Secret: {source}")]
    Secret {
        /// The cluster.
        cluster: Uuid,
        /// Why (never secret material).
        source: SecretsError,
    },
}

/// What a probe of a cluster may present ([`Credentials::for_cluster`]).
#[derive(Debug, Clone)]
pub enum Presentation {
    /// No credentials are stored: the probe goes anonymous.
    Nothing,
    /// The stored credentials, bound to the origins of the cluster's URLs.
    Present(Arc<ClusterCredential>),
    /// Stored, but not bound to where the cluster's URLs are now
    /// (`ORIGIN_CHANGED`, or a snapshot of the cluster newer than the
    /// binding): presented nowhere, never even opened.
    Withheld,
}

/// Opened credentials by cluster id, with the stored version they came from.
type OpenedMap = HashMap<Uuid, (i64, Arc<ClusterCredential>)>;

/// The stored version whose opening failed, by cluster id.
type FailedMap = HashMap<Uuid, i64>;

/// The server's credential vault. Cheap to clone.
#[derive(Clone)]
pub struct Credentials {
    store: Arc<dyn Store>,
    /// The master keys; re-read from the key file after a rotation.
    keyring: SharedKeyring,
    /// Opened credentials by cluster, with the version they were opened at.
    opened: Arc<Mutex<OpenedMap>>,
    /// Credentials expiring within this many days are `EXPIRING`.
    rotation_warning_days: u64,
    /// How each cluster's credentials rotate, the automatic attempts, and one
    /// credential write per cluster at a time (see [`auto_rotate`]).
    rotation: auto_rotate::RotationBook,
    /// Where the envelopes live: `None` in the database row, else in a Secret
    /// per cluster on the hub (see [`secrets`]).
    secrets: Option<SecretsBackend>,
    /// The version of each cluster's credentials that could not be opened,
    /// so a failure is audited and logged once per version, not per check.
    failed: Arc<Mutex<FailedMap>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("master_key", &self.keyring.get().active_id().to_string())
            .finish_non_exhaustive()
    }
}

/// The `credentials.decrypt` audit entry of an attempt to open `cluster_id`'s
/// stored credentials.
pub(super) fn decrypt_entry<T, E>(cluster_id: Uuid, opened: &Result<T, E>) -> AuditOnly {
    AuditOnly {
        action: "credentials.decrypt",
        resource_id: Some(cluster_id),
        result: if opened.is_ok() {
            AuditResult::Success
        } else {
            AuditResult::Failure
        },
        error_code: opened.as_ref().err().map(|_| ErrorCode::CredentialsInvalid),
    }
}

/// The associated data binding a sealed field to its cluster and field name, so
/// an envelope moved to another cluster or field does not open.
fn aad(cluster_id: Uuid, field: &str) -> String {
    format!("cluster/{cluster_id}/credentials/{field}")
}

impl Credentials {
    /// The vault over `store`, after proving `keyring` opens what the store
    /// holds (the canary sealed at first start); refuses a wrong master key.
    pub async fn open(store: Arc<dyn Store>, keyring: Keyring) -> Result<Credentials, KeyError> {
        match store.vault_canary().await? {
            Some(text) => {
                let sealed: Sealed = text.parse().map_err(|e: fleetreg_vault::EnvelopeError| {
                    KeyError::Canary(VaultError::Malformed(e))
                })?;
                keyring.verify_canary(&sealed).map_err(KeyError::Canary)?;
            }
            None => {
                let canary = keyring.canary();
                store
                    .init_vault_canary(&canary.to_string(), &keyring.active_id().to_string())
                    .await?;
            }
        }
        Ok(Credentials {
            store,
            keyring: SharedKeyring::new(keyring),
            opened: Arc::default(),
            rotation_warning_days: 7,
            rotation: auto_rotate::RotationBook::default(),
            secrets: None,
            failed: Arc::default(),
        })
    }

    /// The probe's credential built from an upload (kubeconfig safety, token, CA,
    /// observability tokens).
    pub fn build(input: &CredentialInput) -> Result<ClusterCredential, CredentialError> {
        let credential = match input.auth_type {
            AuthType::Kubeconfig => {
                let text = input
                    .kubeconfig
                    .as_ref()
                    .map(|k| k.expose_secret())
                    .unwrap_or_default();
                ClusterCredential::from_kubeconfig(text)?
            }
            AuthType::Token => {
                let token = input
                    .token
                    .clone()
                    .unwrap_or_else(|| SecretString::from(String::new()));
                ClusterCredential::from_token(
                    token,
                    input.ca_cert.as_deref(),
                    input.insecure_skip_tls_verify,
                )?
            }
        };
        credential.with_observability_tokens(
            input.prometheus_token.clone(),
            input.tempo_token.clone(),
            input.loki_token.clone(),
        )
    }

    /// Seals an upload's fields and stores them (a new version) bound to the
    /// origins of `cluster`'s URLs (the snapshot they were validated against),
    /// with the event and audit entry; the opened copy is cached for the
    /// health checks. The
    /// caller holds the cluster's write lock ([`Credentials::lock_writes`]).
    /// Written only while the stored version is `expected_version` (`Some(0)`:
    /// none stored), or with `None` the version read here once, before
    /// anything is written; else `StoreError::PreconditionFailed` (a write of
    /// another replica won) and nothing changes. A rotation without stored
    /// credentials is `CredentialsNotFound` before the Secret is touched.
    pub async fn put(
        &self,
        cluster: &Cluster,
        write: CredentialWrite,
        input: &CredentialInput,
        credential: Arc<ClusterCredential>,
        expected_version: Option<i64>,
        audit: &Audit,
    ) -> Result<StoredCredentials, CredentialsError> {
        let cluster_id = cluster.id;
        let origins = CredentialOrigins::of(cluster);
        let keyring = self.keyring.get();
        let mut sealed = BTreeMap::new();
        for (field, value) in input.secrets() {
            let envelope = keyring.seal(value.expose_secret().as_bytes(), &aad(cluster_id, field));
            sealed.insert(field.to_owned(), envelope.to_string());
        }
        if let Some(ca) = &input.ca_cert {
            let envelope = keyring.seal(ca.as_bytes(), &aad(cluster_id, CA_CERT));
            sealed.insert(CA_CERT.to_owned(), envelope.to_string());
        }
        if input.insecure_skip_tls_verify {
            let envelope = keyring.seal(b"true", &aad(cluster_id, INSECURE));
            sealed.insert(INSECURE.to_owned(), envelope.to_string());
        }
        let expires_at = credential.expires_at().or(input.expires_at);
        let key_id = keyring.active_id().to_string();
        let current = match expected_version {
            Some(version) => version,
            None => {
                let row = self.store.get_credentials(cluster_id).await?;
                if write == CredentialWrite::Rotate && row.is_none() {
                    return Err(StoreError::CredentialsNotFound(cluster_id).into());
                }
                row.map_or(0, |row| row.version)
            }
        };
        // Kubernetes backend: the envelopes go to the Secret first (the row keeps none).
        let pending = self
            .write_secret(cluster_id, &key_id, current, &mut sealed)
            .await?;
        let result = self
            .store
            .put_credentials(
                PutCredentials {
                    cluster_id,
                    write,
                    auth_type: input.auth_type,
                    sealed,
                    key_id,
                    expires_at,
                    expected_version: Some(current),
                    origins,
                },
                audit,
            )
            .await;
        if let Some(pending) = pending {
            pending.settle(&result).await;
        }
        let stored = result?;
        self.rotation
            .classify(cluster_id, stored.version, Some(&credential));
        self.failures().remove(&cluster_id);
        self.cache()
            .insert(cluster_id, (stored.version, credential));
        Ok(stored)
    }

    /// Deletes a cluster's credentials (event and audit entry in the store),
    /// one credential write per cluster at a time: the row first, then with
    /// the Kubernetes backend their Secret (best effort, logged: a Secret
    /// without a row is never used).
    pub async fn delete(&self, cluster_id: Uuid, audit: &Audit) -> Result<(), CredentialsError> {
        let _writes = self.lock_writes(cluster_id).await;
        self.store.delete_credentials(cluster_id, audit).await?;
        self.cache().remove(&cluster_id);
        self.rotation.forget(cluster_id);
        self.failures().remove(&cluster_id);
        self.delete_secret(cluster_id).await;
        Ok(())
    }

    /// What the probe may present to `cluster` as this snapshot has it: the
    /// stored credentials only while they are bound to the origins of its URLs
    /// ([`StoredCredentials::presentable_to`]), opened once per stored version
    /// (each opening is audited as `credentials.decrypt`; a failure is audited
    /// and logged once per version, then only returned).
    pub async fn for_cluster(&self, cluster: &Cluster) -> Result<Presentation, CredentialsError> {
        let cluster_id = cluster.id;
        let Some(stored) = self.store.get_credentials(cluster_id).await? else {
            self.cache().remove(&cluster_id);
            self.rotation.forget(cluster_id);
            self.failures().remove(&cluster_id);
            return Ok(Presentation::Nothing);
        };
        if !stored.presentable_to(cluster) {
            return Ok(Presentation::Withheld);
        }
        Ok(Presentation::Present(self.opened(stored).await?))
    }

    /// `stored` opened, whatever its binding: for [`Credentials::for_cluster`],
    /// and for an explicit re-validation against new origins (the caller
    /// audits it as `credentials.rebind`).
    pub async fn opened(
        &self,
        mut stored: StoredCredentials,
    ) -> Result<Arc<ClusterCredential>, CredentialsError> {
        let cluster_id = stored.cluster_id;
        if let Some((version, credential)) = self.cache().get(&cluster_id) {
            if *version == stored.version {
                return Ok(credential.clone());
            }
        }
        let (sealed, mut opened) = match self.envelopes(&mut stored).await {
            Ok(sealed) => {
                let opened = self.open_stored(&stored, &sealed);
                (sealed, opened)
            }
            Err(error) => (BTreeMap::new(), Err(error)),
        };
        if let Err(CredentialsError::Vault {
            source: VaultError::UnknownKeyId { .. },
            ..
        }) = &opened
        {
            // Re-wrapped under a key rotated in while this server runs.
            if self.keyring.reload() {
                opened = self.open_stored(&stored, &sealed);
            }
        }
        let repeated = match &opened {
            Ok(_) => {
                self.failures().remove(&cluster_id);
                false
            }
            Err(error) => {
                let version = stored.version;
                let repeated = self.failures().insert(cluster_id, version) == Some(version);
                if !repeated {
                    tracing::warn!(cluster = %cluster_id, version, %error, "stored credentials cannot be opened; checks go on without them");
                }
                repeated
            }
        };
        if !repeated {
            // A failure was audited when this version first failed.
            self.store
                .append_audit(decrypt_entry(cluster_id, &opened), &Audit::system("vault"))
                .await?;
        }
        let credential = Arc::new(opened?);
        self.rotation
            .classify(cluster_id, stored.version, Some(&credential));
        self.cache()
            .insert(cluster_id, (stored.version, credential.clone()));
        Ok(credential)
    }

    /// Opens every sealed field and rebuilds the probe's credential.
    fn open_stored(
        &self,
        stored: &StoredCredentials,
        sealed: &BTreeMap<String, String>,
    ) -> Result<ClusterCredential, CredentialsError> {
        Ok(Credentials::build(&self.open_fields(stored, sealed)?)?)
    }

    /// Opens every sealed field back into the upload they came from (automatic
    /// rotation keeps all but the token), reading the envelopes from the
    /// cluster's Secret with the Kubernetes backend. The caller audits the opening.
    async fn open_input(
        &self,
        stored: &StoredCredentials,
    ) -> Result<CredentialInput, CredentialsError> {
        let mut stored = stored.clone();
        let sealed = self.envelopes(&mut stored).await?;
        self.open_fields(&stored, &sealed)
    }

    /// Opens the envelopes `sealed` of `stored` into the upload they came from.
    fn open_fields(
        &self,
        stored: &StoredCredentials,
        sealed: &BTreeMap<String, String>,
    ) -> Result<CredentialInput, CredentialsError> {
        let cluster = stored.cluster_id;
        let vault = |source| CredentialsError::Vault { cluster, source };
        let keyring = self.keyring.get();
        let mut fields: HashMap<&str, SecretString> = HashMap::new();
        for (field, text) in sealed {
            let sealed: Sealed = text.parse().map_err(|e| vault(VaultError::Malformed(e)))?;
            let plain = keyring.open(&sealed, &aad(cluster, field)).map_err(vault)?;
            let value = plain.to_str().map_err(vault)?;
            fields.insert(field.as_str(), SecretString::from(value.to_owned()));
        }
        let input = CredentialInput {
            auth_type: stored.auth_type,
            kubeconfig: fields.remove("kubeconfig"),
            token: fields.remove("token"),
            ca_cert: fields
                .remove(CA_CERT)
                .map(|ca| ca.expose_secret().to_owned()),
            insecure_skip_tls_verify: fields.remove(INSECURE).is_some(),
            prometheus_token: fields.remove("prometheus_token"),
            tempo_token: fields.remove("tempo_token"),
            loki_token: fields.remove("loki_token"),
            expires_at: stored.expires_at,
        };
        Ok(input)
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, FailedMap> {
        // Every update is one insert or remove: a poisoned map is consistent.
        self.failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, OpenedMap> {
        // Every update is one insert or remove: a poisoned map is consistent.
        self.opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
