//! The harness the CLI tests share: the `fleetreg` binary as [`FLEETREG`] (a
//! `fleetreg_testkit::spawn::Binary`: a clean environment and the admin token),
//! which `fleetreg_testkit::spawn::Server` and `Sim` start as child processes.

use fleetreg_testkit::spawn::Binary;
use std::path::Path;
use std::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_fleetreg");

/// The bootstrap admin token every server these tests start takes (as
/// `FLEETREG_ADMIN_TOKEN`) and every client command sends.
pub const ADMIN_TOKEN: &str = "frg_cli-test-admin-token-0123456789";

/// The binary under test, for `fleetreg_testkit::spawn`.
pub const FLEETREG: Binary = Binary {
    path: BIN,
    admin_token: ADMIN_TOKEN,
};

/// `fleetreg` with no `FLEETREG_*` or `RUST_LOG` from the caller's environment,
/// the admin token (`serve` takes it as `FLEETREG_ADMIN_TOKEN`, the client
/// commands send it) and stdin closed.
pub fn fleetreg() -> Command {
    FLEETREG.command()
}

/// [`fleetreg`] run in `dir`.
pub fn fleetreg_in(dir: &Path) -> Command {
    FLEETREG.command_in(dir)
}

/// A local URL where nothing listens.
pub fn dead_url() -> String {
    format!("http://127.0.0.1:{}", fleetreg_testkit::free_port())
}
