//! The two database engines behind one small interface: run a [`Sql`] and get
//! [`Row`]s, in or outside a transaction. Everything above this module is
//! written once for both. SQLite runs on rusqlite on the calling thread
//! (`sqlite.rs`); PostgreSQL on sqlx through [`SqlxEngine`], which a sqlx
//! database joins by adding a [`Driver`]: how to open and migrate it, bind
//! [`crate::sql::Value`]s in its own encoding, read its rows back into them,
//! and begin its snapshot and write transactions.

mod postgres;
mod sqlite;
mod sqlite_checkpoint;

use crate::dialect::Dialect;
use crate::sql::{Row, Sql, Value};
use crate::StoreError;
use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::{Column, Connection, Executor, IntoArguments, Pool};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A connection inside a transaction.
#[async_trait]
pub(crate) trait Tx: Send {
    /// Runs a query and returns its rows.
    async fn fetch(&mut self, sql: &Sql) -> Result<Vec<Row>, StoreError>;
    /// Runs a statement and returns how many rows it changed.
    async fn execute(&mut self, sql: &Sql) -> Result<u64, StoreError>;
    /// Commits durably (a transaction dropped without commit rolls back).
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;

    /// The first row, if any.
    async fn fetch_optional(&mut self, sql: &Sql) -> Result<Option<Row>, StoreError> {
        Ok(self.fetch(sql).await?.into_iter().next())
    }

    /// The first row; `Corrupt` when there is none.
    async fn fetch_one(&mut self, sql: &Sql) -> Result<Row, StoreError> {
        one(self.fetch(sql).await?, sql)
    }
}

/// One database: a pool of readers and the write connection.
#[async_trait]
pub(crate) trait Engine: Send + Sync + 'static {
    /// The SQL differences of this database.
    fn dialect(&self) -> &'static Dialect;
    /// The durability mode in force, read from the database at open.
    fn durability(&self) -> &str;
    /// Runs a query on a reader, outside a transaction.
    async fn fetch(&self, sql: &Sql) -> Result<Vec<Row>, StoreError>;
    /// Runs a query that may read many rows (an aggregate, an unindexed
    /// filter) on a reader: an engine that runs reads on the async worker
    /// runs this one off it.
    async fn scan(&self, sql: &Sql) -> Result<Vec<Row>, StoreError> {
        self.fetch(sql).await
    }
    /// Runs a statement on the write connection, in its own transaction.
    async fn execute(&self, sql: &Sql) -> Result<u64, StoreError>;
    /// A read-only transaction that sees one snapshot throughout.
    async fn snapshot(&self) -> Result<Box<dyn Tx>, StoreError>;
    /// A write transaction holding the database's write lock from its start
    /// (SQLite `BEGIN IMMEDIATE`; on PostgreSQL the writer locks `meta.revision`).
    /// Called by the writer only, on its own thread: SQLite's start, statements
    /// and commit block that thread; PostgreSQL's connection is served by it.
    async fn begin(&self) -> Result<Box<dyn Tx>, StoreError>;
    /// Closes the pools.
    async fn close(&self);

    /// The first row, if any.
    async fn fetch_optional(&self, sql: &Sql) -> Result<Option<Row>, StoreError> {
        Ok(self.fetch(sql).await?.into_iter().next())
    }

    /// The first row; `Corrupt` when there is none.
    async fn fetch_one(&self, sql: &Sql) -> Result<Row, StoreError> {
        one(self.fetch(sql).await?, sql)
    }
}

/// Opens the database named by `url` (`sqlite:…` or `postgres://…`), migrated.
pub(crate) async fn open(url: &str) -> Result<Arc<dyn Engine>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(crate::redact_url(url)))
    }
}

/// What one database adds to [`SqlxEngine`].
#[async_trait]
pub(crate) trait Driver: sqlx::Database {
    /// Its SQL differences.
    const DIALECT: &'static Dialect;
    /// The statement with its parameters bound in this database's encoding.
    fn query(sql: &Sql) -> Query<'_, Self, <Self as sqlx::Database>::Arguments<'_>>;
    /// Column `index` of a row, by its type.
    fn value(row: &Self::Row, index: usize) -> Result<Value, StoreError>;
    /// How many rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;
    /// The statement that begins a read-only transaction with one snapshot.
    const BEGIN_SNAPSHOT: &'static str;
    /// The statement that begins a write transaction.
    const BEGIN_WRITE: &'static str;
    /// Why an error with this database error code means the database cannot
    /// be reached or written now (a sanitised cause), or `None`.
    fn unavailable(code: &str) -> Option<&'static str>;
}

/// An engine over sqlx pools: readers, and the writer's connection(s).
pub(crate) struct SqlxEngine<DB: Driver> {
    read: Pool<DB>,
    write: Pool<DB>,
    /// The write transactions' connection between two of them (see [`Kept`]).
    kept: Kept<DB>,
    durability: String,
}

impl<DB: Driver> SqlxEngine<DB> {
    /// An engine over a reader pool and a write pool.
    fn new(read: Pool<DB>, write: Pool<DB>, durability: String) -> SqlxEngine<DB> {
        SqlxEngine {
            read,
            write,
            kept: Kept(Arc::default()),
            durability,
        }
    }
}

/// The write transactions' own connection, outside the pool: opened by the
/// first write transaction and kept after each commit for the next. The
/// writer's group commits make some ten round trips each, one after the
/// other, and
/// - a pooled connection costs two more: the pool tests it with a round trip
///   when it is released and again when it is acquired;
/// - a connection opened on the writer's thread is served by that thread's
///   own runtime, so an answer wakes the writer at once instead of waiting
///   for a busy request runtime to poll its sockets.
struct Kept<DB: Driver>(Arc<Mutex<Option<DB::Connection>>>);

impl<DB: Driver> Clone for Kept<DB> {
    fn clone(&self) -> Self {
        Kept(self.0.clone())
    }
}

impl<DB: Driver> Kept<DB> {
    fn slot(&self) -> MutexGuard<'_, Option<DB::Connection>> {
        // Only ever a take or a put: a poisoned lock holds a consistent value.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> Option<DB::Connection> {
        self.slot().take()
    }

    fn put(&self, conn: DB::Connection) {
        *self.slot() = Some(conn);
    }
}

/// How long the writer waits before connecting again to a database that
/// refused or is starting up (within the pool's acquire timeout).
const RECONNECT_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// A transaction's connection: from a pool, or the writer's own.
enum Held<DB: Driver> {
    Pooled(PoolConnection<DB>),
    Own(DB::Connection, Kept<DB>),
}

/// Runs a query on `conn` and reads its rows.
async fn fetch<DB: Driver>(conn: &mut DB::Connection, sql: &Sql) -> Result<Vec<Row>, StoreError>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    let rows = DB::query(sql)
        .fetch_all(conn)
        .await
        .map_err(database_error::<DB>)?;
    read_rows(rows, DB::value)
}

/// Runs a statement on `conn`; how many rows it changed.
async fn execute<DB: Driver>(conn: &mut DB::Connection, sql: &Sql) -> Result<u64, StoreError>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    let done = DB::query(sql)
        .execute(conn)
        .await
        .map_err(database_error::<DB>)?;
    Ok(DB::rows_affected(&done))
}

/// A transaction on a connection it owns, pooled or the writer's own. It
/// returns the connection to the pool (or keeps it for the writer) only after
/// a successful `COMMIT`; a transaction dropped otherwise (rolled back,
/// failed, or its commit failed, e.g. on a full disk) closes its connection
/// instead, so no connection left inside a transaction is used again and the
/// next transaction starts clean.
struct SqlxTx<DB: Driver> {
    conn: Option<Held<DB>>,
}

impl<DB: Driver> SqlxTx<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    async fn begin(pool: &Pool<DB>, begin: &'static str) -> Result<Self, StoreError> {
        Self::begin_on(Held::Pooled(acquire(pool).await?), begin).await
    }

    async fn begin_on(conn: Held<DB>, begin: &'static str) -> Result<Self, StoreError> {
        let mut tx = SqlxTx { conn: Some(conn) };
        execute::<DB>(tx.conn()?, &Sql::new(begin)).await?;
        Ok(tx)
    }

    /// A write transaction on the kept connection, or on a new one when none
    /// is kept or the kept one fails to begin (the database restarted since;
    /// nothing was sent in the transaction, so beginning again is safe). All
    /// within the pool's acquire timeout, as a pooled connection would be: a
    /// connection that died without a word (a partition, a dropped flow)
    /// answers nothing, and a database that refuses or is starting up is
    /// tried again until then.
    async fn begin_kept(
        pool: &Pool<DB>,
        kept: &Kept<DB>,
        begin: &'static str,
    ) -> Result<Self, StoreError> {
        let deadline = tokio::time::Instant::now() + pool.options().get_acquire_timeout();
        let timed_out = || database_error::<DB>(sqlx::Error::PoolTimedOut);
        if let Some(conn) = kept.take() {
            let begun = Self::begin_on(Held::Own(conn, kept.clone()), begin);
            match tokio::time::timeout_at(deadline, begun).await {
                // Dropped: closed with its transaction.
                Ok(Err(StoreError::Unavailable(_))) | Err(_) => {}
                Ok(begun) => return begun,
            }
        }
        let options = pool.connect_options();
        let conn = loop {
            let connect = DB::Connection::connect_with(&options);
            match tokio::time::timeout_at(deadline, connect).await {
                Ok(Ok(conn)) => break conn,
                Ok(Err(error))
                    if unavailable_cause::<DB>(&error).is_some()
                        && tokio::time::Instant::now() + RECONNECT_PAUSE < deadline =>
                {
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
                Ok(Err(error)) => return Err(database_error::<DB>(error)),
                Err(_) => return Err(timed_out()),
            }
        };
        let begun = Self::begin_on(Held::Own(conn, kept.clone()), begin);
        tokio::time::timeout_at(deadline, begun)
            .await
            .unwrap_or_else(|_| Err(timed_out()))
    }

    fn conn(&mut self) -> Result<&mut DB::Connection, StoreError> {
        match self.conn.as_mut() {
            Some(Held::Pooled(conn)) => Ok(&mut **conn),
            Some(Held::Own(conn, _)) => Ok(conn),
            None => Err(StoreError::Closed),
        }
    }
}

impl<DB: Driver> Drop for SqlxTx<DB> {
    fn drop(&mut self) {
        // Closed, neither returned nor kept: the database rolls back what
        // was open.
        match self.conn.take() {
            Some(Held::Pooled(conn)) => drop(conn.detach()),
            Some(Held::Own(conn, _)) => drop(conn),
            None => {}
        }
    }
}

#[async_trait]
impl<DB: Driver> Tx for SqlxTx<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    async fn fetch(&mut self, sql: &Sql) -> Result<Vec<Row>, StoreError> {
        fetch::<DB>(self.conn()?, sql).await
    }

    async fn execute(&mut self, sql: &Sql) -> Result<u64, StoreError> {
        execute::<DB>(self.conn()?, sql).await
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        execute::<DB>(self.conn()?, &Sql::new("COMMIT")).await?;
        // Committed: the connection goes back to the pool, or is kept.
        if let Some(Held::Own(conn, kept)) = self.conn.take() {
            kept.put(conn);
        }
        Ok(())
    }
}

/// A pooled connection, or `Unavailable` once the pool's acquire timeout passes.
async fn acquire<DB: Driver>(pool: &Pool<DB>) -> Result<PoolConnection<DB>, StoreError> {
    pool.acquire().await.map_err(database_error::<DB>)
}

/// Why `error` means the database cannot be reached or written now (a
/// sanitised cause), or `None`.
fn unavailable_cause<DB: Driver>(error: &sqlx::Error) -> Option<&'static str> {
    match error {
        sqlx::Error::PoolTimedOut => Some("no connection to the database within the timeout"),
        sqlx::Error::Io(_) => Some("the connection to the database failed"),
        sqlx::Error::Tls(_) => Some("the TLS connection to the database failed"),
        sqlx::Error::WorkerCrashed => Some("the database connection's worker stopped"),
        sqlx::Error::Database(db) => db.code().and_then(|code| DB::unavailable(&code)),
        _ => None,
    }
}

/// A database error as the store reports it: failing to reach or write the
/// database is `Unavailable` (the API answers 503, retry later); anything
/// else is `Database` (logged, 500).
fn database_error<DB: Driver>(error: sqlx::Error) -> StoreError {
    match unavailable_cause::<DB>(&error) {
        Some(cause) => {
            tracing::warn!(%error, "database unavailable");
            StoreError::Unavailable(cause.to_owned())
        }
        None => StoreError::Database(error),
    }
}

#[async_trait]
impl<DB: Driver> Engine for SqlxEngine<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    fn dialect(&self) -> &'static Dialect {
        DB::DIALECT
    }

    fn durability(&self) -> &str {
        &self.durability
    }

    async fn fetch(&self, sql: &Sql) -> Result<Vec<Row>, StoreError> {
        fetch::<DB>(&mut *acquire(&self.read).await?, sql).await
    }

    async fn execute(&self, sql: &Sql) -> Result<u64, StoreError> {
        execute::<DB>(&mut *acquire(&self.write).await?, sql).await
    }

    async fn snapshot(&self) -> Result<Box<dyn Tx>, StoreError> {
        Ok(Box::new(
            SqlxTx::begin(&self.read, DB::BEGIN_SNAPSHOT).await?,
        ))
    }

    async fn begin(&self) -> Result<Box<dyn Tx>, StoreError> {
        Ok(Box::new(
            SqlxTx::begin_kept(&self.write, &self.kept, DB::BEGIN_WRITE).await?,
        ))
    }

    async fn close(&self) {
        // Dropped, not closed with a goodbye: it belongs to the writer's
        // runtime, which has ended by now.
        drop(self.kept.take());
        self.read.close().await;
        self.write.close().await;
    }
}

/// Reads sqlx rows into [`Row`]s, each column with `value`.
fn read_rows<R: sqlx::Row>(
    rows: Vec<R>,
    value: fn(&R, usize) -> Result<Value, StoreError>,
) -> Result<Vec<Row>, StoreError> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let columns: Arc<[String]> = first
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    rows.iter()
        .map(|row| {
            let values = (0..row.len())
                .map(|i| value(row, i))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Row::new(columns.clone(), values))
        })
        .collect()
}

fn one(rows: Vec<Row>, sql: &Sql) -> Result<Row, StoreError> {
    rows.into_iter().next().ok_or_else(|| {
        let mut text = sql.text().to_owned();
        text.truncate(120);
        StoreError::Corrupt(format!("no row from {text:?}"))
    })
}
