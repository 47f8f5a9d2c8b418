//! Fleet views as aggregate SQL (GROUP BY on the real columns `state`,
//! `cluster_type`, `environment`, `has_gpu`, `gpu_count`, `has_cnf`,
//! `health_score`; JSON functions for capability details). Nothing here loads
//! clusters: each view is a handful of aggregate statements read in one
//! transaction, folded by the model's `from_groups`/`from_parts`.
//!
//! Written once for both engines; the JSON parts come from the dialect
//! (SQLite `json_each`/`json_extract`, PostgreSQL `jsonb_array_elements_text`/`->>`).

use crate::engine::Engine;
use crate::sql::{Row, Sql};
use crate::StoreError;
use chrono::{DateTime, Utc};
use fleetreg_model::{
    CapabilityCounts, ClusterState, ClusterType, FleetCapabilities, FleetClusterHealth,
    FleetHealth, FleetSummary, SummaryGroup, SCORE_BUCKETS,
};

/// One row per (state, type, environment): counts and sums for the summary.
const SUMMARY_SQL: &str = "SELECT state, cluster_type, environment, COUNT(*), \
     CAST(COALESCE(SUM(gpu_count), 0) AS BIGINT), \
     COALESCE(SUM(CASE WHEN has_cnf THEN 1 ELSE 0 END), 0), \
     CAST(COALESCE(SUM(health_score), 0) AS BIGINT) \
     FROM clusters GROUP BY state, cluster_type, environment";

/// The assessed clusters with the lowest score.
const LEAST_HEALTHY_SQL: &str =
    "SELECT id, name, cluster_type, state, health_score, last_seen_at FROM clusters \
     WHERE state <> 'UNKNOWN' ORDER BY health_score, name LIMIT $1";

/// Clusters never reached by a check.
const NEVER_SEEN_SQL: &str = "SELECT COUNT(*) FROM clusters WHERE last_seen_at IS NULL";

/// Columns of a fleet health list entry.
const ENTRY_COLUMNS: &str = "id, name, cluster_type, state, health_score, last_seen_at";

/// `(state, bucket, clusters)`: the bucket index of [`SCORE_BUCKETS`], -1 for UNKNOWN.
fn health_groups_sql() -> String {
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
fn capability_counts_sql(flag: fn(&[&str]) -> String) -> String {
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

/// The summary of seed 4.2.
pub(crate) async fn fleet_summary(engine: &dyn Engine) -> Result<FleetSummary, StoreError> {
    let rows = engine.scan(&Sql::new(SUMMARY_SQL)).await?;
    let groups = rows
        .iter()
        .map(|row| {
            Ok(SummaryGroup {
                state: row.get_at(0)?,
                cluster_type: row.get_at(1)?,
                environment: row.get_at(2)?,
                clusters: row.get_at(3)?,
                gpu_count: row.get_at(4)?,
                with_cnf: row.get_at(5)?,
                health_score_sum: row.get_at(6)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(FleetSummary::from_groups(&groups))
}

/// The health view, read in one snapshot.
pub(crate) async fn fleet_health(
    engine: &dyn Engine,
    stale_before: &[(ClusterType, DateTime<Utc>)],
    limit: u32,
) -> Result<FleetHealth, StoreError> {
    let mut tx = engine.snapshot().await?;
    let groups = tx
        .fetch(&Sql::new(health_groups_sql()))
        .await?
        .iter()
        .map(|row| {
            let bucket: i64 = row.get_at(1)?;
            Ok((row.get_at(0)?, usize::try_from(bucket).ok(), row.get_at(2)?))
        })
        .collect::<Result<Vec<(String, Option<usize>, i64)>, StoreError>>()?;
    let least = Sql::new(LEAST_HEALTHY_SQL).arg(i64::from(limit));
    let least = entries(&tx.fetch(&least).await?)?;
    let stale_filter = |sql: &mut Sql| {
        sql.push(" WHERE 1 = 0");
        for (cluster_type, cutoff) in stale_before {
            sql.push(" OR (cluster_type = ")
                .bind(cluster_type.as_str())
                .push(" AND last_seen_at < ")
                .bind(*cutoff)
                .push(")");
        }
    };
    let mut count = Sql::new("SELECT COUNT(*) FROM clusters");
    stale_filter(&mut count);
    let stale_count: i64 = tx.fetch_one(&count).await?.get_at(0)?;
    let mut stale = Sql::new(format!("SELECT {ENTRY_COLUMNS} FROM clusters"));
    stale_filter(&mut stale);
    stale
        .push(" ORDER BY last_seen_at, name LIMIT ")
        .bind(i64::from(limit));
    let stale = entries(&tx.fetch(&stale).await?)?;
    let never_seen: i64 = tx.fetch_one(&Sql::new(NEVER_SEEN_SQL)).await?.get_at(0)?;
    tx.commit().await?;
    Ok(FleetHealth::from_parts(
        &groups,
        least,
        stale_count,
        stale,
        never_seen,
    ))
}

/// The capabilities view, read in one snapshot.
pub(crate) async fn fleet_capabilities(
    engine: &dyn Engine,
) -> Result<FleetCapabilities, StoreError> {
    let dialect = engine.dialect();
    let mut tx = engine.snapshot().await?;
    let c = tx
        .fetch_one(&Sql::new(capability_counts_sql(dialect.capability_flag)))
        .await?;
    let counts = CapabilityCounts {
        total: c.get_at(0)?,
        discovered: c.get_at(1)?,
        with_gpu: c.get_at(2)?,
        gpu_count: c.get_at(3)?,
        with_cnf: c.get_at(4)?,
        with_sriov: c.get_at(5)?,
        with_ptp: c.get_at(6)?,
        prometheus: c.get_at(7)?,
        thanos: c.get_at(8)?,
        tempo: c.get_at(9)?,
        loki: c.get_at(10)?,
    };
    let gpu = tx
        .fetch(&Sql::new(dialect.gpu_types_sql))
        .await?
        .iter()
        .map(|row| Ok((row.get_at(0)?, row.get_at(1)?, row.get_at(2)?)))
        .collect::<Result<Vec<(String, i64, i64)>, StoreError>>()?;
    let cnf = tx
        .fetch(&Sql::new(dialect.cnf_types_sql))
        .await?
        .iter()
        .map(|row| Ok((row.get_at(0)?, row.get_at(1)?)))
        .collect::<Result<Vec<(String, i64)>, StoreError>>()?;
    tx.commit().await?;
    Ok(FleetCapabilities::from_parts(counts, &gpu, &cnf))
}

/// Fleet health list entries from rows of [`ENTRY_COLUMNS`].
fn entries(rows: &[Row]) -> Result<Vec<FleetClusterHealth>, StoreError> {
    rows.iter()
        .map(|row| {
            let cluster_type: String = row.get("cluster_type")?;
            let state: String = row.get("state")?;
            Ok(FleetClusterHealth {
                id: row.get("id")?,
                cluster_type: ClusterType::parse(&cluster_type).ok_or_else(|| {
                    StoreError::Corrupt(format!("unexpected cluster_type {cluster_type:?}"))
                })?,
                state: ClusterState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("unexpected state {state:?}")))?,
                name: row.get("name")?,
                health_score: row.get("health_score")?,
                last_seen_at: row.get("last_seen_at")?,
            })
        })
        .collect()
}
