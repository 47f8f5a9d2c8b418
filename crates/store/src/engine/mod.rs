//! The two database engines behind one small interface: run a [`Sql`] and get
//! [`Row`]s, in or outside a transaction. Everything above this module is
//! written once for both. [`SqlxEngine`] is written once too; each database
//! adds only a [`Driver`]: how to open and migrate it, bind
//! [`crate::sql::Value`]s in its own encoding, read its rows back into them,
//! and begin its snapshot and write transactions.

mod postgres;
mod sqlite;

use crate::dialect::Dialect;
use crate::sql::{Row, Sql, Value};
use crate::StoreError;
use async_trait::async_trait;
use sqlx::query::Query;
use sqlx::{Column, Executor, IntoArguments, Pool, Transaction};
use std::sync::Arc;

/// A connection inside a transaction.
#[async_trait]
pub(crate) trait Tx: Send {
    /// Runs a query and returns its rows.
    async fn fetch(&mut self, sql: &Sql) -> Result<Vec<Row>, StoreError>;
    /// Runs a statement and returns how many rows it changed.
    async fn execute(&mut self, sql: &Sql) -> Result<u64, StoreError>;
    /// Commits durably (a dropped transaction rolls back).
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
    /// Runs a statement on the write connection, in its own transaction.
    async fn execute(&self, sql: &Sql) -> Result<u64, StoreError>;
    /// A read-only transaction that sees one snapshot throughout.
    async fn snapshot(&self) -> Result<Box<dyn Tx>, StoreError>;
    /// A write transaction holding the database's write lock from its start
    /// (SQLite `BEGIN IMMEDIATE`; on PostgreSQL the writer locks `meta.revision`).
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
    /// Begins a read-only transaction with one snapshot.
    async fn begin_snapshot(pool: &Pool<Self>) -> Result<Transaction<'static, Self>, StoreError>;
    /// Begins a write transaction.
    async fn begin_write(pool: &Pool<Self>) -> Result<Transaction<'static, Self>, StoreError>;
}

/// An engine over sqlx pools: readers, and the writer's connection(s).
pub(crate) struct SqlxEngine<DB: Driver> {
    read: Pool<DB>,
    write: Pool<DB>,
    durability: String,
}

/// Runs a query on `conn` and reads its rows.
async fn fetch<DB: Driver>(conn: &mut DB::Connection, sql: &Sql) -> Result<Vec<Row>, StoreError>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    read_rows(DB::query(sql).fetch_all(conn).await?, DB::value)
}

/// Runs a statement on `conn`; how many rows it changed.
async fn execute<DB: Driver>(conn: &mut DB::Connection, sql: &Sql) -> Result<u64, StoreError>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    Ok(DB::rows_affected(&DB::query(sql).execute(conn).await?))
}

struct SqlxTx<DB: Driver>(Transaction<'static, DB>);

#[async_trait]
impl<DB: Driver> Tx for SqlxTx<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    async fn fetch(&mut self, sql: &Sql) -> Result<Vec<Row>, StoreError> {
        fetch::<DB>(&mut self.0, sql).await
    }

    async fn execute(&mut self, sql: &Sql) -> Result<u64, StoreError> {
        execute::<DB>(&mut self.0, sql).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(self.0.commit().await?)
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
        fetch::<DB>(&mut *self.read.acquire().await?, sql).await
    }

    async fn execute(&self, sql: &Sql) -> Result<u64, StoreError> {
        execute::<DB>(&mut *self.write.acquire().await?, sql).await
    }

    async fn snapshot(&self) -> Result<Box<dyn Tx>, StoreError> {
        Ok(Box::new(SqlxTx(DB::begin_snapshot(&self.read).await?)))
    }

    async fn begin(&self) -> Result<Box<dyn Tx>, StoreError> {
        Ok(Box::new(SqlxTx(DB::begin_write(&self.write).await?)))
    }

    async fn close(&self) {
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
