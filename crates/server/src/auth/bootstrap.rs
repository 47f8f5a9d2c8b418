//! The first admin token: `FLEETREG_ADMIN_TOKEN` when set (CI, containers),
//! else a new one written to a 0600 file the CLI on the same machine reads.
//! A revoked `FLEETREG_ADMIN_TOKEN` is never brought back: start-up refuses it.
//! A token file holding a token this database does not know (another server's,
//! from another database, or from a database since reset) is never replaced:
//! start-up refuses, naming the file.

use super::tokens::{digest, listed_prefix, new_token, TokenHasher};
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
    /// `FLEETREG_ADMIN_TOKEN` is a token that was revoked (or expired): it
    /// stays revoked, and the server does not start with it.
    #[error(
        "FLEETREG_ADMIN_TOKEN is the token {name:?}, which was revoked or has expired; a revoked \
         token stays revoked. Set FLEETREG_ADMIN_TOKEN to a new value (at least 16 characters), or \
         unset it to use an existing admin token (or have a new one written to the admin token file \
         when none is active)"
    )]
    Revoked {
        /// The token's name.
        name: String,
    },
    /// A new admin token is needed, but the token file holds a token this
    /// database does not know: replacing it would lock out the server it
    /// belongs to.
    #[error(
        "the admin token file {path} holds a token this database does not know: it belongs to \
         another database (another server using this directory, or a database since removed). \
         It is left alone. Give this server its own file (--admin-token-file or \
         auth.admin_token_file), or set FLEETREG_ADMIN_TOKEN; if the database it belonged to is \
         gone for good, move the file aside"
    )]
    ForeignTokenFile {
        /// The file.
        path: String,
    },
}

/// Checks `FLEETREG_ADMIN_TOKEN` before anything is opened: at least 16 characters.
pub fn check_preset(preset: Option<&str>) -> Result<(), BootstrapError> {
    match preset {
        Some(token) if token.len() < 16 => Err(BootstrapError::TooShort),
        _ => Ok(()),
    }
}

/// Makes sure an admin can get in: with `preset` (FLEETREG_ADMIN_TOKEN), the
/// `bootstrap-admin` token is that value — unless that value was revoked (or
/// expired): a revoked token stays revoked, and start-up fails with
/// [`BootstrapError::Revoked`] naming the remedy. Without `preset`, when no
/// active admin token exists, a new one is created and written to `file`
/// (mode 0600). Tokens are stored in `hasher`'s form.
pub async fn ensure_admin_token(
    store: &dyn Store,
    hasher: &TokenHasher,
    preset: Option<&str>,
    file: &Path,
) -> Result<(), BootstrapError> {
    let audit = Audit::system("bootstrap");
    let record = |prefix: String| ApiToken {
        id: uuid::Uuid::now_v7(),
        name: BOOTSTRAP_NAME.into(),
        role: Role::Admin,
        prefix,
        created_at: store.clock().now(),
        expires_at: None,
        revoked_at: None,
        node: None,
    };
    let now = store.clock().now();
    if let Some(token) = preset {
        check_preset(preset)?;
        let current = hasher.find(store, &digest(token)).await?;
        match current.map(|(_, _, token)| token) {
            Some(t) if t.is_active(now) && t.role == Role::Admin => {}
            Some(t) if !t.is_active(now) => {
                tracing::error!(
                    token = %t.name,
                    revoked_at = ?t.revoked_at,
                    expires_at = ?t.expires_at,
                    "FLEETREG_ADMIN_TOKEN names a revoked or expired token; refusing to start"
                );
                return Err(BootstrapError::Revoked { name: t.name });
            }
            // Unknown (or, oddly, not an admin): this value becomes `bootstrap-admin`.
            _ => {
                // An admin-chosen value: no characters of it are listed.
                store
                    .create_token(record(String::new()), hasher.stored(token), true, &audit)
                    .await?;
            }
        }
        return Ok(());
    }
    let admins = store.list_tokens().await?;
    if admins
        .iter()
        .any(|t| t.role == Role::Admin && t.is_active(now))
    {
        return Ok(());
    }
    check_token_file_owner(store, hasher, file).await?;
    let token = new_token();
    write_token_file(file, &token)?;
    store
        .create_token(
            record(listed_prefix(&token)),
            hasher.stored(&token),
            true,
            &audit,
        )
        .await?;
    tracing::warn!(file = %file.display(), "created the admin token; the CLI on this machine reads it from that file");
    Ok(())
}

/// Before anything is written at start-up: fails with
/// [`BootstrapError::ForeignTokenFile`] when a new admin token would be needed
/// (no `preset`, no active admin token) and `file` holds a token this database
/// does not know.
pub async fn check_token_file(
    store: &dyn Store,
    hasher: &TokenHasher,
    preset: Option<&str>,
    file: &Path,
) -> Result<(), BootstrapError> {
    if preset.is_some() {
        return Ok(());
    }
    let now = store.clock().now();
    let admins = store.list_tokens().await?;
    if admins
        .iter()
        .any(|t| t.role == Role::Admin && t.is_active(now))
    {
        return Ok(());
    }
    check_token_file_owner(store, hasher, file).await
}

/// `file` may be (over)written: it does not exist, is empty, or holds a token
/// of this database (active, revoked or expired).
async fn check_token_file_owner(
    store: &dyn Store,
    hasher: &TokenHasher,
    file: &Path,
) -> Result<(), BootstrapError> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(BootstrapError::File {
                path: file.display().to_string(),
                source,
            })
        }
    };
    let token = text.trim();
    if token.is_empty() {
        return Ok(());
    }
    let digest = digest(token);
    // The keyed forms, and the bare digest of a database not yet re-keyed.
    if hasher.find(store, &digest).await?.is_some() || store.find_token(&digest).await?.is_some() {
        return Ok(());
    }
    Err(BootstrapError::ForeignTokenFile {
        path: file.display().to_string(),
    })
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
