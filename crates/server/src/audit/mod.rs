//! The tamper-evident audit log in the server: the MAC keys derived from the
//! vault's master keys, the head file kept outside the database, the start-up
//! check against it, and the offline verification behind `fleetreg audit verify`.
//!
//! - Keys: `HKDF-SHA256(master key, info = "fleetreg/audit-log/v1")` per master
//!   key of the ring. The active key's derivation seals new entries, each entry
//!   names the master key id it was sealed under, and every key still in the
//!   ring verifies: after a master-key rotation keep the previous key line for
//!   as long as the entries it sealed must stay verifiable.
//! - Head: after each commit the store publishes (last id, last MAC); a worker
//!   writes it to `audit.head_file` (atomically, fsynced). A head behind the
//!   database is fine (a crash between commit and head write); a head ahead of
//!   it, or naming an entry with another MAC, means the end of the log was cut
//!   off or rewritten.
//! - Start-up: the server refuses to start when the log no longer reaches its
//!   head, since its next write would make the head match a truncated log.

mod head;
mod verify;

pub use head::{HeadError, HeadFile, HeadWriter};
pub use verify::{verify, VerifyOptions, VerifyOutcome};

use fleetreg_store::{AuditKey, AuditKeys, Store, StoreError, AUDIT_KEY_PURPOSE};
use fleetreg_vault::{DerivedKey, Keyring, VaultError};
use std::path::PathBuf;

/// What can go wrong with the audit log outside of a chain break.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The head file could not be read or written.
    #[error(transparent)]
    Head(#[from] HeadError),
    /// The log does not reach the entry its head file records.
    #[error(
        "the audit log does not match its head file {}: {problem}; run `fleetreg audit verify`, \
         and once the cause is understood (a restored backup, removed entries) move the head file \
         aside to start",
        path.display()
    )]
    HeadMismatch {
        /// The head file.
        path: PathBuf,
        /// What differs.
        problem: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The master key could not be read.
    #[error("master key: {0}")]
    Key(#[from] VaultError),
    /// `audit verify` was pointed at a SQLite file that does not exist.
    #[error("no database at {}", .0.display())]
    NoDatabase(PathBuf),
}

fn audit_key(key: &DerivedKey) -> AuditKey {
    AuditKey::new(key.key_id().to_string(), *key.expose())
}

/// The audit MAC keys of `keyring`: derived from the active master key (seals
/// new entries) and from every previous one (verifies older entries).
pub fn audit_keys(keyring: &Keyring) -> AuditKeys {
    let previous = keyring
        .derive_keys(AUDIT_KEY_PURPOSE)
        .iter()
        .skip(1)
        .map(audit_key)
        .collect();
    AuditKeys::new(audit_key(&keyring.derive_key(AUDIT_KEY_PURPOSE)), previous)
}

/// At start-up: checks that the log still holds the entry the head file
/// records, with the recorded MAC (no file yet: nothing to check).
pub async fn check_head(store: &dyn Store, file: &HeadFile) -> Result<(), AuditError> {
    let Some(head) = file.read()? else {
        tracing::info!(head_file = %file.path().display(), "no audit head file yet; it is written after the next audited write");
        return Ok(());
    };
    let row = store
        .list_audit_chain(head.id.saturating_sub(1), 1)
        .await?
        .into_iter()
        .next();
    let problem = match row {
        Some(row) if row.entry.id == head.id && row.mac.as_deref() == Some(head.mac.as_str()) => {
            tracing::info!(head_file = %file.path().display(), id = head.id, "audit log reaches its head");
            return Ok(());
        }
        Some(row) if row.entry.id == head.id => {
            format!("entry {} is not the entry the head recorded", head.id)
        }
        _ => format!(
            "the head records entry {}, which the log no longer holds",
            head.id
        ),
    };
    Err(AuditError::HeadMismatch {
        path: file.path().to_path_buf(),
        problem,
    })
}
