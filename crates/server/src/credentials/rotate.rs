//! Master-key rotation behind `fleetreg vault rotate-master-key` and
//! `fleetreg vault status`, straight on the database (like `serve`).
//!
//! A rotation puts a new active key first in the key file (keeping the old
//! ones), then re-wraps every stored envelope's data key under it (the
//! ciphertexts stay as they are) and replaces the canary. It is safe while
//! servers run: a re-wrap keeps the credentials' version, so servers keep the
//! credentials they opened, and a server meeting an envelope under a key it
//! lacks re-reads the key file (`reload.rs`). A re-wrap is written only while
//! the version is the one read; a concurrent upload or rotation wins, and the
//! new version is read and re-wrapped in turn.
//!
//! With the Kubernetes Secrets backend (`VaultOptions::kubernetes`), the
//! envelopes of a row without any are re-wrapped in its Secret on the hub
//! (written only while the Secret still carries the row's version and the
//! `resourceVersion` read), then the row's key id is moved the same way.

use super::aad;
use super::secrets::{envelopes_of, SecretsBackend, SecretsError};
use crate::audit::audit_keys;
use fleetreg_model::{Audit, StoredCredentials};
use fleetreg_probe::{HubConfig, HubError};
use fleetreg_store::{KeyUsage, RewrapCredentials, Store, StoreError, StoreOptions};
use fleetreg_vault::{keyfile, KeyId, Keyring, Sealed, VaultError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uuid::Uuid;

/// Credentials read per page.
const PAGE: u32 = 200;

/// How often one cluster's re-wrap is tried when its credentials keep changing.
const ATTEMPTS: u32 = 5;

/// The audit actor of re-wraps and canary replacements (`system:vault-rotation`).
const ACTOR: &str = "vault-rotation";

/// Why a rotation (or a status) could not be done.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The keys come from `FLEETREG_MASTER_KEY`, which cannot be rewritten.
    #[error(
        "FLEETREG_MASTER_KEY is set, and a key given in the environment cannot be rotated in \
         place: generate a new key (`openssl rand -base64 32`), give every server and this \
         command FLEETREG_MASTER_KEY=NEW,OLD (the new key first, comma-separated), restart the \
         servers, then run `fleetreg vault rotate-master-key --rewrap-only`"
    )]
    EnvironmentKey,
    /// The master key (file or value) could not be read or rotated.
    #[error("master key: {0}")]
    Key(#[from] VaultError),
    /// The keys do not open the stored canary: not the keys the data was sealed with.
    #[error(
        "the master key does not open the stored canary ({0}): it is not the key the stored \
         credentials were sealed with; nothing was changed"
    )]
    Canary(VaultError),
    /// The SQLite file does not exist (never created here).
    #[error("no database at {}", .0.display())]
    NoDatabase(PathBuf),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The hub of the Kubernetes Secrets backend cannot be used.
    #[error("credentials backend: {0}")]
    Secrets(#[from] SecretsError),
    /// The key file was rotated, but what followed failed.
    #[error(
        "the key file now starts with the new active key {new_key} (the old keys are kept), but \
         re-wrapping failed: {source}; once that is fixed, run `fleetreg vault rotate-master-key \
         --rewrap-only`"
    )]
    AfterRotation {
        /// The new active key.
        new_key: KeyId,
        /// What failed.
        source: Box<RotateError>,
    },
}

/// Where the database and the master keys are (the `serve` defaults).
pub struct VaultOptions {
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// The master key file (never created here).
    pub master_key_file: PathBuf,
    /// The master keys as a value (`FLEETREG_MASTER_KEY`), used instead of the file.
    pub master_key: Option<String>,
    /// The hub when `credentials.backend` is `kubernetes` (see
    /// [`super::hub_config`]): envelopes kept in Secrets are re-wrapped there.
    pub kubernetes: Option<HubConfig>,
}

impl std::fmt::Debug for VaultOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultOptions")
            .field(
                "database_url",
                &fleetreg_store::redact_url(&self.database_url),
            )
            .field("master_key_file", &self.master_key_file)
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| "<redacted>"),
            )
            .field("kubernetes", &self.kubernetes)
            .finish()
    }
}

/// Told how a re-wrap pass advances, for a progress display
/// (`fleetreg vault rotate-master-key` draws a bar on a terminal).
pub trait RewrapProgress: Sync {
    /// A pass starts over `clusters` clusters with stored credentials (the
    /// count when it starts; credentials stored meanwhile may add some).
    fn start(&self, clusters: u64);
    /// One more cluster's credentials were gone through.
    fn advance(&self);
    /// The pass is over.
    fn finish(&self);
}

/// No progress display.
pub struct NoProgress;

impl RewrapProgress for NoProgress {
    fn start(&self, _: u64) {}
    fn advance(&self) {}
    fn finish(&self) {}
}

/// A cluster whose credentials could not be re-wrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapFailure {
    /// The cluster.
    pub cluster_id: Uuid,
    /// Why (never secret material).
    pub reason: String,
}

/// What a re-wrap pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewrapReport {
    /// Clusters with stored credentials that were looked at.
    pub clusters: u64,
    /// Clusters whose envelopes were re-wrapped.
    pub clusters_rewrapped: u64,
    /// Envelopes re-wrapped.
    pub envelopes_rewrapped: u64,
    /// Clusters already wholly under the active key.
    pub already_current: u64,
    /// Re-wraps not written because the credentials changed meanwhile (a
    /// concurrent upload or rotation); each was re-read and tried again.
    pub retried: u64,
    /// Clusters whose credentials were deleted meanwhile.
    pub deleted: u64,
    /// Clusters whose credentials could not be re-wrapped.
    pub failed: Vec<RewrapFailure>,
    /// After the pass: what keys other than the active one still wrap
    /// (uploaded by servers still sealing with an old key, or failures).
    pub remaining: Vec<KeyUsage>,
}

impl RewrapReport {
    /// Envelopes still under keys other than the active one after the pass
    /// (at least one per cluster: envelopes kept in a Secret on the hub are not
    /// counted by the database, only their cluster's row and key id).
    pub fn envelopes_remaining(&self) -> u64 {
        self.remaining
            .iter()
            .map(|u| u.envelopes.max(u.clusters))
            .sum()
    }
}

/// What `rotate_master_key` did.
#[derive(Debug)]
pub struct RotateOutcome {
    /// The new active key, when the key file was rotated (not `--rewrap-only`).
    pub new_key: Option<KeyId>,
    /// Every key of the ring, active first.
    pub key_ids: Vec<KeyId>,
    /// The re-wrap pass.
    pub report: RewrapReport,
    /// Whether the canary was replaced (it was under another key, or missing).
    pub canary_replaced: bool,
}

/// The keys and what they wrap, for `fleetreg vault status`.
#[derive(Debug)]
pub struct VaultStatus {
    /// Where the keys came from (the file's path, or the environment variable).
    pub source: String,
    /// Every key, active first.
    pub key_ids: Vec<KeyId>,
    /// The key id the canary names (`None`: no canary stored yet).
    pub canary_key: Option<String>,
    /// Whether these keys open the canary (`None`: no canary).
    pub canary_opens: Option<bool>,
    /// Clusters and envelopes per stored key id.
    pub usage: Vec<KeyUsage>,
}

/// The SQLite file a URL names, unless it is in-memory.
fn sqlite_path(url: &str) -> Option<&Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
}

/// The keys of `options`: the value when given, else the file (never created).
fn load(options: &VaultOptions) -> Result<Keyring, VaultError> {
    match &options.master_key {
        Some(value) => Keyring::from_value(value, "FLEETREG_MASTER_KEY"),
        None => Keyring::from_file(&options.master_key_file),
    }
}

/// Opens an existing database, sealing audit entries with `keyring`'s active key.
async fn open_store(url: &str, keyring: &Keyring) -> Result<Arc<dyn Store>, RotateError> {
    if let Some(path) = sqlite_path(url) {
        if !path.exists() {
            return Err(RotateError::NoDatabase(path.to_path_buf()));
        }
    }
    let options = StoreOptions {
        audit_keys: Some(Arc::new(audit_keys(keyring))),
        ..StoreOptions::default()
    };
    Ok(fleetreg_store::connect_with(url, options).await?)
}

/// The stored canary, parsed (`None` when none is stored).
async fn stored_canary(store: &dyn Store) -> Result<Option<Sealed>, RotateError> {
    match store.vault_canary().await? {
        Some(text) => {
            Ok(Some(text.parse().map_err(|e| {
                RotateError::Canary(VaultError::Malformed(e))
            })?))
        }
        None => Ok(None),
    }
}

/// Refuses keys that do not open the stored canary (none stored: nothing to check).
async fn check_canary(store: &dyn Store, keyring: &Keyring) -> Result<(), RotateError> {
    if let Some(canary) = stored_canary(store).await? {
        keyring
            .verify_canary(&canary)
            .map_err(RotateError::Canary)?;
    }
    Ok(())
}

/// Puts a canary under the active key in place unless the stored one is; true
/// when it was replaced.
async fn renew_canary(store: &dyn Store, keyring: &Keyring) -> Result<bool, RotateError> {
    let current = stored_canary(store).await?;
    if current.is_some_and(|c| !keyring.needs_rewrap(&c)) {
        return Ok(false);
    }
    let canary = keyring.canary();
    store
        .replace_vault_canary(
            &canary.to_string(),
            &keyring.active_id().to_string(),
            &Audit::system(ACTOR),
        )
        .await?;
    Ok(true)
}

/// Rotates the master key file and re-wraps everything under the new key;
/// with `rewrap_only`, re-wraps under the active key of the keys as they are
/// (after keys were changed by hand, or to finish an earlier rotation).
///
/// Refuses keys from `FLEETREG_MASTER_KEY` unless `rewrap_only`, and keys that
/// do not open the stored canary (before changing anything).
pub async fn rotate_master_key(
    options: &VaultOptions,
    rewrap_only: bool,
) -> Result<RotateOutcome, RotateError> {
    rotate_master_key_with_progress(options, rewrap_only, &NoProgress).await
}

/// [`rotate_master_key`], telling `progress` how the re-wrap pass advances.
pub async fn rotate_master_key_with_progress(
    options: &VaultOptions,
    rewrap_only: bool,
    progress: &dyn RewrapProgress,
) -> Result<RotateOutcome, RotateError> {
    if options.master_key.is_some() && !rewrap_only {
        return Err(RotateError::EnvironmentKey);
    }
    let current = load(options)?;
    // The hub must answer before the key file changes.
    let secrets = match &options.kubernetes {
        Some(hub) => Some(SecretsBackend::connect(hub).await?),
        None => None,
    };
    let secrets = secrets.as_ref();
    let store = open_store(&options.database_url, &current).await?;
    if let Err(error) = check_canary(store.as_ref(), &current).await {
        store.close().await;
        return Err(error);
    }
    if rewrap_only {
        let result = rewrap_and_renew(store.as_ref(), &current, secrets, progress).await;
        store.close().await;
        let (report, canary_replaced) = result?;
        return Ok(RotateOutcome {
            new_key: None,
            key_ids: current.key_ids(),
            report,
            canary_replaced,
        });
    }
    store.close().await;
    let keyring = keyfile::rotate_key_file(&options.master_key_file)?;
    let new_key = keyring.active_id();
    tracing::info!(key_id = %new_key, file = %options.master_key_file.display(), "rotated the master key file");
    let after = |source| RotateError::AfterRotation {
        new_key,
        source: Box::new(source),
    };
    let store = open_store(&options.database_url, &keyring)
        .await
        .map_err(after)?;
    let result = rewrap_and_renew(store.as_ref(), &keyring, secrets, progress).await;
    store.close().await;
    let (report, canary_replaced) = result.map_err(after)?;
    Ok(RotateOutcome {
        new_key: Some(new_key),
        key_ids: keyring.key_ids(),
        report,
        canary_replaced,
    })
}

async fn rewrap_and_renew(
    store: &dyn Store,
    keyring: &Keyring,
    secrets: Option<&SecretsBackend>,
    progress: &dyn RewrapProgress,
) -> Result<(RewrapReport, bool), RotateError> {
    let report = rewrap_pass(store, keyring, secrets, progress).await?;
    let canary_replaced = renew_canary(store, keyring).await?;
    Ok((report, canary_replaced))
}

/// Re-wraps every stored envelope not under `keyring`'s active key, cluster by
/// cluster in id order; see the module docs for concurrent changes.
pub async fn rewrap_all(store: &dyn Store, keyring: &Keyring) -> Result<RewrapReport, StoreError> {
    rewrap_pass(store, keyring, None, &NoProgress).await
}

/// [`rewrap_all`], re-wrapping envelopes kept in Secrets through `secrets`.
async fn rewrap_pass(
    store: &dyn Store,
    keyring: &Keyring,
    secrets: Option<&SecretsBackend>,
    progress: &dyn RewrapProgress,
) -> Result<RewrapReport, StoreError> {
    let audit = Audit::system(ACTOR);
    let mut report = RewrapReport::default();
    let mut after = None;
    // One row per cluster, each under one key id: the rows to go through.
    let rows = store.credential_key_usage().await?;
    progress.start(rows.iter().map(|usage| usage.clusters).sum());
    loop {
        let page = store.list_sealed_credentials(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.cluster_id);
        let full = page.len() == PAGE as usize;
        for stored in page {
            report.clusters += 1;
            if !stored.sealed.is_empty() {
                rewrap_cluster(store, keyring, stored, &audit, &mut report).await?;
            } else if let Some(secrets) = secrets {
                rewrap_secret(store, keyring, secrets, stored, &audit, &mut report).await?;
            } else {
                report.failed.push(RewrapFailure {
                    cluster_id: stored.cluster_id,
                    reason: "the envelopes are in a Secret on the hub (credentials.backend: \
                             kubernetes); run with the server's --config"
                        .into(),
                });
            }
            progress.advance();
        }
        if !full {
            break;
        }
    }
    progress.finish();
    report.remaining = remaining(store, keyring).await?;
    Ok(report)
}

/// What keys other than the active one still wrap.
async fn remaining(store: &dyn Store, keyring: &Keyring) -> Result<Vec<KeyUsage>, StoreError> {
    let active = keyring.active_id().to_string();
    Ok(store
        .credential_key_usage()
        .await?
        .into_iter()
        .filter(|usage| usage.key_id != active)
        .collect())
}

async fn rewrap_cluster(
    store: &dyn Store,
    keyring: &Keyring,
    mut stored: StoredCredentials,
    audit: &Audit,
    report: &mut RewrapReport,
) -> Result<(), StoreError> {
    let cluster_id = stored.cluster_id;
    for _ in 0..ATTEMPTS {
        let (sealed, count) = match rewrapped(keyring, &stored) {
            Ok(Some(rewrapped)) => rewrapped,
            Ok(None) => {
                report.already_current += 1;
                return Ok(());
            }
            Err(error) => {
                report.failed.push(RewrapFailure {
                    cluster_id,
                    reason: error.to_string(),
                });
                return Ok(());
            }
        };
        let rewrap = RewrapCredentials {
            cluster_id,
            expected_version: stored.version,
            sealed,
            key_id: keyring.active_id().to_string(),
        };
        if store.rewrap_credentials(rewrap, audit).await? {
            report.clusters_rewrapped += 1;
            report.envelopes_rewrapped += count;
            return Ok(());
        }
        report.retried += 1;
        match store.get_credentials(cluster_id).await? {
            Some(fresh) => stored = fresh,
            None => {
                report.deleted += 1;
                return Ok(());
            }
        }
    }
    report.failed.push(RewrapFailure {
        cluster_id,
        reason: format!("changed {ATTEMPTS} times while being re-wrapped; run again"),
    });
    Ok(())
}

/// Field name → envelope, as stored.
type SealedMap = BTreeMap<String, String>;

/// One cluster whose envelopes are in its Secret on the hub: the Secret is
/// re-wrapped (only while it carries the row's version and is unchanged since
/// read), then the row's key id (only while its version is the one read).
async fn rewrap_secret(
    store: &dyn Store,
    keyring: &Keyring,
    secrets: &SecretsBackend,
    mut stored: StoredCredentials,
    audit: &Audit,
    report: &mut RewrapReport,
) -> Result<(), StoreError> {
    let cluster_id = stored.cluster_id;
    let mut retried = 0;
    let end = 'attempts: {
        for _ in 0..ATTEMPTS {
            match rewrap_secret_once(store, keyring, secrets, &stored, audit).await? {
                SecretRewrap::Done(count) => break 'attempts Ok(count),
                SecretRewrap::Failed(reason) => break 'attempts Err(Some(reason)),
                changed @ (SecretRewrap::Changed | SecretRewrap::Mismatch(_)) => {
                    retried += 1;
                    match store.get_credentials(cluster_id).await? {
                        Some(fresh) if fresh.version == stored.version => {
                            if let SecretRewrap::Mismatch(reason) = changed {
                                // Not a write in flight: the row stayed, the Secret differs.
                                break 'attempts Err(Some(reason));
                            }
                            stored = fresh;
                        }
                        Some(fresh) if fresh.sealed.is_empty() => stored = fresh,
                        Some(_) => {
                            let reason = "re-uploaded into the database meanwhile; run again";
                            break 'attempts Err(Some(reason.into()));
                        }
                        // Deleted meanwhile.
                        None => break 'attempts Err(None),
                    }
                }
            }
        }
        Err(Some(format!(
            "changed {ATTEMPTS} times while being re-wrapped; run again"
        )))
    };
    report.retried += retried;
    match end {
        Ok(None) => report.already_current += 1,
        Ok(Some(count)) => {
            report.clusters_rewrapped += 1;
            report.envelopes_rewrapped += count;
        }
        Err(Some(reason)) => report.failed.push(RewrapFailure { cluster_id, reason }),
        Err(None) => report.deleted += 1,
    }
    Ok(())
}

/// What one try at re-wrapping a Secret did.
enum SecretRewrap {
    /// Written (`Some(envelopes)`), or nothing to do (`None`).
    Done(Option<u64>),
    /// The Secret or the row changed meanwhile: read again.
    Changed,
    /// The Secret is not of the row's version: read the row again (a write in
    /// flight), fail when it stays (the reason).
    Mismatch(String),
    /// Cannot be re-wrapped (the reason names no secret).
    Failed(String),
}

async fn rewrap_secret_once(
    store: &dyn Store,
    keyring: &Keyring,
    secrets: &SecretsBackend,
    stored: &StoredCredentials,
    audit: &Audit,
) -> Result<SecretRewrap, StoreError> {
    let cluster_id = stored.cluster_id;
    let secret = match secrets.read(cluster_id).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            return Ok(SecretRewrap::Failed(format!(
                "Secret {} is missing on the hub",
                super::secret_name(cluster_id)
            )))
        }
        Err(error) => return Ok(SecretRewrap::Failed(error.to_string())),
    };
    let sealed = match envelopes_of(&secret, stored.version) {
        Ok(sealed) => sealed,
        Err(error @ SecretsError::VersionMismatch { .. }) => {
            return Ok(SecretRewrap::Mismatch(error.to_string()));
        }
        Err(error) => return Ok(SecretRewrap::Failed(error.to_string())),
    };
    let view = StoredCredentials {
        sealed,
        ..stored.clone()
    };
    let (fresh, count) = match rewrapped(keyring, &view) {
        Ok(Some(rewrapped)) => rewrapped,
        Ok(None) => return Ok(SecretRewrap::Done(None)),
        Err(error) => return Ok(SecretRewrap::Failed(error.to_string())),
    };
    let active = keyring.active_id().to_string();
    if count > 0 {
        match secrets
            .write(cluster_id, stored.version, &active, &fresh, Some(&secret))
            .await
        {
            Ok(_) => {}
            Err(SecretsError::Hub(HubError::Conflict(_))) => return Ok(SecretRewrap::Changed),
            Err(error) => return Ok(SecretRewrap::Failed(error.to_string())),
        }
    }
    let rewrap = RewrapCredentials {
        cluster_id,
        expected_version: stored.version,
        sealed: BTreeMap::new(),
        key_id: active,
    };
    if store.rewrap_credentials(rewrap, audit).await? {
        Ok(SecretRewrap::Done(Some(count)))
    } else {
        Ok(SecretRewrap::Changed)
    }
}

/// The sealed map with every envelope under the active key and how many were
/// re-wrapped; `None` when all already are (and the row says so).
fn rewrapped(
    keyring: &Keyring,
    stored: &StoredCredentials,
) -> Result<Option<(SealedMap, u64)>, VaultError> {
    let mut count = 0;
    let mut out = BTreeMap::new();
    for (field, text) in &stored.sealed {
        let sealed: Sealed = text.parse().map_err(VaultError::Malformed)?;
        if keyring.needs_rewrap(&sealed) {
            let fresh = keyring.rewrap(&sealed, &aad(stored.cluster_id, field))?;
            out.insert(field.clone(), fresh.to_string());
            count += 1;
        } else {
            out.insert(field.clone(), text.clone());
        }
    }
    if count == 0 && stored.key_id == keyring.active_id().to_string() {
        return Ok(None);
    }
    Ok(Some((out, count)))
}

/// The keys of `options` and how many clusters and envelopes each stored key id
/// wraps (one aggregate query), with the canary's key.
pub async fn vault_status(options: &VaultOptions) -> Result<VaultStatus, RotateError> {
    let keyring = load(options)?;
    let source = match options.master_key {
        Some(_) => "environment variable FLEETREG_MASTER_KEY".to_owned(),
        None => options.master_key_file.display().to_string(),
    };
    let store = open_store(&options.database_url, &keyring).await?;
    let result = async {
        let canary = stored_canary(store.as_ref()).await?;
        let usage = store.credential_key_usage().await?;
        Ok::<_, RotateError>((canary, usage))
    }
    .await;
    store.close().await;
    let (canary, usage) = result?;
    Ok(VaultStatus {
        source,
        key_ids: keyring.key_ids(),
        canary_key: canary.as_ref().map(|c| c.key_id().to_string()),
        canary_opens: canary.map(|c| keyring.verify_canary(&c).is_ok()),
        usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetreg_vault::MasterKey;

    fn stored(keyring: &Keyring, cluster_id: Uuid) -> StoredCredentials {
        let mut sealed = BTreeMap::new();
        for field in ["token", "ca_cert"] {
            let envelope = keyring.seal(field.as_bytes(), &aad(cluster_id, field));
            sealed.insert(field.to_owned(), envelope.to_string());
        }
        StoredCredentials {
            cluster_id,
            version: 3,
            auth_type: fleetreg_model::AuthType::Token,
            sealed,
            key_id: keyring.active_id().to_string(),
            expires_at: None,
            created_at: fleetreg_model::now(),
            updated_at: fleetreg_model::now(),
            origins: fleetreg_model::CredentialOrigins::default(),
            unbound_at: None,
        }
    }

    #[test]
    fn rewraps_only_the_data_keys_of_old_envelopes() {
        let old_ring = Keyring::new(MasterKey::from_bytes([1; 32]));
        let id = Uuid::now_v7();
        let before = stored(&old_ring, id);
        let ring = Keyring::from_keys(vec![MasterKey::generate(), MasterKey::from_bytes([1; 32])])
            .unwrap();

        let (after, count) = rewrapped(&ring, &before).unwrap().unwrap();
        assert_eq!(count, 2);
        for (field, text) in &after {
            let sealed: Sealed = text.parse().unwrap();
            assert_eq!(sealed.key_id(), ring.active_id());
            assert_eq!(
                ring.open(&sealed, &aad(id, field)).unwrap().expose(),
                field.as_bytes()
            );
            // Same nonce and ciphertext: only the wrapped data key moved.
            let old_text = &before.sealed[field];
            assert_eq!(
                text.rsplitn(3, '.').take(2).collect::<Vec<_>>(),
                old_text.rsplitn(3, '.').take(2).collect::<Vec<_>>()
            );
        }
        let current = StoredCredentials {
            sealed: after,
            key_id: ring.active_id().to_string(),
            ..before
        };
        assert!(rewrapped(&ring, &current).unwrap().is_none());
    }

    #[test]
    fn an_envelope_under_an_unknown_key_fails() {
        let id = Uuid::now_v7();
        let before = stored(&Keyring::new(MasterKey::generate()), id);
        let ring = Keyring::new(MasterKey::generate());
        assert!(matches!(
            rewrapped(&ring, &before),
            Err(VaultError::UnknownKeyId { .. })
        ));
    }
}
