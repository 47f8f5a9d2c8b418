//! Cluster credentials in the server: sealing uploads with the vault before they
//! reach the store, and opening them for the probe — once per credential
//! version, audited, kept in memory that is zeroed on drop.
//!
//! Invariant: plaintext exists only inside the probe's `ClusterCredential`
//! (redacted `Debug`, zeroized on drop); the store, responses, events, logs and
//! errors see sealed envelopes or nothing.

mod expiry;
mod keys;
mod reload;
pub mod rotate;

pub use expiry::{ExpiryCounts, MAX_WINDOW_DAYS};
pub use keys::{load_keyring, KeyError};
use reload::SharedKeyring;

use fleetreg_model::{
    Audit, AuditResult, AuthType, CredentialInput, CredentialWrite, StoredCredentials,
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
}

/// Opened credentials by cluster id, with the stored version they came from.
type OpenedMap = HashMap<Uuid, (i64, Arc<ClusterCredential>)>;

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
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("master_key", &self.keyring.get().active_id().to_string())
            .finish_non_exhaustive()
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

    /// Seals an upload's fields and stores them (a new version), with the event
    /// and audit entry; the opened copy is cached for the health checks.
    pub async fn put(
        &self,
        cluster_id: Uuid,
        write: CredentialWrite,
        input: &CredentialInput,
        credential: Arc<ClusterCredential>,
        audit: &Audit,
    ) -> Result<StoredCredentials, CredentialsError> {
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
        let stored = self
            .store
            .put_credentials(
                PutCredentials {
                    cluster_id,
                    write,
                    auth_type: input.auth_type,
                    sealed,
                    key_id: keyring.active_id().to_string(),
                    expires_at,
                },
                audit,
            )
            .await?;
        self.cache()
            .insert(cluster_id, (stored.version, credential));
        Ok(stored)
    }

    /// Deletes a cluster's credentials (event and audit entry in the store).
    pub async fn delete(&self, cluster_id: Uuid, audit: &Audit) -> Result<(), StoreError> {
        self.store.delete_credentials(cluster_id, audit).await?;
        self.cache().remove(&cluster_id);
        Ok(())
    }

    /// The credentials the probe should present for `cluster_id`, opened once per
    /// stored version (each opening is audited as `credentials.decrypt`);
    /// `None` when none are stored.
    pub async fn for_cluster(
        &self,
        cluster_id: Uuid,
    ) -> Result<Option<Arc<ClusterCredential>>, CredentialsError> {
        let Some(stored) = self.store.get_credentials(cluster_id).await? else {
            self.cache().remove(&cluster_id);
            return Ok(None);
        };
        if let Some((version, credential)) = self.cache().get(&cluster_id) {
            if *version == stored.version {
                return Ok(Some(credential.clone()));
            }
        }
        let mut opened = self.open_stored(&stored);
        if let Err(CredentialsError::Vault {
            source: VaultError::UnknownKeyId { .. },
            ..
        }) = &opened
        {
            // Re-wrapped under a key rotated in while this server runs.
            if self.keyring.reload() {
                opened = self.open_stored(&stored);
            }
        }
        let entry = AuditOnly {
            action: "credentials.decrypt",
            resource_id: Some(cluster_id),
            result: if opened.is_ok() {
                AuditResult::Success
            } else {
                AuditResult::Failure
            },
            error_code: opened.as_ref().err().map(|_| "CREDENTIALS_INVALID"),
        };
        self.store
            .append_audit(entry, &Audit::system("vault"))
            .await?;
        let credential = Arc::new(opened?);
        self.cache()
            .insert(cluster_id, (stored.version, credential.clone()));
        Ok(Some(credential))
    }

    /// Opens every sealed field and rebuilds the probe's credential.
    fn open_stored(
        &self,
        stored: &StoredCredentials,
    ) -> Result<ClusterCredential, CredentialsError> {
        let cluster = stored.cluster_id;
        let vault = |source| CredentialsError::Vault { cluster, source };
        let keyring = self.keyring.get();
        let mut fields: HashMap<&str, SecretString> = HashMap::new();
        for (field, text) in &stored.sealed {
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
        Ok(Credentials::build(&input)?)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, OpenedMap> {
        // Every update is one insert or remove: a poisoned map is consistent.
        self.opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
