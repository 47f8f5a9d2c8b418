//! SQLite through rusqlite, on the calling thread: one WAL database file with
//! `synchronous=FULL`, one write connection (the group-commit writer's) and a
//! few read-only readers. A read runs its statements where it is awaited,
//! without a hop to another thread (sqlx's SQLite driver sends every
//! statement to a worker thread and back, about half the server's CPU on a
//! `GET`); a lone write statement and the reads that may scan many rows
//! (snapshot transactions, [`Engine::scan`]) run on the blocking pool. A
//! write transaction (`BEGIN IMMEDIATE`, its statements, the `COMMIT` and its
//! fsync) blocks the thread that runs it, the writer's own
//! ([`Engine::begin`]). Statements
//! are prepared once per connection and cached. sqlx still creates the file
//! and runs the migrations, so both engines keep one migration record.
//!
//! UUIDs are stored as 16-byte BLOBs, times as fixed-width RFC 3339 text (so
//! text order is time order), JSON as text.

use super::sqlite_checkpoint::Checkpointer;
use super::{Engine, Tx};
use crate::dialect::{Dialect, SQLITE};
use crate::sql::{Row, Sql, Value};
use crate::StoreError;
use async_trait::async_trait;
use fleetreg_model::format_timestamp;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::ConnectOptions;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

/// Most read connections open at once (a snapshot holds one across awaits).
const READERS: usize = 8;
/// How long a statement waits on another process's lock before `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes a WAL file is cut back to when it starts over: 64 MiB.
const WAL_SIZE_LIMIT: i64 = 64 << 20;
/// The page size of a database this store creates (one created before keeps
/// its own: it is fixed when the first table is). A commit writes every page
/// it changed to the WAL whole, and a registration changes a page in each of
/// some twenty b-trees (the row, its indexes, its labels, the change log's
/// and the audit log's rows and theirs): with 1 KiB pages instead of 4 KiB
/// a lone registration writes and `fdatasync`s about a quarter of the bytes
/// (+21 % registrations a second over one connection), a batch of 64 under
/// half (more, smaller pages: no faster), GET and list no slower
/// (docs/BENCHMARKS.md, issue 10).
const PAGE_SIZE: u32 = 1024;
/// Prepared statements kept per connection (the store has fewer texts than this,
/// batch statements included: their chunk sizes are powers of two).
const STATEMENT_CACHE: usize = 512;

/// The SQLite engine: the writer's connection and the readers' pool.
pub(super) struct SqliteEngine {
    file: Arc<DatabaseFile>,
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Readers>,
    durability: String,
    /// Checkpoints the WAL while the engine lives.
    _checkpointer: Checkpointer,
}

/// Opens (creating if missing) the database at `url` and migrates it.
pub(super) async fn open(url: &str) -> Result<SqliteEngine, StoreError> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        .page_size(PAGE_SIZE);
    let path = options.get_filename().to_path_buf();
    if url.contains(":memory:") || url.contains("mode=memory") || path.as_os_str().is_empty() {
        // Every connection would see a database of its own.
        return Err(StoreError::UnsupportedUrl(crate::redact_url(url)));
    }
    create_private(&path)?;
    let mut migrator = options.connect().await?;
    sqlx::migrate!("./migrations/sqlite")
        .run(&mut migrator)
        .await?;
    sqlx::Connection::close(migrator).await?;

    let file = Arc::new(DatabaseFile { path });
    let writer = file.open_writer().map_err(sqlite_error)?;
    let synchronous: i64 = writer
        .query_row("PRAGMA synchronous", [], |row| row.get(0))
        .map_err(sqlite_error)?;
    let journal: String = writer
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .map_err(sqlite_error)?;
    let writer = Arc::new(Mutex::new(writer));
    let checkpointer = file
        .open(OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(sqlite_error)
        .and_then(|conn| {
            Checkpointer::start(conn, writer.clone())
                .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))
        })?;
    let synchronous = match synchronous {
        0 => "OFF",
        1 => "NORMAL",
        2 => "FULL",
        3 => "EXTRA",
        _ => "UNKNOWN",
    };
    Ok(SqliteEngine {
        readers: Arc::new(Readers {
            file: file.clone(),
            idle: SyncMutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(READERS)),
        }),
        file,
        writer,
        durability: format!("sqlite journal_mode={journal} synchronous={synchronous}"),
        _checkpointer: checkpointer,
    })
}

/// The database file and how its connections are opened.
struct DatabaseFile {
    path: PathBuf,
}

impl DatabaseFile {
    fn open_writer(&self) -> rusqlite::Result<Connection> {
        let conn = self.open(OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // Checkpoints run on their own thread (`sqlite_checkpoint`).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // A multi-row statement inside a transaction keeps a statement journal
        // (the pages it changed, to undo just that statement); past 64 KiB it
        // spills to a temporary file, a write syscall per page. In memory it is
        // bounded by what one statement of a batch changes.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // When the WAL starts over, a file that grew past this is cut back
        // to it (see `sqlite_checkpoint`).
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        Ok(conn)
    }

    fn open_reader(&self) -> rusqlite::Result<Connection> {
        self.open(OpenFlags::SQLITE_OPEN_READ_ONLY)
    }

    fn open(&self, mode: OpenFlags) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(&self.path, mode | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }
}

/// Idle read-only connections, opened as needed up to [`READERS`].
struct Readers {
    file: Arc<DatabaseFile>,
    idle: SyncMutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    async fn take(self: &Arc<Self>) -> Result<Reader, StoreError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.file.open_reader().map_err(sqlite_error)?,
        };
        Ok(Reader {
            conn: Some(conn),
            readers: self.clone(),
            _permit: permit,
        })
    }
}

/// A read connection taken from [`Readers`]; it goes back when dropped, out
/// of any transaction (or is closed when it cannot be brought out of one).
struct Reader {
    conn: Option<Connection>,
    readers: Arc<Readers>,
    _permit: OwnedSemaphorePermit,
}

impl Reader {
    fn conn(&self) -> Result<&Connection, StoreError> {
        self.conn.as_ref().ok_or(StoreError::Closed)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if out_of_transaction(&conn) {
                let mut idle = self.readers.idle.lock().unwrap_or_else(|e| e.into_inner());
                idle.push(conn);
            }
        }
    }
}

/// Rolls back whatever transaction `conn` is in; whether it is now out of one.
fn out_of_transaction(conn: &Connection) -> bool {
    conn.is_autocommit() || (conn.execute_batch("ROLLBACK").is_ok() && conn.is_autocommit())
}

/// A read-only transaction on a reader: one snapshot from its first read.
/// The reader is away on the blocking pool while a statement runs (`None`
/// after a statement whose caller went away: the transaction is over).
struct SnapshotTx(Option<Reader>);

impl SnapshotTx {
    /// Runs `work` on the transaction's connection on the blocking pool.
    async fn off_the_worker<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.0.take().ok_or(StoreError::Closed)?;
        let (reader, result) = on_blocking_pool(reader, |reader| work(reader.conn()?)).await?;
        self.0 = Some(reader);
        result
    }
}

/// Snapshots serve the multi-statement reads (list pages with their totals,
/// the fleet views, change-log pages): they run off the worker.
#[async_trait]
impl Tx for SnapshotTx {
    async fn fetch(&mut self, sql: &Sql) -> Result<Vec<Row>, StoreError> {
        let sql = sql.clone();
        self.off_the_worker(move |conn| fetch(conn, &sql)).await
    }

    async fn execute(&mut self, sql: &Sql) -> Result<u64, StoreError> {
        let sql = sql.clone();
        self.off_the_worker(move |conn| execute(conn, &sql)).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let reader = self.0.as_ref().ok_or(StoreError::Closed)?;
        reader.conn()?.execute_batch("COMMIT").map_err(sqlite_error)
    }
}

/// The write transaction, holding the writer's connection until it ends. A
/// transaction that ends without committing (rolled back, failed, or its
/// `COMMIT` failed, e.g. on a full disk) is rolled back; a connection that
/// cannot be brought out of it is replaced by a fresh one, so the next batch
/// always starts clean.
struct WriteTx {
    conn: Option<OwnedMutexGuard<Connection>>,
    file: Arc<DatabaseFile>,
}

impl WriteTx {
    fn conn(&self) -> Result<&Connection, StoreError> {
        self.conn.as_deref().ok_or(StoreError::Closed)
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if !out_of_transaction(&conn) {
            match self.file.open_writer() {
                Ok(fresh) => *conn = fresh,
                Err(error) => {
                    tracing::error!(%error, "cannot reopen the database's write connection")
                }
            }
        }
    }
}

#[async_trait]
impl Tx for WriteTx {
    async fn fetch(&mut self, sql: &Sql) -> Result<Vec<Row>, StoreError> {
        fetch(self.conn()?, sql)
    }

    async fn execute(&mut self, sql: &Sql) -> Result<u64, StoreError> {
        execute(self.conn()?, sql)
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        let conn = self.conn.take().ok_or(StoreError::Closed)?;
        // On the caller's thread, the writer's own (`Engine::begin`):
        // the `fdatasync` holds up no async worker and costs no hand-off.
        let committed = conn.execute_batch("COMMIT");
        // Back in place, so that a failed commit is rolled back on drop.
        self.conn = Some(conn);
        committed.map_err(sqlite_error)
    }
}

/// Runs `work` on `conn` (a connection or what holds one) on the blocking
/// pool and hands it back with the result: for what waits on the disk or
/// may scan many rows, so it holds up no task queued on this worker.
///
/// Not `block_in_place`: that hands the worker's core to another thread at
/// every call, so under concurrent reads the runtime's core wanders over
/// dozens of pool threads and the long-lived allocations of the tasks it
/// runs (an open event stream's connection buffers) end up in as many
/// thread heaps: an idle event stream that had read the change log cost
/// ~150–220 KB of server memory instead of ~20 KB (docs/BENCHMARKS.md).
async fn on_blocking_pool<C: Send + 'static, T: Send + 'static>(
    conn: C,
    work: impl FnOnce(&C) -> T + Send + 'static,
) -> Result<(C, T), StoreError> {
    tokio::task::spawn_blocking(move || {
        let result = work(&conn);
        (conn, result)
    })
    .await
    .map_err(|_| StoreError::Closed)
}

impl SqliteEngine {
    /// The write connection, out of any transaction: one left inside a
    /// transaction (its rollback and its reopening both failed when the last
    /// one ended) is brought out now, or the write is refused.
    async fn clean_writer(&self) -> Result<OwnedMutexGuard<Connection>, StoreError> {
        let mut conn = self.writer.clone().lock_owned().await;
        if !out_of_transaction(&conn) {
            *conn = self.file.open_writer().map_err(sqlite_error)?;
        }
        Ok(conn)
    }
}

#[async_trait]
impl Engine for SqliteEngine {
    fn dialect(&self) -> &'static Dialect {
        &SQLITE
    }

    fn durability(&self) -> &str {
        &self.durability
    }

    async fn fetch(&self, sql: &Sql) -> Result<Vec<Row>, StoreError> {
        fetch(self.readers.take().await?.conn()?, sql)
    }

    async fn scan(&self, sql: &Sql) -> Result<Vec<Row>, StoreError> {
        let reader = self.readers.take().await?;
        let sql = sql.clone();
        on_blocking_pool(reader, move |reader| fetch(reader.conn()?, &sql))
            .await?
            .1
    }

    async fn execute(&self, sql: &Sql) -> Result<u64, StoreError> {
        let conn = self.clean_writer().await?;
        let sql = sql.clone();
        on_blocking_pool(conn, move |conn| execute(conn, &sql))
            .await?
            .1
    }

    async fn snapshot(&self) -> Result<Box<dyn Tx>, StoreError> {
        let reader = self.readers.take().await?;
        reader
            .conn()?
            .execute_batch("BEGIN")
            .map_err(sqlite_error)?;
        Ok(Box::new(SnapshotTx(Some(reader))))
    }

    async fn begin(&self) -> Result<Box<dyn Tx>, StoreError> {
        let conn = self.clean_writer().await?;
        // IMMEDIATE takes the write lock up front instead of upgrading
        // mid-batch. On the caller's thread, the writer's own
        // (`Engine::begin`): another process (e.g. `vault
        // rotate-master-key`) may hold the lock for up to the busy timeout.
        let begun = conn.execute_batch("BEGIN IMMEDIATE");
        let tx = WriteTx {
            conn: Some(conn),
            file: self.file.clone(),
        };
        begun.map_err(sqlite_error)?;
        Ok(Box::new(tx))
    }

    async fn close(&self) {
        self.readers.permits.close();
        self.readers
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// Runs a query on `conn` and reads its rows.
fn fetch(conn: &Connection, sql: &Sql) -> Result<Vec<Row>, StoreError> {
    let mut statement = prepare(conn, sql)?;
    let columns: Arc<[String]> = statement
        .column_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut rows = statement.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sqlite_error)? {
        let values = (0..columns.len())
            .map(|i| value(row.get_ref(i).map_err(sqlite_error)?))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Row::new(columns.clone(), values));
    }
    Ok(out)
}

/// Runs a statement on `conn` to its end (rows it returns, as a `PRAGMA`
/// does, are skipped); how many rows it changed.
fn execute(conn: &Connection, sql: &Sql) -> Result<u64, StoreError> {
    let mut statement = prepare(conn, sql)?;
    let mut rows = statement.raw_query();
    while rows.next().map_err(sqlite_error)?.is_some() {}
    Ok(conn.changes())
}

/// The statement, from the connection's cache, with its parameters bound.
/// `$n` names the n-th parameter wherever it appears (as sqlx binds it).
fn prepare<'c>(
    conn: &'c Connection,
    sql: &Sql,
) -> Result<rusqlite::CachedStatement<'c>, StoreError> {
    let mut statement = conn.prepare_cached(sql.text()).map_err(sqlite_error)?;
    let params = sql.params();
    let count = statement.parameter_count();
    if count > POSITIONS_CACHED_ABOVE {
        let positions = positions_of(&statement, sql.text())?;
        for (index, at) in (1..=count).zip(positions.iter()) {
            let value = params.get(*at).ok_or_else(|| {
                StoreError::Corrupt(format!("statement parameter ${} has no value", at + 1))
            })?;
            bind(&mut statement, index, value)?;
        }
        return Ok(statement);
    }
    for index in 1..=count {
        let at = position(&statement, index)?;
        let value = params.get(at).ok_or_else(|| {
            StoreError::Corrupt(format!("statement parameter ${} has no value", at + 1))
        })?;
        bind(&mut statement, index, value)?;
    }
    Ok(statement)
}

/// Statements with more parameters than this have their parameters'
/// positions cached by text ([`positions_of`]): SQLite finds a parameter's
/// name by a linear scan of the statement's parameters, so naming each of a
/// multi-row statement's thousands is quadratic (10 % of the server's CPU
/// under `register-64` with checks on, docs/BENCHMARKS.md).
const POSITIONS_CACHED_ABOVE: usize = 32;

/// Most statement texts whose parameter positions are kept (the multi-row
/// statements have a few texts each: their chunk sizes are powers of two).
const POSITIONS_KEPT: usize = 512;

/// The position in [`Sql::params`] of the statement's `index`-th parameter
/// (`$n` is position `n - 1`).
fn position(statement: &rusqlite::Statement<'_>, index: usize) -> Result<usize, StoreError> {
    let name = statement.parameter_name(index).unwrap_or("?");
    name.strip_prefix('$')
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| n.checked_sub(1))
        .ok_or_else(|| StoreError::Corrupt(format!("statement parameter {name:?} is not $n")))
}

/// The positions of every parameter of `statement` (prepared from `text`),
/// worked out once per text: the mapping depends on the text alone.
fn positions_of(
    statement: &rusqlite::Statement<'_>,
    text: &str,
) -> Result<Arc<[usize]>, StoreError> {
    static KNOWN: std::sync::LazyLock<SyncMutex<HashMap<String, Arc<[usize]>>>> =
        std::sync::LazyLock::new(Default::default);
    let known = |text: &str| {
        KNOWN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(text)
            .cloned()
    };
    if let Some(positions) = known(text) {
        return Ok(positions);
    }
    let positions: Arc<[usize]> = (1..=statement.parameter_count())
        .map(|index| position(statement, index))
        .collect::<Result<_, _>>()?;
    let mut map = KNOWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if map.len() >= POSITIONS_KEPT {
        map.clear();
    }
    map.insert(text.to_owned(), positions.clone());
    Ok(positions)
}

/// Binds one value in SQLite's storage classes (INTEGER, TEXT, BLOB, REAL).
fn bind(
    statement: &mut rusqlite::Statement<'_>,
    index: usize,
    value: &Value,
) -> Result<(), StoreError> {
    let bound = match value {
        Value::Int(n) => statement.raw_bind_parameter(index, n),
        Value::Bool(flag) => statement.raw_bind_parameter(index, flag.map(i64::from)),
        Value::Float(x) => statement.raw_bind_parameter(index, x),
        Value::Time(at) => statement.raw_bind_parameter(index, at.as_ref().map(format_timestamp)),
        Value::Date(day) => {
            statement.raw_bind_parameter(index, day.map(|d| d.format("%Y-%m-%d").to_string()))
        }
        Value::Text(text) | Value::Json(text) => statement.raw_bind_parameter(index, text),
        Value::Uuid(id) => statement.raw_bind_parameter(index, id.as_ref().map(|id| id.as_bytes())),
        Value::Blob(bytes) => statement.raw_bind_parameter(index, bytes),
    };
    bound.map_err(sqlite_error)
}

/// A column by its stored (not declared) type; TEXT that is not UTF-8 is corrupt.
fn value(raw: ValueRef<'_>) -> Result<Value, StoreError> {
    Ok(match raw {
        ValueRef::Null => Value::Text(None),
        ValueRef::Integer(n) => Value::Int(Some(n)),
        ValueRef::Real(x) => Value::Float(Some(x)),
        ValueRef::Text(text) => match std::str::from_utf8(text) {
            Ok(text) => Value::Text(Some(text.to_owned())),
            Err(e) => {
                return Err(StoreError::Corrupt(format!(
                    "stored text is not UTF-8: {e}"
                )))
            }
        },
        ValueRef::Blob(bytes) => Value::Blob(Some(bytes.to_vec())),
    })
}

/// A SQLite error as the store reports it: a full disk, an I/O error, a file
/// that cannot be opened or a lock another process held past the busy
/// timeout is `Unavailable` (503, retry later); anything else is `Sqlite`
/// (logged, 500).
fn sqlite_error(error: rusqlite::Error) -> StoreError {
    let cause = match &error {
        // Extended result codes: the primary code is the low byte.
        rusqlite::Error::SqliteFailure(failure, _) => match failure.extended_code & 0xff {
            13 => Some("the database's disk is full; writes resume when space is freed"),
            5 | 6 => Some("the database is locked by another process"),
            10 => Some("the database's disk reported an I/O error"),
            14 => Some("the database file cannot be opened"),
            _ => None,
        },
        _ => None,
    };
    match cause {
        Some(cause) => {
            tracing::warn!(%error, "database unavailable");
            StoreError::Unavailable(cause.to_owned())
        }
        None => StoreError::Sqlite(error),
    }
}

/// Creates the database file with mode 0600 before SQLite opens it, so neither
/// it nor its `-wal` and `-shm` files (which SQLite creates with the database
/// file's mode) are readable by other users. An existing file is left as it is,
/// with a warning when others may read it.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if let Ok(meta) = std::fs::metadata(path) {
                    if meta.permissions().mode() & 0o077 != 0 {
                        tracing::warn!(
                            file = %path.display(),
                            mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
                            "the database file is readable by other users; `chmod 600` it and its -wal and -shm files"
                        );
                    }
                }
            }
            Ok(())
        }
        // A missing directory: let SQLite report it the way it always does.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::Database(sqlx::Error::Io(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::SQLITE;

    async fn engine(dir: &tempfile::TempDir) -> SqliteEngine {
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        open(&url).await.unwrap()
    }

    #[tokio::test]
    async fn the_storage_relief_statement_runs_as_a_statement() {
        // It returns a row; the writer's retry after a full disk needs it to succeed.
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir).await;
        let relief = SQLITE.relieve_storage.expect("SQLite gives back storage");
        engine.execute(&Sql::new(relief)).await.unwrap();
    }

    #[tokio::test]
    async fn numbered_parameters_bind_by_number_wherever_they_appear() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir).await;
        let sql = Sql::new("SELECT $2 AS b, $1 AS a, $2 AS again")
            .arg(1i64)
            .arg("two");
        let row = engine.fetch_one(&sql).await.unwrap();
        assert_eq!(row.get::<String>("b").unwrap(), "two");
        assert_eq!(row.get::<i64>("a").unwrap(), 1);
        assert_eq!(row.get::<String>("again").unwrap(), "two");

        let unnumbered = Sql::new("SELECT ?");
        assert!(matches!(
            engine.fetch(&unnumbered).await,
            Err(StoreError::Corrupt(_))
        ));
        let zero = Sql::new("SELECT $0");
        assert!(matches!(
            engine.fetch(&zero).await,
            Err(StoreError::Corrupt(_))
        ));
    }

    #[tokio::test]
    async fn a_new_database_takes_the_page_size_and_an_older_one_keeps_its_own() {
        let page_size = |engine: SqliteEngine| async move {
            let row = engine
                .fetch_one(&Sql::new("SELECT page_size FROM pragma_page_size()"))
                .await
                .unwrap();
            row.get::<i64>("page_size").unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(page_size(engine(&dir).await).await, i64::from(PAGE_SIZE));

        // A database created with SQLite's default page size, before this
        // store chose one: opened, migrated and written as it is.
        let old = dir.path().join("old.db");
        let conn = Connection::open(&old).unwrap();
        conn.execute_batch(
            "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE t (x)",
        )
        .unwrap();
        drop(conn);
        let engine = open(&format!("sqlite://{}", old.display())).await.unwrap();
        engine
            .execute(&Sql::new("INSERT INTO t (x) VALUES (1)"))
            .await
            .unwrap();
        assert_eq!(page_size(engine).await, 4096);
    }

    #[tokio::test]
    async fn the_wal_is_checkpointed_into_the_database_file_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir).await;
        let size = || std::fs::metadata(dir.path().join("t.db")).unwrap().len();
        engine
            .execute(&Sql::new("CREATE TABLE pages (b BLOB)"))
            .await
            .unwrap();
        let before = size();
        // 2 MB in the WAL: past the 1,000 pages at which SQLite would
        // checkpoint inside a COMMIT on its own, which it no longer does.
        for _ in 0..500 {
            let insert = Sql::new("INSERT INTO pages (b) VALUES (randomblob(4000))");
            engine.execute(&insert).await.unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while size() < before + 1_000_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {} bytes",
                size()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn the_wal_starts_over_under_steady_writes() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir).await;
        let wal = || {
            std::fs::metadata(dir.path().join("t.db-wal"))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        engine
            .execute(&Sql::new("CREATE TABLE pages (b BLOB)"))
            .await
            .unwrap();
        // 96 MB of commits back to back: a WAL that never started over would
        // hold them all.
        let mut largest = 0;
        for i in 0..1_600 {
            let insert = Sql::new("INSERT INTO pages (b) VALUES (randomblob(60000))");
            engine.execute(&insert).await.unwrap();
            largest = largest.max(wal());
            if i % 20 == 0 {
                // At most ~120 MB/s where a commit's fsync is free (tmpfs):
                // the checkpoint thread looks every 200 ms.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        assert!(
            largest < WAL_SIZE_LIMIT as u64,
            "the WAL grew to {largest} bytes"
        );
    }

    // Two workers: the write blocks the one it runs on while it waits, as it
    // blocks the writer's own thread in the store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_waits_for_another_process_holding_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir).await;
        let other = Connection::open(dir.path().join("t.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let started = std::time::Instant::now();
        let write = tokio::spawn(async move {
            let mut tx = engine.begin().await?;
            tx.execute(&Sql::new(
                "UPDATE meta SET value = value WHERE key = 'revision'",
            ))
            .await?;
            tx.commit().await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!write.is_finished(), "the write did not wait for the lock");
        other.execute_batch("COMMIT").unwrap();
        write.await.unwrap().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn text_that_is_not_utf8_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir).await;
        let sql = Sql::new("SELECT CAST(x'ff' AS TEXT)");
        assert!(matches!(
            engine.fetch(&sql).await,
            Err(StoreError::Corrupt(_))
        ));
    }
}
