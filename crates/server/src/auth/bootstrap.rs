//! The first admin token: `FLEETREG_ADMIN_TOKEN` when set (CI, containers),
//! else a new one written to a 0600 file the CLI on the same machine reads.

use super::tokens::{display_prefix, hash_token, new_token};
use fleetreg_model::{ApiToken, Audit, Role};
use fleetreg_store::{Store, StoreError};
use std::io::Write;
use std::path::Path;

/// The name of the bootstrap admin token.
pub const BOOTSTRAP_NAME: &str = "bootstrap-admin";

/// Why the bootstrap token could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The token file could not be written.
    #[error("cannot write the admin token file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// `FLEETREG_ADMIN_TOKEN` is too short to be a secret.
    #[error("FLEETREG_ADMIN_TOKEN must be at least 16 characters")]
    TooShort,
}

/// Makes sure an admin can get in: with `preset` (FLEETREG_ADMIN_TOKEN), the
/// `bootstrap-admin` token is that value; otherwise, when no active admin token
/// exists, a new one is created and written to `file` (mode 0600).
pub async fn ensure_admin_token(
    store: &dyn Store,
    preset: Option<&str>,
    file: &Path,
) -> Result<(), BootstrapError> {
    let audit = Audit::system("bootstrap");
    let record = |token: &str| ApiToken {
        id: uuid::Uuid::now_v7(),
        name: BOOTSTRAP_NAME.into(),
        role: Role::Admin,
        prefix: display_prefix(token),
        created_at: fleetreg_model::now(),
        expires_at: None,
        revoked_at: None,
    };
    if let Some(token) = preset {
        if token.len() < 16 {
            return Err(BootstrapError::TooShort);
        }
        let hash = hash_token(token);
        let current = store.find_token(&hash).await?;
        if !current.is_some_and(|t| t.is_active(fleetreg_model::now()) && t.role == Role::Admin) {
            store
                .create_token(record(token), hash, true, &audit)
                .await?;
        }
        return Ok(());
    }
    let now = fleetreg_model::now();
    let admins = store.list_tokens().await?;
    if admins
        .iter()
        .any(|t| t.role == Role::Admin && t.is_active(now))
    {
        return Ok(());
    }
    let token = new_token();
    write_token_file(file, &token)?;
    store
        .create_token(record(&token), hash_token(&token), true, &audit)
        .await?;
    tracing::warn!(file = %file.display(), "created the admin token; the CLI on this machine reads it from that file");
    Ok(())
}

/// Writes `token` to `path` with mode 0600 (replacing a stale file atomically).
fn write_token_file(path: &Path, token: &str) -> Result<(), BootstrapError> {
    let fail = |source| BootstrapError::File {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(fail)?;
    file.write_all(format!("{token}\n").as_bytes())
        .map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)?;
    Ok(())
}
