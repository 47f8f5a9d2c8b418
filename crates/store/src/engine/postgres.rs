//! PostgreSQL through sqlx: a pool of readers, a small write pool (migrations,
//! lone write statements), and the group-commit writer's own connection
//! (`Kept` in `engine/mod.rs`), whose timeouts are the write pool's. Values
//! are bound with their native types (UUID, TIMESTAMPTZ, JSONB); snapshots
//! are `REPEATABLE READ, READ ONLY`.

use super::{Driver, SqlxEngine};
use crate::dialect::{Dialect, POSTGRES};
use crate::sql::{Sql, Value};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgConnectOptions, PgPoolOptions, PgRow, PgTypeInfo};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{Postgres, Row as _, TypeInfo, ValueRef};
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

/// How long a request waits for a connection before the store answers
/// `Unavailable` (the API: 503 with `Retry-After`), so an outage fails fast
/// instead of hanging requests.
const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(900);

/// Connects to `url` and migrates the database.
pub(super) async fn open(url: &str) -> Result<SqlxEngine<Postgres>, StoreError> {
    let options = PgConnectOptions::from_str(url)?;
    let write = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.clone())
        .await?;
    sqlx::migrate!("./migrations/postgres").run(&write).await?;
    let read = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await?;
    let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&write)
        .await?;
    let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&write).await?;
    Ok(SqlxEngine::new(
        read,
        write,
        format!("postgres synchronous_commit={synchronous_commit} fsync={fsync}"),
    ))
}

/// JSON text bound as JSONB (binary format: version byte 1, then the text).
struct JsonbText(String);

impl sqlx::Type<Postgres> for JsonbText {
    fn type_info() -> PgTypeInfo {
        <Json<()> as sqlx::Type<Postgres>>::type_info()
    }
}

impl sqlx::Encode<'_, Postgres> for JsonbText {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.push(1);
        buf.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

#[async_trait]
impl Driver for Postgres {
    const DIALECT: &'static Dialect = &POSTGRES;

    fn query(sql: &Sql) -> Query<'_, Self, <Self as sqlx::Database>::Arguments<'_>> {
        // An unnamed statement is planned at every execution with its values.
        let mut query = sqlx::query(sql.text()).persistent(!sql.is_planned_each_time());
        for param in sql.params() {
            // Native types: the column types of the migrations.
            query = match param {
                Value::Json(document) => query.bind(document.clone().map(JsonbText)),
                Value::Time(instant) => query.bind(*instant), // TIMESTAMPTZ
                Value::Date(day) => query.bind(*day),         // DATE
                Value::Uuid(uuid) => query.bind(*uuid),
                Value::Int(int8) => query.bind(*int8),
                Value::Bool(boolean) => query.bind(*boolean),
                Value::Text(text) => query.bind(text.clone()),
                Value::Float(float8) => query.bind(*float8),
                Value::Blob(bytea) => query.bind(bytea.clone()),
            };
        }
        query
    }

    /// A column by its declared type.
    fn value(row: &PgRow, i: usize) -> Result<Value, StoreError> {
        let raw = row.try_get_raw(i)?;
        let kind = raw.type_info().name().to_owned();
        let null = raw.is_null();
        let value = match kind.as_str() {
            "INT8" => Value::Int(row.try_get(i)?),
            "INT4" => Value::Int(row.try_get::<Option<i32>, _>(i)?.map(i64::from)),
            "INT2" => Value::Int(row.try_get::<Option<i16>, _>(i)?.map(i64::from)),
            "BOOL" => Value::Bool(row.try_get(i)?),
            "UUID" => Value::Uuid(row.try_get::<Option<Uuid>, _>(i)?),
            "TIMESTAMPTZ" => Value::Time(row.try_get::<Option<DateTime<Utc>>, _>(i)?),
            "DATE" => Value::Date(row.try_get::<Option<chrono::NaiveDate>, _>(i)?),
            "JSONB" | "JSON" => Value::Json(
                row.try_get::<Option<Json<Box<serde_json::value::RawValue>>>, _>(i)?
                    .map(|json| json.0.get().to_owned()),
            ),
            "FLOAT8" => Value::Float(row.try_get(i)?),
            "BYTEA" => Value::Blob(row.try_get(i)?),
            _ if null => Value::Text(None),
            _ => Value::Text(Some(row.try_get(i)?)),
        };
        Ok(value)
    }

    fn rows_affected(result: &sqlx::postgres::PgQueryResult) -> u64 {
        result.rows_affected()
    }

    const BEGIN_SNAPSHOT: &'static str =
        "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY";
    // The writer serialises batches by locking `meta.revision`.
    const BEGIN_WRITE: &'static str = "BEGIN";

    fn unavailable(code: &str) -> Option<&'static str> {
        match code {
            "53100" => Some("the database's disk is full"),
            "57P01" | "57P02" | "57P03" => Some("the database is shutting down or starting up"),
            code if code.starts_with("08") => Some("the connection to the database failed"),
            code if code.starts_with("53") => Some("the database is out of resources"),
            _ => None,
        }
    }
}
