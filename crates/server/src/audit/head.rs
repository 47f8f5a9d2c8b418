//! The audit head file: `{"id": N, "mac": "…", "database_id": "…"}` of the
//! last committed entry and the database it belongs to (`Store::database_id`),
//! replaced atomically (temporary file, fsync, rename, fsync of the directory)
//! by a worker that follows the store's head. A head of another database is set
//! aside as `<file>.<its database id>` (and put back when that database returns).

use fleetreg_store::{AuditHead, Store};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Reading or writing the head file failed.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The file exists but could not be read.
    #[error("cannot read audit head file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold a head.
    #[error("audit head file {} is not an audit head: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file could not be written.
    #[error("cannot write audit head file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Whether `id` has the form of `Store::database_id` (16 hex digits).
fn is_database_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Where the head is kept, and (when known) the database whose head it holds.
#[derive(Debug, Clone)]
pub struct HeadFile {
    path: PathBuf,
    database_id: Option<String>,
}

/// What a head file records: the head, and the database it was written for
/// (`None` in files written before database ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedHead {
    /// The head.
    #[serde(flatten)]
    pub head: AuditHead,
    /// The database's id (`Store::database_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_id: Option<String>,
}

/// Distinguishes temporary files of writers in one process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl HeadFile {
    /// The head file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> HeadFile {
        HeadFile {
            path: path.into(),
            database_id: None,
        }
    }

    /// The same file, holding the head of the database `database_id`: heads
    /// are written with it.
    pub fn for_database(self, database_id: impl Into<String>) -> HeadFile {
        HeadFile {
            database_id: Some(database_id.into()),
            ..self
        }
    }

    /// The database whose head it holds, when known.
    pub fn database_id(&self) -> Option<&str> {
        self.database_id.as_deref()
    }

    /// Where the head of the database `database_id` is set aside while another
    /// database's head is in the file: `<file>.<database_id>`.
    pub fn aside_path(&self, database_id: &str) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{database_id}"));
        PathBuf::from(name)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The recorded head, whichever database it belongs to; `None` when the
    /// file does not exist.
    pub fn read(&self) -> Result<Option<AuditHead>, HeadError> {
        Ok(self.read_recorded()?.map(|recorded| recorded.head))
    }

    /// The recorded head of this file's database: the file's when it was
    /// written for it (or before database ids), else the one set aside for it;
    /// `None` when there is neither.
    pub fn read_own(&self) -> Result<Option<AuditHead>, HeadError> {
        let Some(own) = self.database_id.as_deref() else {
            return self.read();
        };
        match self.read_recorded()? {
            Some(recorded) if recorded.database_id.as_deref().is_none_or(|id| id == own) => {
                Ok(Some(recorded.head))
            }
            _ => Ok(HeadFile::new(self.aside_path(own))
                .read_recorded()?
                .map(|recorded| recorded.head)),
        }
    }

    /// The file's contents; `None` when the file does not exist.
    pub fn read_recorded(&self) -> Result<Option<RecordedHead>, HeadError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(HeadError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let recorded: RecordedHead =
            serde_json::from_str(&text).map_err(|e| HeadError::Malformed {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        // The id names a file beside this one when a head is set aside: only
        // a database id's own form (16 hex digits) may reach a path.
        if let Some(id) = &recorded.database_id {
            if !is_database_id(id) {
                return Err(HeadError::Malformed {
                    path: self.path.clone(),
                    reason: "database_id is not 16 hex digits".into(),
                });
            }
        }
        Ok(Some(recorded))
    }

    /// Replaces the file with `head` durably: a new temporary file in the same
    /// directory, fsynced, renamed over the old one, then the directory fsynced.
    pub fn write(&self, head: &AuditHead) -> Result<(), HeadError> {
        let fail = |source| HeadError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self
            .path
            .file_name()
            .map_or_else(|| "audit-head".into(), |n| n.to_string_lossy().into_owned());
        let tmp = dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let recorded = RecordedHead {
            head: head.clone(),
            database_id: self.database_id.clone(),
        };
        let mut text = serde_json::to_string(&recorded).map_err(|e| fail(e.into()))?;
        text.push('\n');
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .and_then(|mut file| {
                file.write_all(text.as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(error) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(fail(error));
        }
        sync_dir(&dir).map_err(fail)
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Head file writes are at least this far apart: under a stream of writes
/// (a group commit every few milliseconds) the heads committed meanwhile are
/// coalesced into one write, instead of two fsyncs beside every commit.
const WRITE_EVERY: Duration = Duration::from_millis(100);

/// Follows the store's audit head and writes the newest to the head file,
/// at most every [`WRITE_EVERY`]: heads published meanwhile are coalesced.
#[derive(Clone)]
pub struct HeadWriter {
    file: HeadFile,
    heads: watch::Receiver<Option<AuditHead>>,
}

impl HeadWriter {
    /// A writer of `store`'s heads to `file`.
    pub fn new(file: HeadFile, store: &dyn Store) -> HeadWriter {
        HeadWriter {
            file,
            heads: store.watch_audit_head(),
        }
    }

    /// Writes heads until `shutdown`, then the latest once more; writes are
    /// at least [`WRITE_EVERY`] apart.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                changed = self.heads.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.write_latest().await;
                }
                () = shutdown.cancelled() => break,
            }
            tokio::select! {
                () = tokio::time::sleep(WRITE_EVERY) => {}
                () = shutdown.cancelled() => break,
            }
        }
        self.write_latest().await;
    }

    /// Writes the latest head, if any (after the store closed, its last one).
    pub async fn flush(&self) {
        self.write_latest().await;
    }

    async fn write_latest(&self) {
        let Some(head) = self.heads.borrow().clone() else {
            return;
        };
        let file = self.file.clone();
        match tokio::task::spawn_blocking(move || file.write(&head)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "audit head not recorded"),
            Err(error) => tracing::error!(%error, "audit head writer failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let file = HeadFile::new(dir.path().join("h"));
        assert_eq!(file.read().unwrap(), None);
        let head = AuditHead {
            id: 7,
            mac: "ab".repeat(32),
        };
        file.write(&head).unwrap();
        file.write(&AuditHead { id: 8, ..head }).unwrap();
        assert_eq!(file.read().unwrap().map(|h| h.id), Some(8));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary files left");
        std::fs::write(dir.path().join("h"), "garbage").unwrap();
        assert!(matches!(file.read(), Err(HeadError::Malformed { .. })));
    }

    #[test]
    fn a_database_id_that_is_not_hex_never_becomes_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = HeadFile::new(dir.path().join("h")).for_database("00112233aabbccdd");
        let mac = "ab".repeat(32);
        for id in ["../../etc/evil", "00112233aabbccd/", "short"] {
            let text = format!(r#"{{"id": 3, "mac": "{mac}", "database_id": "{id}"}}"#);
            std::fs::write(dir.path().join("h"), text).unwrap();
            assert!(
                matches!(file.read_own(), Err(HeadError::Malformed { .. })),
                "{id}"
            );
        }
        let good = format!(r#"{{"id": 3, "mac": "{mac}", "database_id": "ffeeddccbbaa9988"}}"#);
        std::fs::write(dir.path().join("h"), good).unwrap();
        assert_eq!(file.read_own().unwrap(), None, "another database's head");
    }
}
