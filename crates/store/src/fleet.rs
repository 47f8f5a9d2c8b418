//! Fleet views as aggregate SQL (GROUP BY on the real columns `state`,
//! `cluster_type`, `environment`, `has_gpu`, `gpu_count`, `has_cnf`,
//! `health_score`; JSON functions for capability details). Nothing here loads
//! clusters: each view is a handful of aggregate statements read in one
//! transaction, folded by the model's `from_groups`/`from_parts`.
//!
//! The SQL is shared where both databases accept it; the JSON parts differ
//! (SQLite `json_each`/`json_extract`, PostgreSQL `jsonb_array_elements_text`/`->>`).
//! [`fleet_queries!`] expands the same code for each backend's pool type.

use fleetreg_model::SCORE_BUCKETS;

/// One row per (state, type, environment): counts and sums for the summary.
pub(crate) const SUMMARY_SQL: &str = "SELECT state, cluster_type, environment, COUNT(*), \
     CAST(COALESCE(SUM(gpu_count), 0) AS BIGINT), \
     COALESCE(SUM(CASE WHEN has_cnf THEN 1 ELSE 0 END), 0), \
     CAST(COALESCE(SUM(health_score), 0) AS BIGINT) \
     FROM clusters GROUP BY state, cluster_type, environment";

/// The assessed clusters with the lowest score.
pub(crate) const LEAST_HEALTHY_SQL: &str =
    "SELECT id, name, cluster_type, state, health_score, last_seen_at FROM clusters \
     WHERE state <> 'UNKNOWN' ORDER BY health_score, name LIMIT $1";

/// Clusters never reached by a check.
pub(crate) const NEVER_SEEN_SQL: &str = "SELECT COUNT(*) FROM clusters WHERE last_seen_at IS NULL";

/// Columns of a fleet health list entry.
pub(crate) const ENTRY_COLUMNS: &str = "id, name, cluster_type, state, health_score, last_seen_at";

/// `(state, bucket, clusters)`: the bucket index of [`SCORE_BUCKETS`], -1 for UNKNOWN.
pub(crate) fn health_groups_sql() -> String {
    let mut case = String::from("CASE WHEN state = 'UNKNOWN' THEN -1");
    for (i, (_, max)) in SCORE_BUCKETS.iter().enumerate() {
        case.push_str(&format!(" WHEN health_score <= {max} THEN {i}"));
    }
    case.push_str(&format!(
        " ELSE {} END",
        SCORE_BUCKETS.len().saturating_sub(1)
    ));
    format!("SELECT state, {case}, COUNT(*) FROM clusters GROUP BY 1, 2")
}

/// The scalar capability counts; `flag(path)` is the backend's boolean of a
/// JSON path inside `capabilities` (e.g. `["observability", "loki"]`).
pub(crate) fn capability_counts_sql(flag: fn(&[&str]) -> String) -> String {
    let count_if = |cond: String| format!("COALESCE(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END), 0)");
    let columns = [
        "COUNT(*)".to_owned(),
        count_if("capabilities IS NOT NULL".into()),
        count_if("has_gpu".into()),
        "CAST(COALESCE(SUM(gpu_count), 0) AS BIGINT)".to_owned(),
        count_if("has_cnf".into()),
        count_if(flag(&["has_sriov"])),
        count_if(flag(&["has_ptp"])),
        count_if(flag(&["observability", "prometheus"])),
        count_if(flag(&["observability", "thanos"])),
        count_if(flag(&["observability", "tempo"])),
        count_if(flag(&["observability", "loki"])),
    ];
    format!("SELECT {} FROM clusters", columns.join(", "))
}

/// SQLite: `json_extract` yields 1/0/NULL for JSON booleans.
pub(crate) fn sqlite_flag(path: &[&str]) -> String {
    format!("json_extract(capabilities, '$.{}')", path.join("."))
}

/// PostgreSQL: the JSON text cast to boolean (NULL when absent).
pub(crate) fn postgres_flag(path: &[&str]) -> String {
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

/// SQLite: per GPU type over clusters with GPU, `(type, clusters, gpus)`. A
/// type listed twice by one cluster counts once (only its first occurrence).
pub(crate) const SQLITE_GPU_TYPES_SQL: &str =
    "SELECT j.value, COUNT(*), CAST(SUM(c.gpu_count) AS BIGINT) \
     FROM clusters c, json_each(c.capabilities, '$.gpu_types') j \
     WHERE c.has_gpu = 1 AND json_type(c.capabilities, '$.gpu_types') = 'array' \
       AND NOT EXISTS (SELECT 1 FROM json_each(c.capabilities, '$.gpu_types') k \
                       WHERE k.value = j.value AND k.key < j.key) \
     GROUP BY j.value ORDER BY j.value";

/// SQLite: per CNF type over clusters with CNF, `(type, clusters)`.
pub(crate) const SQLITE_CNF_TYPES_SQL: &str = "SELECT j.value, COUNT(*) \
     FROM clusters c, json_each(c.capabilities, '$.cnf_types') j \
     WHERE c.has_cnf = 1 AND json_type(c.capabilities, '$.cnf_types') = 'array' \
       AND NOT EXISTS (SELECT 1 FROM json_each(c.capabilities, '$.cnf_types') k \
                       WHERE k.value = j.value AND k.key < j.key) \
     GROUP BY j.value ORDER BY j.value";

/// PostgreSQL: per GPU type over clusters with GPU, `(type, clusters, gpus)`;
/// types are made distinct per cluster.
pub(crate) const POSTGRES_GPU_TYPES_SQL: &str =
    "SELECT j.t, COUNT(*), CAST(SUM(c.gpu_count) AS BIGINT) FROM clusters c \
     CROSS JOIN LATERAL (SELECT DISTINCT e AS t FROM jsonb_array_elements_text( \
       CASE WHEN jsonb_typeof(c.capabilities->'gpu_types') = 'array' \
       THEN c.capabilities->'gpu_types' ELSE '[]'::jsonb END) e) j \
     WHERE c.has_gpu GROUP BY j.t ORDER BY j.t";

/// PostgreSQL: per CNF type over clusters with CNF, `(type, clusters)`.
pub(crate) const POSTGRES_CNF_TYPES_SQL: &str = "SELECT j.t, COUNT(*) FROM clusters c \
     CROSS JOIN LATERAL (SELECT DISTINCT e AS t FROM jsonb_array_elements_text( \
       CASE WHEN jsonb_typeof(c.capabilities->'cnf_types') = 'array' \
       THEN c.capabilities->'cnf_types' ELSE '[]'::jsonb END) e) j \
     WHERE c.has_cnf GROUP BY j.t ORDER BY j.t";

/// A fleet health list row: id, name, type, state, score, last seen.
pub(crate) type EntryRow = (
    uuid::Uuid,
    String,
    String,
    String,
    i32,
    Option<chrono::DateTime<chrono::Utc>>,
);

/// Turns a list row into the model's entry.
pub(crate) fn entry_from_row(
    row: EntryRow,
) -> Result<fleetreg_model::FleetClusterHealth, crate::StoreError> {
    let (id, name, cluster_type, state, health_score, last_seen_at) = row;
    Ok(fleetreg_model::FleetClusterHealth {
        id,
        cluster_type: fleetreg_model::ClusterType::parse(&cluster_type).ok_or_else(|| {
            crate::StoreError::Corrupt(format!("unexpected cluster_type {cluster_type:?}"))
        })?,
        state: fleetreg_model::ClusterState::parse(&state)
            .ok_or_else(|| crate::StoreError::Corrupt(format!("unexpected state {state:?}")))?,
        name,
        health_score,
        last_seen_at,
    })
}

/// Expands the three fleet reads for one backend: `$db` the sqlx database,
/// `$setup` a statement run first in the read transaction (or `None`),
/// `$ts` how a cutoff time is bound, `$flag`, `$gpu`, `$cnf` the JSON parts.
macro_rules! fleet_queries {
    ($db:ty, $setup:expr, $ts:expr, $flag:expr, $gpu:expr, $cnf:expr) => {
        /// The summary of seed 4.2.
        pub(crate) async fn fleet_summary(
            pool: &sqlx::Pool<$db>,
        ) -> Result<fleetreg_model::FleetSummary, $crate::StoreError> {
            let rows: Vec<(String, String, String, i64, i64, i64, i64)> =
                sqlx::query_as($crate::fleet::SUMMARY_SQL)
                    .fetch_all(pool)
                    .await?;
            let groups: Vec<fleetreg_model::SummaryGroup> = rows
                .into_iter()
                .map(
                    |(state, cluster_type, environment, clusters, gpu_count, with_cnf, score)| {
                        fleetreg_model::SummaryGroup {
                            state,
                            cluster_type,
                            environment,
                            clusters,
                            gpu_count,
                            with_cnf,
                            health_score_sum: score,
                        }
                    },
                )
                .collect();
            Ok(fleetreg_model::FleetSummary::from_groups(&groups))
        }

        /// The health view.
        pub(crate) async fn fleet_health(
            pool: &sqlx::Pool<$db>,
            stale_before: &[(fleetreg_model::ClusterType, chrono::DateTime<chrono::Utc>)],
            limit: u32,
        ) -> Result<fleetreg_model::FleetHealth, $crate::StoreError> {
            let mut tx = pool.begin().await?;
            let setup: Option<&str> = $setup;
            if let Some(setup) = setup {
                sqlx::query(setup).execute(&mut *tx).await?;
            }
            let groups: Vec<(String, i32, i64)> =
                sqlx::query_as(&$crate::fleet::health_groups_sql())
                    .fetch_all(&mut *tx)
                    .await?;
            let groups: Vec<(String, Option<usize>, i64)> = groups
                .into_iter()
                .map(|(s, b, n)| (s, usize::try_from(b).ok(), n))
                .collect();
            let least: Vec<$crate::fleet::EntryRow> =
                sqlx::query_as($crate::fleet::LEAST_HEALTHY_SQL)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *tx)
                    .await?;
            let push_stale = |qb: &mut sqlx::QueryBuilder<'_, $db>| {
                qb.push(" WHERE 1 = 0");
                for (cluster_type, cutoff) in stale_before {
                    qb.push(" OR (cluster_type = ")
                        .push_bind(cluster_type.as_str())
                        .push(" AND last_seen_at < ")
                        .push_bind($ts(cutoff))
                        .push(")");
                }
            };
            let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT COUNT(*) FROM clusters");
            push_stale(&mut qb);
            let stale_count: i64 = qb.build_query_scalar().fetch_one(&mut *tx).await?;
            let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                "SELECT {} FROM clusters",
                $crate::fleet::ENTRY_COLUMNS
            ));
            push_stale(&mut qb);
            qb.push(" ORDER BY last_seen_at, name LIMIT ")
                .push_bind(i64::from(limit));
            let stale: Vec<$crate::fleet::EntryRow> =
                qb.build_query_as().fetch_all(&mut *tx).await?;
            let never_seen: i64 = sqlx::query_scalar($crate::fleet::NEVER_SEEN_SQL)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(fleetreg_model::FleetHealth::from_parts(
                &groups,
                least
                    .into_iter()
                    .map($crate::fleet::entry_from_row)
                    .collect::<Result<_, _>>()?,
                stale_count,
                stale
                    .into_iter()
                    .map($crate::fleet::entry_from_row)
                    .collect::<Result<_, _>>()?,
                never_seen,
            ))
        }

        /// The capabilities view.
        pub(crate) async fn fleet_capabilities(
            pool: &sqlx::Pool<$db>,
        ) -> Result<fleetreg_model::FleetCapabilities, $crate::StoreError> {
            let mut tx = pool.begin().await?;
            let setup: Option<&str> = $setup;
            if let Some(setup) = setup {
                sqlx::query(setup).execute(&mut *tx).await?;
            }
            let c: (i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64) =
                sqlx::query_as(&$crate::fleet::capability_counts_sql($flag))
                    .fetch_one(&mut *tx)
                    .await?;
            let gpu: Vec<(String, i64, i64)> = sqlx::query_as($gpu).fetch_all(&mut *tx).await?;
            let cnf: Vec<(String, i64)> = sqlx::query_as($cnf).fetch_all(&mut *tx).await?;
            tx.commit().await?;
            let counts = fleetreg_model::CapabilityCounts {
                total: c.0,
                discovered: c.1,
                with_gpu: c.2,
                gpu_count: c.3,
                with_cnf: c.4,
                with_sriov: c.5,
                with_ptp: c.6,
                prometheus: c.7,
                thanos: c.8,
                tempo: c.9,
                loki: c.10,
            };
            Ok(fleetreg_model::FleetCapabilities::from_parts(
                counts, &gpu, &cnf,
            ))
        }
    };
}

/// The fleet reads on SQLite (timestamps are fixed-width RFC 3339 text).
pub(crate) mod sqlite {
    fn ts(t: &chrono::DateTime<chrono::Utc>) -> String {
        fleetreg_model::format_timestamp(t)
    }
    fleet_queries!(
        sqlx::Sqlite,
        None,
        ts,
        super::sqlite_flag,
        super::SQLITE_GPU_TYPES_SQL,
        super::SQLITE_CNF_TYPES_SQL
    );
}

/// The fleet reads on PostgreSQL (one REPEATABLE READ snapshot per view).
pub(crate) mod postgres {
    fn ts(t: &chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        *t
    }
    fleet_queries!(
        sqlx::Postgres,
        Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"),
        ts,
        super::postgres_flag,
        super::POSTGRES_GPU_TYPES_SQL,
        super::POSTGRES_CNF_TYPES_SQL
    );
}
