//! SQLite through sqlx: one WAL database file with `synchronous=FULL`, one
//! write connection (the group-commit writer's) and a few read-only readers.
//! UUIDs are stored as 16-byte BLOBs, times as fixed-width RFC 3339 text (so
//! text order is time order), JSON as text.

use super::{Driver, SqlxEngine};
use crate::dialect::{Dialect, SQLITE};
use crate::sql::{Sql, Value};
use crate::StoreError;
use async_trait::async_trait;
use fleetreg_model::format_timestamp;
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row as _, Sqlite, TypeInfo, ValueRef};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

const READERS: u32 = 4;

/// Opens (creating if missing) the database at `url` and migrates it.
pub(super) async fn open(url: &str) -> Result<SqlxEngine<Sqlite>, StoreError> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    if !url.contains(":memory:") && !url.contains("mode=memory") {
        create_private(options.get_filename())?;
    }
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(60))
        .connect_with(options.clone())
        .await?;
    sqlx::migrate!("./migrations/sqlite").run(&write).await?;
    let read = SqlitePoolOptions::new()
        .max_connections(READERS)
        .connect_with(options.read_only(true))
        .await?;
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&write)
        .await?;
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&write)
        .await?;
    let synchronous = match synchronous {
        0 => "OFF",
        1 => "NORMAL",
        2 => "FULL",
        3 => "EXTRA",
        _ => "UNKNOWN",
    };
    Ok(SqlxEngine {
        read,
        write,
        durability: format!("sqlite journal_mode={journal} synchronous={synchronous}"),
    })
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

#[async_trait]
impl Driver for Sqlite {
    const DIALECT: &'static Dialect = &SQLITE;

    fn query(sql: &Sql) -> Query<'_, Self, <Self as sqlx::Database>::Arguments<'_>> {
        let mut query = sqlx::query(sql.text());
        for value in sql.params() {
            // SQLite's storage classes: INTEGER, TEXT, BLOB, REAL.
            query = match value {
                Value::Int(n) => query.bind(*n),
                Value::Bool(flag) => query.bind(flag.map(i64::from)),
                Value::Float(x) => query.bind(*x),
                Value::Time(at) => query.bind(at.as_ref().map(format_timestamp)),
                Value::Text(text) | Value::Json(text) => query.bind(text.clone()),
                Value::Uuid(id) => query.bind(id.map(|id| id.as_bytes().to_vec())),
                Value::Blob(bytes) => query.bind(bytes.clone()),
            };
        }
        query
    }

    /// A column by its stored (not declared) type.
    fn value(row: &SqliteRow, i: usize) -> Result<Value, StoreError> {
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            return Ok(Value::Text(None));
        }
        let kind = raw.type_info().name().to_owned();
        Ok(match kind.as_str() {
            "INTEGER" | "BOOLEAN" => Value::Int(Some(row.try_get_unchecked(i)?)),
            "REAL" => Value::Float(Some(row.try_get_unchecked(i)?)),
            "BLOB" => Value::Blob(Some(row.try_get_unchecked(i)?)),
            _ => Value::Text(Some(row.try_get_unchecked(i)?)),
        })
    }

    fn rows_affected(result: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    // In WAL mode a read transaction sees one snapshot from its first read.
    const BEGIN_SNAPSHOT: &'static str = "BEGIN";
    // IMMEDIATE takes the write lock up front instead of upgrading mid-batch.
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";

    fn unavailable(code: &str) -> Option<&'static str> {
        // Extended result codes: the primary code is the low byte.
        match code.parse::<i64>().ok()? & 0xff {
            13 => Some("the database's disk is full; writes resume when space is freed"),
            10 => Some("the database's disk reported an I/O error"),
            14 => Some("the database file cannot be opened"),
            _ => None,
        }
    }
}
