//! `fleetreg audit verify`: recompute the chain straight from the database
//! with the master key(s), like `serve` opens them, and compare with the head file.

use super::{audit_keys, AuditError, HeadFile};
use fleetreg_store::{verify_audit_chain, AuditHead, VerifyReport};
use fleetreg_vault::Keyring;
use std::path::{Path, PathBuf};

/// Where the database, the keys and the head file are.
pub struct VerifyOptions {
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// The master key(s), base64 (`FLEETREG_MASTER_KEY`); else the file.
    pub master_key: Option<String>,
    /// The master key file (never created here).
    pub master_key_file: PathBuf,
    /// The audit head file.
    pub head_file: PathBuf,
}

impl std::fmt::Debug for VerifyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyOptions")
            .field(
                "database_url",
                &fleetreg_store::redact_url(&self.database_url),
            )
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| "<redacted>"),
            )
            .field("master_key_file", &self.master_key_file)
            .field("head_file", &self.head_file)
            .finish()
    }
}

/// What a verification found, with the head it compared against.
#[derive(Debug)]
pub struct VerifyOutcome {
    /// The chain's report (see `VerifyReport::broken`).
    pub report: VerifyReport,
    /// The head read from the file, if it exists.
    pub head: Option<AuditHead>,
}

/// The SQLite file a URL names, unless it is in-memory.
fn sqlite_path(url: &str) -> Option<&Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
}

/// Opens the database (migrating it, like `serve`), recomputes the audit
/// chain with the keys and compares its end with the head file.
pub async fn verify(options: &VerifyOptions) -> Result<VerifyOutcome, AuditError> {
    let keyring = match &options.master_key {
        Some(value) => Keyring::from_value(value, "FLEETREG_MASTER_KEY")?,
        None => Keyring::from_file(&options.master_key_file)?,
    };
    if let Some(path) = sqlite_path(&options.database_url) {
        if !path.exists() {
            return Err(AuditError::NoDatabase(path.to_path_buf()));
        }
    }
    let store = fleetreg_store::connect(&options.database_url).await?;
    // This database's head: the file's, or the one set aside for it while
    // another database's head was in the file.
    let head = match store.database_id().await {
        Ok(id) => HeadFile::new(&options.head_file)
            .for_database(id)
            .read_own(),
        Err(error) => {
            store.close().await;
            return Err(error.into());
        }
    };
    let head = match head {
        Ok(head) => head,
        Err(error) => {
            store.close().await;
            return Err(error.into());
        }
    };
    let report = verify_audit_chain(store.as_ref(), &audit_keys(&keyring), head.as_ref()).await;
    store.close().await;
    Ok(VerifyOutcome {
        report: report?,
        head,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_sqlite_file() {
        use std::path::Path;
        assert_eq!(
            super::sqlite_path("sqlite://a/b.db?mode=rwc"),
            Some(Path::new("a/b.db"))
        );
        assert_eq!(super::sqlite_path("sqlite:x.db"), Some(Path::new("x.db")));
        assert_eq!(super::sqlite_path("sqlite::memory:"), None);
        assert_eq!(super::sqlite_path("postgres://h/db"), None);
    }
}
