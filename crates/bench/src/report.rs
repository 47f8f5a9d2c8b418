//! Printing: progress on stderr, the summary table (or JSON) on stdout.

use crate::scenarios::Context;
use crate::stats::Row;
use crate::BenchError;
use serde_json::json;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, usize::from)
}

/// Prints what is being measured.
pub(crate) fn header(ctx: &Context) {
    eprintln!(
        "fleetreg bench: server {} (store {}, {}), server pid {}, {} cores here, run tag {}",
        ctx.base,
        ctx.backend,
        ctx.durability,
        ctx.server_pid
            .map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
        cores(),
        ctx.run
    );
}

fn num(value: Option<f64>, precision: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.precision$}"))
}

fn verdict(row: &Row) -> &'static str {
    match row.met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "",
    }
}

/// Prints one finished scenario.
pub(crate) fn progress(row: &Row) {
    eprintln!("== {} ({})", row.scenario, row.how);
    if row.requests > 0 {
        eprintln!(
            "   requests {}, failed {}, {} req/s, p50 {} ms, p99 {} ms, max {} ms, in {:.1} s",
            row.requests,
            row.failed,
            num(row.throughput, 0),
            num(row.p50_ms, 2),
            num(row.p99_ms, 2),
            num(row.max_ms, 2),
            row.elapsed_secs
        );
    }
    if let Some(value) = &row.value {
        eprintln!("   {value}");
    }
    if let Some(target) = &row.target {
        eprintln!("   target {target}: {}", verdict(row));
    }
    for note in &row.notes {
        eprintln!("   {note}");
    }
}

/// Prints the summary table, or the JSON report with `--json`.
pub(crate) fn finish(ctx: &Context, rows: &[Row]) -> Result<(), BenchError> {
    if ctx.args.json {
        let report = json!({
            "server": &*ctx.base,
            "store": ctx.backend,
            "durability": ctx.durability,
            "server_pid": ctx.server_pid,
            "cores": cores(),
            "rows": rows,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!();
    println!(
        "Summary: store {} ({}), {} cores",
        ctx.backend,
        ctx.durability,
        cores()
    );
    println!(
        "{:<13} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9}  {:<28} {:<7} how",
        "scenario", "requests", "failed", "req/s", "p50 ms", "p99 ms", "max ms", "target", ""
    );
    for row in rows {
        println!(
            "{:<13} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9}  {:<28} {:<7} {}{}",
            row.scenario,
            row.requests,
            row.failed,
            num(row.throughput, 0),
            num(row.p50_ms, 2),
            num(row.p99_ms, 2),
            num(row.max_ms, 2),
            row.target.as_deref().unwrap_or(""),
            verdict(row),
            row.how,
            row.value
                .as_ref()
                .map_or_else(String::new, |v| format!("; {v}")),
        );
    }
    let failed: u64 = rows.iter().map(|r| r.failed).sum();
    println!("failed requests in all: {failed}");
    Ok(())
}
