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
//!
//! Under a steady stream of writes a `PASSIVE` checkpoint never catches up
//! with the writer, and SQLite only starts the WAL over from its beginning
//! when every frame in it was copied: the WAL then grows for as long as the
//! writes go on (a gigabyte after ten seconds of registrations), every commit
//! extends the file (so its `fdatasync` also writes the file's metadata), and
//! the file stays that large afterwards. Once the WAL holds more than
//! [`RESTART_FRAMES`], the checkpoint thread therefore takes the writer's
//! connection between two write batches and checkpoints the few frames the
//! `PASSIVE` pass left: the next batch starts the WAL over, overwriting
//! blocks the file already has, unless a reader still reads an older
//! snapshot from the WAL; then the next try waits for another
//! [`RESTART_FRAMES`] of growth. The writer waits for that short copy. When
//! the WAL starts over, the writer's `journal_size_limit` cuts a file that
//! grew past it back to that size.

use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// How often the WAL is checkpointed.
const INTERVAL: Duration = Duration::from_millis(200);

/// WAL frames (pages) past which a checkpoint also holds the writer back
/// so that the WAL can start over: 4 MiB with the 1 KiB pages of a database
/// the store creates, 16 MiB with the 4 KiB pages of an older one.
const RESTART_FRAMES: i64 = 4096;

/// The checkpoint thread of one database; stops when dropped.
pub(super) struct Checkpointer {
    stop: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Checkpoints through `conn` (read-write, on the database's file) every
    /// [`INTERVAL`] until dropped; `writer` is the write connection, taken
    /// when the WAL is to start over.
    pub(super) fn start(
        conn: Connection,
        writer: Arc<Mutex<Connection>>,
    ) -> std::io::Result<Checkpointer> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        crate::thread::spawn("sqlite-checkpoint", move || {
            let mut rounds = Rounds {
                conn,
                writer,
                seen: None,
                restart_above: RESTART_FRAMES,
            };
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(INTERVAL);
                rounds.run();
            }
        })?;
        Ok(Checkpointer { stop })
    }
}

/// What the checkpoint thread keeps from one round to the next.
struct Rounds {
    conn: Connection,
    writer: Arc<Mutex<Connection>>,
    /// `PRAGMA data_version` when a checkpoint last ran.
    seen: Option<i64>,
    /// The WAL size (frames) past which the writer is taken: raised after a
    /// try that could not start the WAL over (a reader was still on an older
    /// snapshot), so that the writer is not held back every round while
    /// that lasts.
    restart_above: i64,
}

impl Rounds {
    /// One round: nothing when no connection committed since the last
    /// checkpoint (an idle database costs one cheap read). A busy database
    /// (another process's checkpoint) or a full disk: the next round tries
    /// again; the WAL only grows meanwhile.
    fn run(&mut self) {
        let version = data_version(&self.conn);
        if version.is_some() && version == self.seen {
            return;
        }
        match self.checkpoint() {
            Ok(()) => self.seen = version,
            Err(error) => tracing::debug!(%error, "WAL checkpoint did not run"),
        }
    }

    /// A `PASSIVE` checkpoint and, past [`Rounds::restart_above`], a second
    /// one with the writer held, so that the next write batch starts the WAL
    /// over.
    fn checkpoint(&mut self) -> rusqlite::Result<()> {
        let frames = passive_checkpoint(&self.conn)?;
        if frames <= RESTART_FRAMES {
            self.restart_above = RESTART_FRAMES;
        }
        if frames > self.restart_above {
            // No write transaction while this guard lives.
            let _between_batches = self.writer.blocking_lock();
            self.restart_above = passive_checkpoint(&self.conn)? + RESTART_FRAMES;
        }
        Ok(())
    }
}

/// A `PASSIVE` checkpoint; how many frames the WAL holds.
fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
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
