//! The `fleet-summary` scenario: `GET /api/v1/fleet/summary` in a closed loop,
//! each answer's `total_clusters` checked against the stored count.

use crate::load::{self, describe_failure, Limits};
use crate::scenarios::{authed, row_from, Context};
use crate::stats::Row;
use crate::BenchError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The target: p99 at most this many milliseconds.
const P99_TARGET_MS: f64 = 50.0;

/// The fields of a summary the scenario checks.
#[derive(Deserialize)]
struct Summary {
    total_clusters: u64,
    by_state: BTreeMap<String, u64>,
}

/// Why a summary body is wrong for a fleet of `stored` clusters, if it is.
fn check(body: &[u8], stored: u64) -> Result<(), String> {
    let summary: Summary = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let by_state: u64 = summary.by_state.values().sum();
    if summary.total_clusters != stored || by_state != stored {
        return Err(format!(
            "total_clusters {} (by_state sums to {by_state}), stored {stored}",
            summary.total_clusters
        ));
    }
    Ok(())
}

/// Closed loop over `--read-concurrency` connections for `--duration-secs`.
pub(crate) async fn run(ctx: &mut Context) -> Result<Row, BenchError> {
    let stored = ctx.stored().await?;
    let concurrency = ctx.args.read_concurrency as usize;
    let duration = ctx.args.duration();
    eprintln!(
        "fleet-summary: GET /api/v1/fleet/summary over {concurrency} connections for {} s ({stored} stored) ...",
        duration.as_secs()
    );
    let (base, token) = (ctx.base.clone(), ctx.token.clone());
    let wrong = Arc::new(AtomicU64::new(0));
    let wrong_count = wrong.clone();
    let outcome = load::run(
        Limits {
            concurrency,
            duration,
            max_requests: u64::MAX,
        },
        move |client, _, _| {
            let request = authed(client.get(format!("{base}/api/v1/fleet/summary")), &token);
            let wrong = wrong_count.clone();
            async move {
                let response = request.send().await.map_err(|e| e.to_string())?;
                if response.status() != reqwest::StatusCode::OK {
                    return Err(describe_failure(response).await);
                }
                let body = response.bytes().await.map_err(|e| e.to_string())?;
                check(&body, stored).inspect_err(|_| {
                    wrong.fetch_add(1, Ordering::Relaxed);
                })
            }
        },
    )
    .await?;
    let how = format!(
        "{concurrency} conn, {} s, {stored} stored",
        duration.as_secs()
    );
    let mut row = row_from("fleet-summary", how, outcome);
    row.target = Some(format!("p99 <= {P99_TARGET_MS:.0} ms"));
    row.met = Some(row.p99_ms.is_some_and(|p| p <= P99_TARGET_MS) && row.failed == 0);
    row.notes.push(format!(
        "total_clusters and the by_state sum checked against {stored} on every answer; {} wrong",
        wrong.load(Ordering::Relaxed)
    ));
    Ok(row)
}

#[cfg(test)]
mod tests {
    #[test]
    fn checks_the_totals() {
        let body = br#"{"total_clusters":3,"by_state":{"HEALTHY":1,"UNKNOWN":2},"by_type":{}}"#;
        assert_eq!(super::check(body, 3), Ok(()));
        assert!(super::check(body, 4).is_err());
        let inconsistent = br#"{"total_clusters":3,"by_state":{"HEALTHY":1}}"#;
        assert!(super::check(inconsistent, 3).is_err());
        assert!(super::check(b"{}", 3).is_err());
    }
}
