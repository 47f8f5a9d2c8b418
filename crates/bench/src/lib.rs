//! The load generator behind `fleetreg bench`.
#![deny(missing_docs)]

/// Flags of `fleetreg bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {}

/// Runs the benchmark.
pub async fn run(_args: BenchArgs) -> Result<(), BenchError> {
    Ok(())
}
