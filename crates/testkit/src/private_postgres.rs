//! [`PrivatePostgres`]: a PostgreSQL cluster of one test's own, which the test
//! may crash and restart (never the shared server of [`crate::postgres_database`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where Debian/Ubuntu install the PostgreSQL server binaries, one directory
/// per major version (`<dir>/<version>/bin`).
pub const POSTGRES_LIB_DIR: &str = "/usr/lib/postgresql";

/// The OS user that runs the cluster when the tests run as root (`initdb`
/// and `postgres` refuse to run as root).
pub const POSTGRES_OS_USER: &str = "postgres";

/// How long `pg_ctl` waits for a start or stop before it reports failure.
const PG_CTL_WAIT_SECONDS: &str = "60";

/// A private PostgreSQL cluster: `initdb` into a temp dir, served on a free
/// loopback port with its socket directory inside the temp dir.
///
/// Made by [`private_postgres`]. The superuser is `postgres` with `trust`
/// authentication; the server runs with `fsync=on` (and the default
/// `synchronous_commit=on`), so what it acknowledged survives
/// [`PrivatePostgres::crash`]. The calls run `pg_ctl` and wait for it: they
/// block the calling thread (from async code use
/// `tokio::task::block_in_place` or `spawn_blocking`).
///
/// Dropping the handle stops the server (`-m immediate`) and removes the
/// directory, also while a panicking test unwinds.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    run_as_postgres: bool,
}

impl PrivatePostgres {
    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The TCP port the server listens on (the same after every restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temp dir holding the data directory (`data/`), the socket
    /// directory (`socket/`) and the server log (`server.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// Crashes the server: `pg_ctl stop -m immediate` (no shutdown checkpoint,
    /// connections cut; the next start runs crash recovery). Returns when the
    /// postmaster is gone; panics if `pg_ctl` fails.
    pub fn crash(&self) {
        let out = self.pg_ctl(&["stop", "-m", "immediate"]);
        assert!(
            out.status.success(),
            "pg_ctl stop -m immediate failed: {}\n{}",
            describe(&out),
            self.log()
        );
    }

    /// Starts the (stopped or crashed) server again on the same port and
    /// returns once it accepts connections (`pg_ctl start -w`); panics if it
    /// does not come up.
    pub fn start(&self) {
        let log = self.log_file();
        let log = log.to_string_lossy();
        let out = self.pg_ctl(&["start", "-l", &log]);
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            describe(&out),
            self.log()
        );
    }

    /// Whether the postmaster is running (`pg_ctl status`).
    pub fn is_running(&self) -> bool {
        self.pg_ctl(&["status"]).status.success()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        pg_ctl(&self.bin, &self.data_dir(), self.run_as_postgres, args)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.is_running() {
            let out = self.pg_ctl(&["stop", "-m", "immediate"]);
            if !out.status.success() {
                eprintln!(
                    "warning: could not stop the private PostgreSQL in {}: {}",
                    self.dir.path().display(),
                    describe(&out)
                );
            }
        }
        // The TempDir removes the directory (root may remove postgres's files;
        // otherwise they are the test user's own).
    }
}

/// The `bin` directory of the highest PostgreSQL version installed under
/// [`POSTGRES_LIB_DIR`] that has `initdb`, `pg_ctl` and `postgres`.
pub fn postgres_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir(POSTGRES_LIB_DIR)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(|part| part.parse::<u64>().ok())
                .collect::<Option<Vec<u64>>>()?;
            let bin = entry.path().join("bin");
            ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|b| bin.join(b).is_file())
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Whether this process runs as root (the owner of `/proc/self` is the
/// effective user).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Runs `program args…`, as [`POSTGRES_OS_USER`] via `runuser` when
/// `as_postgres`.
fn run(program: &Path, args: &[&str], as_postgres: bool) -> std::io::Result<Output> {
    let mut command = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", POSTGRES_OS_USER, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    // A stable locale keeps initdb from failing on an unset or odd one; `/`
    // as the working directory, which the postgres user can always enter.
    command
        .args(args)
        .env("LC_ALL", "C")
        .env("LANG", "C")
        .current_dir("/");
    command.output()
}

/// `pg_ctl -D data -w -t 60 args…`; panics if it cannot be run at all.
fn pg_ctl(bin: &Path, data: &Path, as_postgres: bool, args: &[&str]) -> Output {
    let data = data.to_string_lossy();
    let mut all = vec!["-D", &data, "-w", "-t", PG_CTL_WAIT_SECONDS];
    all.extend_from_slice(args);
    run(&bin.join("pg_ctl"), &all, as_postgres).unwrap_or_else(|e| panic!("cannot run pg_ctl: {e}"))
}

fn describe(out: &Output) -> String {
    format!(
        "{}; stdout: {}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// Skips (a `SKIP:` line and `None`) or, when [`crate::postgres_required`],
/// panics with `why`.
fn skip_or_panic(why: &str) -> Option<PrivatePostgres> {
    if crate::postgres_required() {
        panic!(
            "{}=1 but a private PostgreSQL cannot be started: {why}",
            crate::REQUIRE_POSTGRES_ENV
        );
    }
    crate::skip(&format!(
        "a private PostgreSQL cannot be started ({why}); install the PostgreSQL server \
         (initdb, pg_ctl under {POSTGRES_LIB_DIR}/<version>/bin) or set {}=1",
        crate::REQUIRE_POSTGRES_ENV
    ));
    None
}

/// Creates and starts a [`PrivatePostgres`]: `initdb -A trust -U postgres
/// --no-sync` into a new temp dir, then `pg_ctl start` with
/// `listen_addresses=127.0.0.1`, a free port, `unix_socket_directories`
/// inside the temp dir and `fsync=on` (written to `postgresql.conf`, so every
/// restart uses them). Runs as [`POSTGRES_OS_USER`] (via `runuser`) when
/// the tests run as root. Blocks the calling thread for a few seconds.
///
/// Returns `None` after printing a `SKIP:` line to stderr when the server
/// binaries are missing or the cluster cannot be set up, unless
/// [`crate::postgres_required`] (`FLEETREG_REQUIRE_POSTGRES=1`), where that
/// panics — the rule of [`crate::postgres_database`].
pub fn private_postgres() -> Option<PrivatePostgres> {
    let Some(bin) = postgres_bin_dir() else {
        return skip_or_panic(&format!(
            "no PostgreSQL server binaries under {POSTGRES_LIB_DIR}/<version>/bin"
        ));
    };
    let run_as_postgres = running_as_root();
    let dir = match tempfile::Builder::new().prefix("fleetreg-pg-").tempdir() {
        Ok(dir) => dir,
        Err(e) => return skip_or_panic(&format!("cannot create a temp dir: {e}")),
    };
    let socket = dir.path().join("socket");
    if let Err(e) = std::fs::create_dir(&socket) {
        return skip_or_panic(&format!("cannot create {}: {e}", socket.display()));
    }
    if run_as_postgres {
        let chown = Command::new("chown")
            .arg("-R")
            .arg(format!("{POSTGRES_OS_USER}:"))
            .arg(dir.path())
            .output();
        match chown {
            Ok(out) if out.status.success() => {}
            Ok(out) => return skip_or_panic(&format!("chown failed: {}", describe(&out))),
            Err(e) => return skip_or_panic(&format!("cannot run chown: {e}")),
        }
    }
    let data = dir.path().join("data");
    let data_arg = data.to_string_lossy().into_owned();
    let initdb = run(
        &bin.join("initdb"),
        &[
            "-D",
            &data_arg,
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        run_as_postgres,
    );
    match initdb {
        Ok(out) if out.status.success() => {}
        Ok(out) => return skip_or_panic(&format!("initdb failed: {}", describe(&out))),
        Err(e) => return skip_or_panic(&format!("cannot run initdb: {e}")),
    }
    // A free port may be taken again before the server binds it: retry with
    // another one a few times.
    let mut last_error = String::new();
    for _ in 0..5 {
        let port = crate::free_port();
        let conf = format!(
            "\n# fleetreg-testkit\nlisten_addresses = '127.0.0.1'\nport = {port}\n\
             unix_socket_directories = '{}'\nfsync = on\nsynchronous_commit = on\n\
             full_page_writes = on\n",
            socket.display()
        );
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()));
        if let Err(e) = appended {
            return skip_or_panic(&format!("cannot write postgresql.conf: {e}"));
        }
        let log = dir.path().join("server.log");
        let out = pg_ctl(
            &bin,
            &data,
            run_as_postgres,
            &["start", "-l", &log.to_string_lossy()],
        );
        if out.status.success() {
            return Some(PrivatePostgres {
                dir,
                bin,
                port,
                run_as_postgres,
            });
        }
        last_error = format!(
            "pg_ctl start failed: {}\n{}",
            describe(&out),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        // A start that timed out may have left a postmaster behind.
        let _ = pg_ctl(&bin, &data, run_as_postgres, &["stop", "-m", "immediate"]);
        // Another process may have taken the port: only that is worth a retry.
        if !last_error.contains("Address already in use") {
            break;
        }
    }
    skip_or_panic(&last_error)
}
