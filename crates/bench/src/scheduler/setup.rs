//! The scheduler scenario's setup: simulated clusters in bulk, their
//! registrations in the server (SPOKE, API server plus Prometheus, Tempo and
//! Loki), then a wait for the discovery that registration starts.

use super::POLL;
use crate::load::{self, describe_failure, Limits};
use crate::scenarios::{authed, Context};
use crate::schedule::{classify, Call};
use crate::simlog::{LogTail, SimClient};
use crate::BenchError;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Registrations in flight during setup.
const REGISTER_CONCURRENCY: usize = 16;
/// Label that marks the clusters of this scenario.
const LABEL: (&str, &str) = ("bench", "scheduler");
/// The discovery after registration counts as finished after this long
/// without a call other than a health check …
const QUIET: Duration = Duration::from_secs(3);
/// … and is given up on (with a note) after this long.
pub(super) const QUIET_LIMIT: Duration = Duration::from_secs(600);

/// What the setup did.
pub(super) struct Setup {
    /// Clusters added to the simulator.
    pub(super) sim_added: usize,
    /// Clusters registered in the server by this run.
    pub(super) registered: u64,
    /// Registrations refused because the name was taken.
    pub(super) existing: u64,
    /// How long the discovery after registration took to go quiet, if waited for.
    pub(super) settled: Option<Duration>,
}

/// The registration body of simulated cluster `name`.
fn registration_body(sim: &str, name: &str) -> String {
    let api = format!("{sim}/c/{name}");
    json!({
        "name": name,
        "api_server_url": api,
        "cluster_type": "SPOKE",
        "environment": "LAB",
        "labels": { LABEL.0: LABEL.1 },
        "endpoints": {
            "prometheus_url": format!("{api}/prometheus"),
            "tempo_url": format!("{api}/tempo"),
            "loki_url": format!("{api}/loki"),
        },
    })
    .to_string()
}

/// Name of simulated cluster `index` (the simulator's bulk naming).
fn cluster_name(prefix: &str, index: u64) -> String {
    format!("{prefix}-{index:05}")
}

/// Clusters carrying this scenario's label in the server.
async fn labelled(ctx: &Context) -> Result<u64, BenchError> {
    let url = format!(
        "{}/api/v1/clusters?label={}%3D{}&page_size=1",
        ctx.base, LABEL.0, LABEL.1
    );
    let response = authed(ctx.control.get(url), &ctx.token).send().await?;
    if !response.status().is_success() {
        return Err(BenchError::Server {
            what: "GET /api/v1/clusters?label=…".into(),
            detail: describe_failure(response).await,
        });
    }
    #[derive(serde::Deserialize)]
    struct Total {
        total: u64,
    }
    Ok(response.json::<Total>().await?.total)
}

/// Creates what is missing: simulated clusters, registrations; then waits for
/// the discovery that registration started.
pub(super) async fn prepare(ctx: &Context, sim: &SimClient) -> Result<Setup, BenchError> {
    let count = ctx.args.sched_clusters;
    let prefix = ctx.args.sched_prefix.clone();
    let sim_added = sim
        .create_clusters(&prefix, usize::try_from(count).unwrap_or(usize::MAX))
        .await?;
    if sim_added > 0 {
        eprintln!("scheduler: {sim_added} clusters added to the simulator ({prefix}-00000 …)");
    }
    let before = labelled(ctx).await?;
    if before >= count {
        return Ok(Setup {
            sim_added,
            registered: 0,
            existing: before,
            settled: None,
        });
    }
    eprintln!(
        "scheduler: registering {count} SPOKE clusters (4 endpoints each, {} labelled already) over {REGISTER_CONCURRENCY} connections ...",
        before
    );
    let (base, token) = (ctx.base.clone(), ctx.token.clone());
    let sim_base: Arc<str> = Arc::from(sim.base());
    let conflicts = Arc::new(AtomicU64::new(0));
    let taken = conflicts.clone();
    let outcome = load::run_with_progress(
        Limits {
            concurrency: REGISTER_CONCURRENCY,
            duration: Duration::from_secs(3600),
            max_requests: count,
        },
        crate::progress::bar(count, "scheduler: registering clusters"),
        move |client, index, _| {
            let body = registration_body(&sim_base, &cluster_name(&prefix, index));
            let request = authed(client.post(format!("{base}/api/v1/clusters")), &token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
            let taken = taken.clone();
            async move {
                let response = request.send().await.map_err(|e| e.to_string())?;
                match response.status() {
                    reqwest::StatusCode::CREATED => Ok(()),
                    reqwest::StatusCode::CONFLICT => {
                        taken.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                    _ => Err(describe_failure(response).await),
                }
            }
        },
    )
    .await?;
    if outcome.failed > 0 {
        return Err(BenchError::Unexpected {
            what: "registering the simulated clusters".into(),
            detail: format!(
                "{} of {count} failed: {:?}",
                outcome.failed, outcome.failures
            ),
        });
    }
    let existing = conflicts.load(Ordering::Relaxed);
    let registered = outcome.requests - existing;
    eprintln!(
        "  {registered} registered, {existing} existed, in {:.1} s; waiting for discovery to finish ...",
        outcome.elapsed.as_secs_f64()
    );
    let settled = wait_for_discovery(sim).await?;
    Ok(Setup {
        sim_added,
        registered,
        existing,
        settled,
    })
}

/// Waits until the simulator has seen no call other than a health check for
/// [`QUIET`]; `None` when [`QUIET_LIMIT`] passed first.
async fn wait_for_discovery(sim: &SimClient) -> Result<Option<Duration>, BenchError> {
    let started = Instant::now();
    let mut tail = LogTail::new();
    let mut last_other = Instant::now();
    while started.elapsed() < QUIET_LIMIT {
        let mut other = false;
        tail.poll(sim, |entry| {
            if classify(entry.service, &entry.method, &entry.path) == Call::Other {
                other = true;
            }
        })
        .await?;
        if other {
            last_other = Instant::now();
        } else if last_other.elapsed() >= QUIET {
            let took = last_other.duration_since(started);
            eprintln!(
                "  discovery calls ended {:.1} s after registration",
                took.as_secs_f64()
            );
            return Ok(Some(took));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_four_endpoints_on_the_simulator() {
        let body: serde_json::Value =
            serde_json::from_str(&registration_body("http://127.0.0.1:9000", "sched-00042"))
                .unwrap_or_default();
        assert_eq!(body["cluster_type"], "SPOKE");
        assert_eq!(
            body["api_server_url"],
            "http://127.0.0.1:9000/c/sched-00042"
        );
        assert_eq!(
            body["endpoints"]["loki_url"],
            "http://127.0.0.1:9000/c/sched-00042/loki"
        );
        assert_eq!(cluster_name("sched", 42), "sched-00042");
    }
}
