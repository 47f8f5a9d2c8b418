//! Where the master key comes from: `FLEETREG_MASTER_KEY` (base64, for CI and
//! containers) or the key file (`credentials.master_key_file`, created with mode
//! 0600 on first start). Losing it loses every stored credential.

use fleetreg_store::StoreError;
use fleetreg_vault::{Keyring, MasterKey, VaultError};
use std::path::Path;

/// Why the master key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key (file or env) could not be read or created.
    #[error("master key: {0}")]
    Key(#[from] VaultError),
    /// The key does not open the data already stored: it is not the key the
    /// credentials were sealed with.
    #[error(
        "the master key cannot decrypt the stored credentials ({0}); start with the key they \
         were sealed with (see docs/CONFIGURATION.md, master key backup)"
    )]
    Canary(VaultError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The keyring from `env_value` when given, else from `file`, creating the file
/// with a new key (mode 0600) when it does not exist.
pub fn load_keyring(env_value: Option<&str>, file: &Path) -> Result<Keyring, KeyError> {
    if let Some(value) = env_value {
        return Ok(Keyring::from_value(value, "FLEETREG_MASTER_KEY")?);
    }
    if file.exists() {
        return Ok(Keyring::from_file(file)?);
    }
    let key = MasterKey::write_new_key_file(file)?;
    tracing::warn!(
        file = %file.display(),
        key_id = %key.id(),
        "created a new master key; back it up — losing it loses every stored credential"
    );
    Ok(Keyring::new(key))
}
