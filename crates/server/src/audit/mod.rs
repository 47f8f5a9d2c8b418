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
//! - Database identity: the head file records the id of the database it
//!   belongs to (`Store::database_id`, created with the schema). A head of
//!   another database (a reset, or another database used from the same
//!   directory) is no alarm: it is set aside as `<file>.<its id>` and put back
//!   when that database is used again. The same database cut short keeps its id
//!   and is still refused. Heads written before database ids are checked as
//!   before (and carry the id from the next write on).

mod head;
mod verify;

pub use head::{HeadError, HeadFile, HeadWriter, RecordedHead};
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
/// records, with the recorded MAC (no file yet: nothing to check). With the
/// file's database id set ([`HeadFile::for_database`]), a head of another
/// database is set aside first, and one set aside for this database put back.
pub async fn check_head(store: &dyn Store, file: &HeadFile) -> Result<(), AuditError> {
    if let Some(own) = file.database_id() {
        adopt_head(file, own)?;
    }
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

/// Makes the head file hold database `own`'s head, if there is one: a head
/// recorded for another database is renamed to `<file>.<its id>`, and a head
/// set aside for `own` is renamed back.
fn adopt_head(file: &HeadFile, own: &str) -> Result<(), AuditError> {
    let rename = |from: &std::path::Path, to: &std::path::Path| {
        std::fs::rename(from, to).map_err(|source| HeadError::Write {
            path: to.to_path_buf(),
            source,
        })
    };
    if let Some(other) = file.read_recorded()?.and_then(|r| r.database_id) {
        if other == own {
            return Ok(());
        }
        let aside = file.aside_path(&other);
        rename(file.path(), &aside)?;
        tracing::info!(
            head_file = %file.path().display(),
            set_aside_as = %aside.display(),
            database_id = own,
            head_database_id = %other,
            "the audit head file belongs to another database (a reset database, or another one \
             used from this directory); set it aside, this database's head is written after its \
             next audited write"
        );
    }
    let aside = file.aside_path(own);
    if file.read_recorded()?.is_none() && aside.exists() {
        rename(&aside, file.path())?;
        tracing::info!(
            head_file = %file.path().display(),
            from = %aside.display(),
            database_id = own,
            "put back the audit head this database left when another one was used"
        );
    }
    Ok(())
}
