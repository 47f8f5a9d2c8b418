//! The engine-neutral statement and row types every store method is written
//! against: [`Sql`] (text with numbered placeholders plus typed parameters),
//! [`Value`] (one parameter or column value, typed even when NULL) and [`Row`]
//! (a result row read by column name). The engines (`engine/`) only bind
//! values and turn their rows into these.

use crate::StoreError;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use std::sync::Arc;
use uuid::Uuid;

/// One parameter or column value. Each variant carries its type, also when
/// NULL, because PostgreSQL needs a type for every parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// An integer (SQLite INTEGER; PostgreSQL INT2/4/8).
    Int(Option<i64>),
    /// A boolean (SQLite stores 0/1).
    Bool(Option<bool>),
    /// Text.
    Text(Option<String>),
    /// A UUID (SQLite: 16-byte BLOB; PostgreSQL: UUID).
    Uuid(Option<Uuid>),
    /// A UTC instant (SQLite: fixed-width RFC 3339 text, so text order is time
    /// order; PostgreSQL: TIMESTAMPTZ).
    Time(Option<DateTime<Utc>>),
    /// A calendar date (SQLite: `YYYY-MM-DD` text, so text order is date
    /// order; PostgreSQL: DATE).
    Date(Option<NaiveDate>),
    /// A JSON document as text (SQLite: TEXT; PostgreSQL: JSONB).
    Json(Option<String>),
    /// Raw bytes, as SQLite returns BLOB columns.
    Blob(Option<Vec<u8>>),
    /// A floating-point number (only ever read, e.g. from an aggregate).
    Float(Option<f64>),
}

impl Value {
    fn is_null(&self) -> bool {
        match self {
            Value::Int(v) => v.is_none(),
            Value::Bool(v) => v.is_none(),
            Value::Text(v) | Value::Json(v) => v.is_none(),
            Value::Uuid(v) => v.is_none(),
            Value::Time(v) => v.is_none(),
            Value::Date(v) => v.is_none(),
            Value::Blob(v) => v.is_none(),
            Value::Float(v) => v.is_none(),
        }
    }

    /// A JSON parameter holding `value`.
    pub(crate) fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Value, StoreError> {
        serde_json::to_string(value)
            .map(|text| Value::Json(Some(text)))
            .map_err(|e| StoreError::Corrupt(format!("cannot encode JSON: {e}")))
    }
}

macro_rules! value_from {
    ($($t:ty => $variant:ident $(via $conv:expr)?),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant(Some(value_from!(@conv v $(, $conv)?)))
            }
        }
        impl From<Option<$t>> for Value {
            fn from(v: Option<$t>) -> Value {
                Value::$variant(v.map(|v| value_from!(@conv v $(, $conv)?)))
            }
        }
    )*};
    (@conv $v:ident) => { $v };
    (@conv $v:ident, $conv:expr) => { $conv($v) };
}

value_from! {
    i64 => Int,
    i32 => Int via i64::from,
    bool => Bool,
    String => Text,
    &str => Text via str::to_owned,
    &String => Text via String::clone,
    Uuid => Uuid,
    DateTime<Utc> => Time,
    NaiveDate => Date,
}

impl From<&Option<String>> for Value {
    fn from(v: &Option<String>) -> Value {
        Value::Text(v.clone())
    }
}

/// A statement: SQL text with `$1`, `$2`, … placeholders (both engines read
/// them) and the parameters in that order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sql {
    text: String,
    params: Vec<Value>,
    planned_each_time: bool,
}

impl Sql {
    /// A statement starting with `text` (which may already hold `$n`
    /// placeholders; give their values with [`Sql::arg`]).
    pub(crate) fn new(text: impl Into<String>) -> Sql {
        Sql {
            text: text.into(),
            params: Vec::new(),
            planned_each_time: false,
        }
    }

    /// Asks the engine to plan the statement at every execution, with its
    /// values, instead of once per connection: for a lookup whose best plan
    /// depends on how big the table is now (PostgreSQL: a generic plan made
    /// while a fresh table was small scans it sequentially long after it
    /// grew, until `ANALYZE` runs; SQLite makes no generic plans).
    pub(crate) fn planned_each_time(&mut self) -> &mut Sql {
        self.planned_each_time = true;
        self
    }

    /// Whether [`Sql::planned_each_time`] was asked for.
    pub(crate) fn is_planned_each_time(&self) -> bool {
        self.planned_each_time
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `value`.
    pub(crate) fn bind(&mut self, value: impl Into<Value>) -> &mut Sql {
        self.params.push(value.into());
        self.text.push('$');
        self.text.push_str(&self.params.len().to_string());
        self
    }

    /// Appends `(v1, v2, …)` with one placeholder per value.
    pub(crate) fn bind_tuple(&mut self, values: impl IntoIterator<Item = Value>) -> &mut Sql {
        self.text.push('(');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(value);
        }
        self.text.push(')');
        self
    }

    /// Gives the value of the next placeholder already written in the text.
    pub(crate) fn arg(mut self, value: impl Into<Value>) -> Sql {
        self.params.push(value.into());
        self
    }

    /// The SQL text.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The parameters, in placeholder order.
    pub(crate) fn params(&self) -> &[Value] {
        &self.params
    }
}

/// One result row: values by position, names shared by the rows of a result.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    /// A row of `values` under `columns`.
    pub(crate) fn new(columns: Arc<[String]>, values: Vec<Value>) -> Row {
        Row { columns, values }
    }

    fn value(&self, column: &str) -> Result<&Value, StoreError> {
        self.columns
            .iter()
            .position(|c| c == column)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| StoreError::Corrupt(format!("no column {column:?} in the result")))
    }

    /// The value of `column` as `T`.
    pub(crate) fn get<T: FromValue>(&self, column: &str) -> Result<T, StoreError> {
        T::from_value(self.value(column)?).map_err(|e| e.at(column))
    }

    /// The value at position `index` as `T`.
    pub(crate) fn get_at<T: FromValue>(&self, index: usize) -> Result<T, StoreError> {
        let value = self
            .values
            .get(index)
            .ok_or_else(|| StoreError::Corrupt(format!("no column {index} in the result")))?;
        T::from_value(value).map_err(|e| e.at(&index.to_string()))
    }

    /// The JSON document in `column`, decoded.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        column: &str,
    ) -> Result<T, StoreError> {
        self.json_opt(column)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {column:?} is NULL")))
    }

    /// The JSON document in `column`, decoded; `None` when NULL.
    pub(crate) fn json_opt<T: serde::de::DeserializeOwned>(
        &self,
        column: &str,
    ) -> Result<Option<T>, StoreError> {
        let text: Option<String> = match self.value(column)? {
            Value::Json(text) | Value::Text(text) => text.clone(),
            other if other.is_null() => None,
            other => return Err(Mismatch::new("JSON", other).at(column)),
        };
        text.map(|text| {
            serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("column {column:?} holds bad JSON: {e}")))
        })
        .transpose()
    }
}

/// A value that is not of the type asked for.
#[derive(Debug)]
pub(crate) struct Mismatch {
    wanted: &'static str,
    found: String,
}

impl Mismatch {
    fn new(wanted: &'static str, found: &Value) -> Mismatch {
        let mut found = format!("{found:?}");
        found.truncate(80);
        Mismatch { wanted, found }
    }

    fn at(self, column: &str) -> StoreError {
        StoreError::Corrupt(format!(
            "column {column:?}: expected {}, found {}",
            self.wanted, self.found
        ))
    }
}

/// Types a [`Value`] converts into (reading a row).
pub(crate) trait FromValue: Sized {
    /// Converts, failing on NULL or another type.
    fn from_value(value: &Value) -> Result<Self, Mismatch>;
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, Mismatch> {
        if value.is_null() {
            Ok(None)
        } else {
            T::from_value(value).map(Some)
        }
    }
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self, Mismatch> {
        match value {
            Value::Int(Some(v)) => Ok(*v),
            Value::Bool(Some(v)) => Ok(i64::from(*v)),
            other => Err(Mismatch::new("an integer", other)),
        }
    }
}

impl FromValue for i32 {
    fn from_value(value: &Value) -> Result<Self, Mismatch> {
        let wide = i64::from_value(value)?;
        i32::try_from(wide).map_err(|_| Mismatch::new("a 32-bit integer", value))
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, Mismatch> {
        match value {
            Value::Bool(Some(v)) => Ok(*v),
            Value::Int(Some(v)) => Ok(*v != 0),
            other => Err(Mismatch::new("a boolean", other)),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, Mismatch> {
        match value {
            Value::Text(Some(v)) | Value::Json(Some(v)) => Ok(v.clone()),
            other => Err(Mismatch::new("text", other)),
        }
    }
}

impl FromValue for Uuid {
    fn from_value(value: &Value) -> Result<Self, Mismatch> {
        match value {
            Value::Uuid(Some(v)) => Ok(*v),
            Value::Blob(Some(bytes)) => {
                Uuid::from_slice(bytes).map_err(|_| Mismatch::new("a UUID", value))
            }
            Value::Text(Some(text)) => {
                Uuid::parse_str(text).map_err(|_| Mismatch::new("a UUID", value))
            }
            other => Err(Mismatch::new("a UUID", other)),
        }
    }
}

impl FromValue for DateTime<Utc> {
    fn from_value(value: &Value) -> Result<Self, Mismatch> {
        match value {
            Value::Time(Some(v)) => Ok(*v),
            Value::Text(Some(text)) => {
                parse_time(text).ok_or_else(|| Mismatch::new("a time", value))
            }
            other => Err(Mismatch::new("a time", other)),
        }
    }
}

impl FromValue for NaiveDate {
    fn from_value(value: &Value) -> Result<Self, Mismatch> {
        match value {
            Value::Date(Some(v)) => Ok(*v),
            Value::Text(Some(text)) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| Mismatch::new("a date", value)),
            other => Err(Mismatch::new("a date", other)),
        }
    }
}

/// Reads a timestamp stored as text: RFC 3339, or SQLite's `YYYY-MM-DD HH:MM:SS[.f]` (UTC).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut sql = Sql::new("SELECT 1 WHERE a = ");
        sql.bind(1_i64)
            .push(" AND b IN ")
            .bind_tuple([Value::from("x"), Value::from(Some(true))]);
        assert_eq!(sql.text(), "SELECT 1 WHERE a = $1 AND b IN ($2, $3)");
        assert_eq!(sql.params().len(), 3);
    }

    #[test]
    fn rows_convert_by_name_and_refuse_other_types() {
        let columns: Arc<[String]> = vec!["n".to_owned(), "t".to_owned(), "u".to_owned()].into();
        let id = Uuid::now_v7();
        let row = Row::new(
            columns,
            vec![
                Value::Int(Some(7)),
                Value::Text(Some("2026-01-02T03:04:05.000006Z".into())),
                Value::Blob(Some(id.as_bytes().to_vec())),
            ],
        );
        assert_eq!(row.get::<i64>("n").ok(), Some(7));
        assert_eq!(row.get::<Uuid>("u").ok(), Some(id));
        assert!(row.get::<DateTime<Utc>>("t").is_ok());
        assert!(row.get::<String>("n").is_err());
        assert!(row.get::<i64>("missing").is_err());
        assert_eq!(row.get::<Option<i64>>("n").ok(), Some(Some(7)));
    }
}
