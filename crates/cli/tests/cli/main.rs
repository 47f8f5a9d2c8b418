//! The `fleetreg` binary as a user runs it, as one test binary: each module
//! starts `fleetreg serve` (and `fleetreg sim`) as child processes through
//! `fleetreg_testkit::spawn` and runs client commands against them; `common`
//! names the binary.

mod agent;
mod audit;
mod bench_edge;
mod cli;
mod client_health;
mod clients;
mod common;
mod context;
mod credentials;
mod drift;
mod durability;
mod edge;
mod kubernetes;
mod leaks;
mod package;
mod progress;
mod rollout;
mod secrets_backend;
mod serve_config;
mod sync;
mod vault;
