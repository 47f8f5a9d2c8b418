//! SQLite WAL checkpoints off the writer's path. With the default
//! `wal_autocheckpoint`, the `COMMIT` that takes the WAL past 1,000 pages
//! copies them into the database file and flushes it before it returns, so
//! that one write batch (and every caller waiting on it) pays for the pages
//! of all the batches before it. The writer's connection has automatic
//! checkpoints off instead, and a thread of its own runs a `PASSIVE`
//! checkpoint every [`INTERVAL`] after a commit, on a connection of its own
//! (`PRAGMA data_version` tells it one happened): it copies what
//! no reader still needs and never blocks the writer, which keeps appending
//! to the WAL meanwhile. Durability is the WAL's (`synchronous=FULL`): a
//! commit is on disk when `COMMIT` returns, checkpointed or not.

use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the WAL is checkpointed.
const INTERVAL: Duration = Duration::from_millis(200);

/// The checkpoint thread of one database; stops when dropped.
pub(super) struct Checkpointer {
    stop: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Checkpoints through `conn` (read-write, on the database's file) every
    /// [`INTERVAL`] until dropped.
    pub(super) fn start(conn: Connection) -> std::io::Result<Checkpointer> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let mut seen = None;
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(INTERVAL);
                    // Changes whenever another connection committed: an idle
                    // database costs this one cheap read per interval.
                    let version = data_version(&conn);
                    if version.is_some() && version == seen {
                        continue;
                    }
                    // A busy database (another process's checkpoint) or a
                    // full disk: the next round tries again; the WAL only
                    // grows meanwhile.
                    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        Ok(()) => seen = version,
                        Err(error) => tracing::debug!(%error, "WAL checkpoint did not run"),
                    }
                }
            })?;
        Ok(Checkpointer { stop })
    }
}

/// `PRAGMA data_version`: changes when another connection commits.
fn data_version(conn: &Connection) -> Option<i64> {
    conn.query_row("PRAGMA data_version", [], |row| row.get(0))
        .ok()
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
