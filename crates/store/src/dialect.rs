//! Where the two databases' SQL differs, in one place. Every store method is
//! written once (`sql_store.rs`, `write_tx.rs`, `fleet.rs`); when it needs a
//! fragment the engines spell differently, it asks the [`Dialect`].
//!
//! | what | SQLite | PostgreSQL |
//! |---|---|---|
//! | lock a row read for writing | (the write transaction is `BEGIN IMMEDIATE`) | `FOR UPDATE` |
//! | larger of two values | `MAX(a, b)` | `GREATEST(a, b)` |
//! | null-safe "differs" | `a IS NOT b` | `a IS DISTINCT FROM b` |
//! | label filters | `cluster_labels` side table (kept by the writer) | `labels @> …` on a GIN index |
//! | query plans | `EXPLAIN QUERY PLAN`, column `detail` | `EXPLAIN` (sequential scans off) |
//! | JSON | `json_each`, `json_extract` | `jsonb_array_elements_text`, `->>` |
//! | a list bound as one parameter | `IN (SELECT value FROM json_each($1))` | `IN (SELECT value FROM jsonb_array_elements_text($1))` |
//! | a batch's registrations | decided in memory, one multi-row `INSERT` | one `INSERT … ON CONFLICT` each |
//! | after a failed write | `PRAGMA wal_checkpoint(TRUNCATE)` | (nothing) |
//!
//! Timestamps and UUIDs differ in storage, not in SQL: the engines bind
//! [`crate::sql::Value`]s in their own encoding (see `engine/`).

use crate::Backend;

/// How a backend matches label selectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LabelMatch {
    /// SQLite: one `IN (…)` (labels alone) or `EXISTS` (with another indexed
    /// filter) per label over the `cluster_labels` primary key, a table the
    /// writer keeps beside `clusters.labels`.
    SideTable,
    /// PostgreSQL: one `labels @> {…}` containment over the GIN index.
    JsonbContains,
}

/// The SQL differences of one database.
#[derive(Debug)]
pub(crate) struct Dialect {
    /// Which database.
    pub backend: Backend,
    /// Appended to a `SELECT` of a row the write transaction will change.
    pub lock_row: &'static str,
    /// The function giving the larger of two values.
    pub greatest: &'static str,
    /// The null-safe "differs" operator, spaces around it (NULL differs from
    /// a value, not from NULL); partial indexes spell it the same way.
    pub distinct_from: &'static str,
    /// How label selectors are matched.
    pub labels: LabelMatch,
    /// The prefix that makes a query return its plan.
    pub explain: &'static str,
    /// Run first in the transaction that explains (or nothing).
    pub explain_setup: Option<&'static str>,
    /// The column of an `EXPLAIN` row holding the plan text.
    pub explain_column: usize,
    /// A boolean expression: the JSON value at `path` inside `capabilities`.
    pub capability_flag: fn(&[&str]) -> String,
    /// `(type, clusters, gpus)` per GPU type over clusters with GPU, each type
    /// counted once per cluster.
    pub gpu_types_sql: &'static str,
    /// `(type, clusters)` per CNF type over clusters with CNF.
    pub cnf_types_sql: &'static str,
    /// The number of keys of the JSON object in `column`.
    pub json_key_count: fn(&str) -> String,
    /// The set-returning function giving a JSON object's entries as text
    /// `key`/`value` columns (`json_each`, `jsonb_each_text`).
    pub json_object_entries: &'static str,
    /// The set-returning function giving a JSON array's elements as a text
    /// `value` column (`json_each`, `jsonb_array_elements_text`): a list of
    /// any length bound as one JSON parameter, `IN (SELECT value FROM
    /// f($1))`. One statement text, and a hashed lookup on PostgreSQL where
    /// an `IN ($1, …, $256)` of a generic plan on a table without statistics
    /// compares every row with every parameter (10–20 ms for 256 names over
    /// 1,000 nodes against 0.5–2 ms).
    pub json_array_texts: &'static str,
    /// Run before and after a batch's name lookup (`SELECT name … IN`, see
    /// `WriteTx::prepare_inserts`), in its transaction (or
    /// nothing): PostgreSQL's trigram index on `name` also answers `=`, and
    /// the planner, without statistics, chose it for the lookup, where names
    /// sharing most of their trigrams (`bench-…-r64-2450`) made every lookup
    /// walk most of the index (115–235 ms at 10,000 rows, auto_explain). With
    /// bitmap scans off, which every GIN scan is, the lookup uses the b-tree.
    pub name_lookup_scope: Option<(&'static str, &'static str)>,
    /// Run after the database could not be written (e.g. its disk was full)
    /// and before the next write: gives back space the engine holds (or nothing).
    pub relieve_storage: Option<&'static str>,
}

/// SQLite.
pub(crate) static SQLITE: Dialect = Dialect {
    backend: Backend::Sqlite,
    lock_row: "",
    greatest: "MAX",
    distinct_from: " IS NOT ",
    labels: LabelMatch::SideTable,
    explain: "EXPLAIN QUERY PLAN ",
    explain_setup: None,
    explain_column: 3,
    capability_flag: sqlite_flag,
    gpu_types_sql: "SELECT j.value, COUNT(*), CAST(SUM(c.gpu_count) AS BIGINT) \
     FROM clusters c, json_each(c.capabilities, '$.gpu_types') j \
     WHERE c.has_gpu = 1 AND json_type(c.capabilities, '$.gpu_types') = 'array' \
       AND NOT EXISTS (SELECT 1 FROM json_each(c.capabilities, '$.gpu_types') k \
                       WHERE k.value = j.value AND k.key < j.key) \
     GROUP BY j.value ORDER BY j.value",
    cnf_types_sql: "SELECT j.value, COUNT(*) \
     FROM clusters c, json_each(c.capabilities, '$.cnf_types') j \
     WHERE c.has_cnf = 1 AND json_type(c.capabilities, '$.cnf_types') = 'array' \
       AND NOT EXISTS (SELECT 1 FROM json_each(c.capabilities, '$.cnf_types') k \
                       WHERE k.value = j.value AND k.key < j.key) \
     GROUP BY j.value ORDER BY j.value",
    json_key_count: |column| format!("(SELECT COUNT(*) FROM json_each({column}))"),
    json_object_entries: "json_each",
    json_array_texts: "json_each",
    name_lookup_scope: None,
    // The WAL only shrinks when a checkpoint truncates it; on a small disk it
    // can hold all the space freed meanwhile.
    relieve_storage: Some("PRAGMA wal_checkpoint(TRUNCATE)"),
};

/// PostgreSQL.
pub(crate) static POSTGRES: Dialect = Dialect {
    backend: Backend::Postgres,
    lock_row: " FOR UPDATE",
    greatest: "GREATEST",
    distinct_from: " IS DISTINCT FROM ",
    labels: LabelMatch::JsonbContains,
    explain: "EXPLAIN ",
    // Small test tables make sequential scans cheapest; this shows which
    // index a filter can use, as it would on a large table.
    explain_setup: Some("SET LOCAL enable_seqscan = off"),
    explain_column: 0,
    capability_flag: postgres_flag,
    gpu_types_sql: "SELECT j.t, COUNT(*), CAST(SUM(c.gpu_count) AS BIGINT) FROM clusters c \
     CROSS JOIN LATERAL (SELECT DISTINCT e AS t FROM jsonb_array_elements_text( \
       CASE WHEN jsonb_typeof(c.capabilities->'gpu_types') = 'array' \
       THEN c.capabilities->'gpu_types' ELSE '[]'::jsonb END) e) j \
     WHERE c.has_gpu GROUP BY j.t ORDER BY j.t",
    cnf_types_sql: "SELECT j.t, COUNT(*) FROM clusters c \
     CROSS JOIN LATERAL (SELECT DISTINCT e AS t FROM jsonb_array_elements_text( \
       CASE WHEN jsonb_typeof(c.capabilities->'cnf_types') = 'array' \
       THEN c.capabilities->'cnf_types' ELSE '[]'::jsonb END) e) j \
     WHERE c.has_cnf GROUP BY j.t ORDER BY j.t",
    json_key_count: |column| format!("(SELECT COUNT(*) FROM jsonb_object_keys({column}))"),
    json_object_entries: "jsonb_each_text",
    json_array_texts: "jsonb_array_elements_text",
    name_lookup_scope: Some((
        "SET LOCAL enable_bitmapscan = off",
        "SET LOCAL enable_bitmapscan = on",
    )),
    relieve_storage: None,
};

/// SQLite: `json_extract` yields 1/0/NULL for JSON booleans.
fn sqlite_flag(path: &[&str]) -> String {
    format!("json_extract(capabilities, '$.{}')", path.join("."))
}

/// PostgreSQL: the JSON text cast to boolean (NULL when absent).
fn postgres_flag(path: &[&str]) -> String {
    match path.split_last() {
        Some((last, parents)) => {
            let mut expr = String::from("capabilities");
            for p in parents {
                expr.push_str(&format!("->'{p}'"));
            }
            format!("({expr}->>'{last}')::boolean")
        }
        None => "FALSE".to_owned(),
    }
}
