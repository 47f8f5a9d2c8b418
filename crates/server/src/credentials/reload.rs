//! The keyring a running server seals and opens with, and picking up a key
//! file rotated under it (`fleetreg vault rotate-master-key`): when a stored
//! envelope names a master key the server does not hold, it re-reads the key
//! file once and continues with the new keys, never dropping one it holds.

use super::Credentials;
use fleetreg_vault::Keyring;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

/// The keyring in force, replaced whole by a reload. Cheap to clone.
#[derive(Clone)]
pub(super) struct SharedKeyring {
    current: Arc<RwLock<Arc<Keyring>>>,
    /// The key file to re-read; `None` for keys from `FLEETREG_MASTER_KEY`.
    file: Option<Arc<PathBuf>>,
}

impl SharedKeyring {
    /// `keyring`, not reloadable until a file is set.
    pub(super) fn new(keyring: Keyring) -> SharedKeyring {
        SharedKeyring {
            current: Arc::new(RwLock::new(Arc::new(keyring))),
            file: None,
        }
    }

    /// The keyring in force now.
    pub(super) fn get(&self) -> Arc<Keyring> {
        // Every write replaces the whole value: a poisoned lock holds a valid ring.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the key file; true when it holds keys this ring lacks, in which
    /// case its keys are now in force (its first key seals). A file missing a
    /// key of the ring is not taken: envelopes under that key would stop opening.
    pub(super) fn reload(&self) -> bool {
        let Some(file) = &self.file else {
            return false;
        };
        let fresh = match Keyring::from_file(file.as_path()) {
            Ok(fresh) => fresh,
            Err(error) => {
                tracing::warn!(%error, "cannot re-read the master key file");
                return false;
            }
        };
        let current = self.get();
        let (held, read) = (current.key_ids(), fresh.key_ids());
        if let Some(missing) = held.iter().find(|id| !read.contains(id)) {
            tracing::warn!(
                file = %file.display(),
                key_id = %missing,
                "the master key file lacks a key this server holds; keeping the keys in memory"
            );
            return false;
        }
        if read.len() == held.len() {
            return false;
        }
        tracing::info!(
            file = %file.display(),
            active = %fresh.active_id(),
            keys = read.len(),
            "re-read the rotated master key file"
        );
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
        true
    }
}

impl Credentials {
    /// Re-reads `file` (the key file the keyring came from) when stored
    /// credentials name a master key this server does not hold, so a server
    /// running through a master-key rotation opens re-wrapped credentials.
    pub fn with_key_file(mut self, file: PathBuf) -> Credentials {
        self.keyring.file = Some(Arc::new(file));
        self
    }
}
