//! The `scheduler` scenario: how well a running `serve` keeps N simulated SPOKE
//! clusters on their check interval, judged from the simulator's request log
//! (when the checks arrived), not from the scheduler's own view.
//!
//! Setup (skipped for what already exists): `N` clusters `{prefix}-00000`… in
//! the simulator (one bulk request), each registered in the server as SPOKE
//! with its API server and Prometheus, Tempo and Loki endpoints, so one check
//! is 4 HTTP calls; then a wait until the discovery that follows registration
//! has finished. Then the log is emptied, read every 250 ms through a warm-up
//! (one interval by default, so the initial spread of first checks is over)
//! and a window, and analysed by [`crate::schedule`]; CPU time and memory of
//! the server (and the simulator) come from `/proc` over the same window.

mod observe;
mod report;
mod setup;

use crate::procfs;
use crate::scenarios::Context;
use crate::simlog::SimClient;
use crate::stats::Row;
use crate::BenchError;
use std::time::Duration;

/// How often the request log is read.
const POLL: Duration = Duration::from_millis(250);

/// The scenario: setup as needed, then (unless `--sched-setup-only`) the window.
pub(crate) async fn run(ctx: &mut Context) -> Result<Row, BenchError> {
    let Some(sim_url) = ctx.args.sim.clone() else {
        return Err(BenchError::Usage(
            "scheduler: pass --sim URL (a running `fleetreg sim`)".into(),
        ));
    };
    let parsed = reqwest::Url::parse(&sim_url)
        .map_err(|e| BenchError::Usage(format!("--sim {sim_url:?} is not a URL: {e}")))?;
    let loopback = matches!(
        parsed.host_str().unwrap_or_default(),
        "127.0.0.1" | "localhost" | "[::1]" | "::1"
    );
    if !loopback && !ctx.args.allow_remote {
        return Err(BenchError::Usage(format!(
            "--sim {sim_url} is not on the loopback interface; pass --allow-remote"
        )));
    }
    let sim_pid = ctx.args.sim_pid.or_else(|| {
        loopback
            .then(|| parsed.port_or_known_default())
            .flatten()
            .and_then(procfs::pid_listening_on)
    });
    let sim = SimClient::new(&sim_url)?;
    let count = ctx.args.sched_clusters;
    let setup = setup::prepare(ctx, &sim).await?;
    let setup_text = format!(
        "setup: {} clusters added to the simulator, {} registered now, {} registered before{}",
        setup.sim_added,
        setup.registered,
        setup.existing,
        setup.settled.map_or_else(String::new, |d| format!(
            ", registration discovery done after {:.1} s",
            d.as_secs_f64()
        ))
    );
    if ctx.args.sched_setup_only {
        let mut row = Row::new(
            "scheduler-setup",
            format!("{count} SPOKE clusters in {sim_url}"),
        );
        row.notes.push(setup_text);
        if setup.registered > 0 && setup.settled.is_none() {
            row.notes.push(format!(
                "discovery calls had not stopped after {} s",
                setup::QUIET_LIMIT.as_secs()
            ));
        }
        row.notes.push(
            "restart serve (same database) so that its first checks are spread over one interval, then run the scenario without --sched-setup-only".into(),
        );
        return Ok(row);
    }
    let stored = ctx.stored().await?;
    let window = observe::observe(ctx, &sim, sim_pid).await?;
    Ok(report::row_of(
        ctx, &window, &setup, setup_text, stored, sim_pid,
    ))
}
