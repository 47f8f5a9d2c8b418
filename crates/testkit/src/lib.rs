//! What fleetreg's tests share (dev-only: never a dependency of anything but
//! tests).
//!
//! - [`postgres_database`]: a fresh PostgreSQL database per test, dropped with
//!   its [`PostgresDatabase`] handle (also when the test panics). DESIGN.md's
//!   rule: the server named by `FLEETREG_TEST_POSTGRES_URL` (default
//!   [`DEFAULT_POSTGRES_URL`]) is used; when it cannot be reached the test
//!   prints a line starting `SKIP:` to stderr and gets `None`, unless
//!   `FLEETREG_REQUIRE_POSTGRES=1`, where that is a failure (a panic).
//! - [`free_port`]: a TCP port on loopback that was free a moment ago.
//! - [`private_postgres`]: a PostgreSQL cluster of the test's own (`initdb`
//!   into a temp dir, a free port), which the test may crash and restart
//!   ([`PrivatePostgres`]); never the shared server. Same skip rule as
//!   [`postgres_database`] (missing binaries are a `SKIP:` unless
//!   `FLEETREG_REQUIRE_POSTGRES=1`).
//! - [`small_disk`]: a `tmpfs` of a few MiB the test can fill up and free
//!   ([`SmallDisk`]); a `SKIP:` when it cannot be mounted (not root), unless
//!   `FLEETREG_REQUIRE_TMPFS=1`.
//! - [`skip`]: every `SKIP:` line goes through it, which also records the skip
//!   for the run's summary (`scripts/test.sh`: "N tests skipped" and why).
//! - [`skip_or_fail`]: the same rule for any other tool a test needs (its own
//!   `FLEETREG_REQUIRE_…` variable).
//! - [`leak_search`]: leak markers (unique secrets) and the search for them,
//!   plain or base64, in logs, files and output.
//! - [`spawn`]: the `fleetreg` binary's `serve` and `sim` as child processes
//!   (the binary's path passed in), and one run's output.
//! - [`caddy()`]: a real Caddy in a temp dir ([`Caddy`]: admin API on a free
//!   loopback port, `load` a JSON configuration, killed on drop); a `SKIP:`
//!   without the binary unless `FLEETREG_REQUIRE_CADDY=1`.
//! - [`edge_fixture`]: the seed's edge registry (domains, nodes, services,
//!   routings) and the builders of its records, for routing tests.
//! - [`knot()`]: a real Knot DNS server on a free loopback port ([`Knot`]:
//!   zone files, reload, queries with [`kdig`]), and [`check_zone`]
//!   (`knotc zone-check`); a `SKIP:` without the tools unless
//!   `FLEETREG_REQUIRE_KNOT=1`.
#![deny(missing_docs)]

mod caddy;
pub mod edge_fixture;
pub mod fleet_fixture;
mod knot;
pub mod leak_search;
mod private_postgres;
mod require;
mod small_disk;
pub mod spawn;

pub use caddy::{caddy, Caddy, REQUIRE_CADDY_ENV};
pub use knot::{check_zone, kdig, knot, Knot, REQUIRE_KNOT_ENV};
pub use private_postgres::{
    postgres_bin_dir, private_postgres, PrivatePostgres, POSTGRES_LIB_DIR, POSTGRES_OS_USER,
};
pub use require::{
    record_skip, required, skip, skip_or_fail, skip_records, SKIP_DIR_ENV, SKIP_RECORD_EXTENSION,
};
pub use small_disk::{
    is_enospc, small_disk, tmpfs_required, SmallDisk, FILLER_NAME, REQUIRE_TMPFS_ENV,
};

use sqlx::Connection;
use std::time::Duration;

/// The environment variable naming the PostgreSQL server (an admin URL whose
/// database the test may connect to and create databases from).
pub const POSTGRES_URL_ENV: &str = "FLEETREG_TEST_POSTGRES_URL";

/// The environment variable that, set to `1`, turns an unreachable PostgreSQL
/// server from a skip into a failure (CI sets it).
pub const REQUIRE_POSTGRES_ENV: &str = "FLEETREG_REQUIRE_POSTGRES";

/// The PostgreSQL admin URL used when [`POSTGRES_URL_ENV`] is not set.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The prefix of every database [`postgres_database`] creates.
pub const DATABASE_PREFIX: &str = "fleetreg_test_";

/// How long creating or dropping a test database may take before giving up.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The PostgreSQL admin URL: [`POSTGRES_URL_ENV`] or [`DEFAULT_POSTGRES_URL`].
pub fn postgres_admin_url() -> String {
    std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into())
}

/// Whether PostgreSQL tests must run ([`REQUIRE_POSTGRES_ENV`] is `1`).
pub fn postgres_required() -> bool {
    std::env::var(REQUIRE_POSTGRES_ENV).is_ok_and(|v| v == "1")
}

/// A database of its own for one test, created by [`postgres_database`].
///
/// Dropping the handle drops the database (`DROP DATABASE … WITH (FORCE)`,
/// which also ends connections a store still holds), including while a
/// panicking test unwinds. The drop runs on a thread of its own with its own
/// runtime and the dropping thread waits for it: it never needs the test's
/// runtime, so it cannot deadlock there, and it gives up after 30 s (with a
/// warning on stderr). [`PostgresDatabase::drop_database`] does the same from
/// async code and reports errors.
#[derive(Debug)]
pub struct PostgresDatabase {
    /// The URL of the new database (the admin URL with its path replaced).
    pub url: String,
    admin_url: String,
    name: String,
    dropped: bool,
}

impl PostgresDatabase {
    /// The database's name (`fleetreg_test_` and a UUID), e.g. to name files
    /// that belong to it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database now, reporting failure (the handle's `Drop` then does
    /// nothing).
    pub async fn drop_database(mut self) -> Result<(), sqlx::Error> {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name).await
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // `Drop` may run inside the test's runtime (where `block_on` panics)
        // or during unwinding: do the async work on a thread of its own.
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(drop_database(&admin_url, &name))
                .map_err(|e| e.to_string())
        });
        let outcome = dropper
            .join()
            .unwrap_or_else(|_| Err("the dropping thread panicked".into()));
        if let Err(error) = outcome {
            eprintln!(
                "warning: could not drop test database {}: {error}",
                self.name
            );
        }
    }
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let drop = async {
        let mut conn = sqlx::PgConnection::connect(admin_url).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut conn)
            .await?;
        conn.close().await
    };
    tokio::time::timeout(ADMIN_TIMEOUT, drop)
        .await
        .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut))
}

/// `url` with its password (if any) replaced by `***`, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// `admin_url` naming database `name` instead (query parameters kept).
fn database_url(admin_url: &str, name: &str) -> String {
    match url::Url::parse(admin_url) {
        Ok(mut parsed) => {
            parsed.set_path(&format!("/{name}"));
            parsed.to_string()
        }
        Err(_) => match admin_url.rfind('/') {
            Some(i) if i > "postgres://".len() => format!("{}/{name}", &admin_url[..i]),
            _ => format!("{admin_url}/{name}"),
        },
    }
}

/// Creates a fresh, empty database for one test on the server of
/// [`postgres_admin_url`].
///
/// Returns `None` after printing a `SKIP:` line to stderr when the server
/// cannot be reached, unless [`postgres_required`], where it panics. A server
/// that answers but refuses to create the database is a failure (panic) too.
pub async fn postgres_database() -> Option<PostgresDatabase> {
    let admin_url = postgres_admin_url();
    let connect = tokio::time::timeout(ADMIN_TIMEOUT, sqlx::PgConnection::connect(&admin_url));
    let mut conn = match connect.await {
        Ok(Ok(conn)) => conn,
        outcome => {
            let error = match outcome {
                Ok(Err(error)) => error.to_string(),
                _ => format!("no answer within {ADMIN_TIMEOUT:?}"),
            };
            let shown = redact(&admin_url);
            if postgres_required() {
                panic!(
                    "{REQUIRE_POSTGRES_ENV}=1 but PostgreSQL at {shown} is unreachable: {error}"
                );
            }
            skip(&format!(
                "PostgreSQL at {shown} is unreachable ({error}); \
                 set {POSTGRES_URL_ENV} or {REQUIRE_POSTGRES_ENV}=1"
            ));
            return None;
        }
    };
    let name = format!("{DATABASE_PREFIX}{}", uuid::Uuid::new_v4().simple());
    if let Err(error) = sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
    {
        panic!(
            "PostgreSQL at {} refused to create test database {name}: {error}",
            redact(&admin_url)
        );
    }
    let _ = conn.close().await;
    Some(PostgresDatabase {
        url: database_url(&admin_url, &name),
        admin_url,
        name,
        dropped: false,
    })
}

/// A TCP port on 127.0.0.1 that was free when this returned (the OS picked it
/// for a listener that is closed again). Another process may take it before
/// the caller binds it; prefer binding port 0 directly where the code allows.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap_or_else(|e| panic!("cannot bind a port on 127.0.0.1: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read the bound address: {e}"))
        .port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_replaces_the_path_and_keeps_the_query() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/test", "db1"),
            "postgres://postgres@127.0.0.1:5432/db1"
        );
        assert_eq!(
            database_url("postgres://u:pw@h/test?sslmode=disable", "db1"),
            "postgres://u:pw@h/db1?sslmode=disable"
        );
        assert_eq!(database_url("postgres://h", "db1"), "postgres://h/db1");
    }

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }

    #[tokio::test]
    async fn databases_are_created_and_dropped() {
        let Some(db) = postgres_database().await else {
            return;
        };
        let name = db.name().to_owned();
        assert!(name.starts_with(DATABASE_PREFIX));
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let current: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(current, name);
        // Dropping the handle inside a runtime, with a connection still open,
        // must neither deadlock nor leave the database behind.
        drop(db);
        let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
            .await
            .unwrap();
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert_eq!(left, 0, "database {name} was not dropped");
    }

    async fn connect(url: &str) -> Result<sqlx::PgConnection, sqlx::Error> {
        tokio::time::timeout(Duration::from_secs(10), sqlx::PgConnection::connect(url))
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }

    /// Start, connect and write; crash: the connection and new ones fail;
    /// start again: what was committed is still there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn private_postgres_crashes_and_restarts() {
        let Some(pg) = tokio::task::block_in_place(private_postgres) else {
            return;
        };
        let url = pg.url();
        assert_eq!(
            url,
            format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port())
        );
        assert!(pg.is_running());
        let mut conn = connect(&url).await.expect("connect to the private server");
        sqlx::query("CREATE TABLE kept (n INT)")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO kept VALUES (42)")
            .execute(&mut conn)
            .await
            .unwrap();
        let fsync: String = sqlx::query_scalar("SHOW fsync")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(fsync, "on");

        tokio::task::block_in_place(|| pg.crash());
        assert!(!pg.is_running());
        assert!(
            sqlx::query("SELECT 1").execute(&mut conn).await.is_err(),
            "a connection survived the crash"
        );
        assert!(
            connect(&url).await.is_err(),
            "a new connection succeeded while the server is down"
        );

        tokio::task::block_in_place(|| pg.start());
        assert!(pg.is_running());
        let mut conn = connect(&url).await.expect("connect after the restart");
        let n: i32 = sqlx::query_scalar("SELECT n FROM kept")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(n, 42, "a committed row was lost in the crash");
        conn.close().await.unwrap();

        let dir = pg.dir().to_owned();
        tokio::task::block_in_place(|| drop(pg));
        assert!(!dir.exists(), "{} was not removed", dir.display());
        assert!(
            connect(&url).await.is_err(),
            "the server outlived its handle"
        );
    }

    /// Two private clusters side by side get ports and directories of their own.
    #[test]
    fn private_postgres_clusters_are_separate() {
        let Some(a) = private_postgres() else { return };
        let Some(b) = private_postgres() else { return };
        assert_ne!(a.port(), b.port());
        assert_ne!(a.dir(), b.dir());
    }

    #[test]
    fn small_disk_fills_up_and_frees() {
        let Some(disk) = small_disk(2) else { return };
        assert_eq!(disk.size_mib(), 2);
        let probe = disk.path().join("probe");
        std::fs::write(&probe, b"fits").expect("write to the empty disk");

        let filled = disk.fill();
        assert!(
            filled > 1024 * 1024 && filled <= 2 * 1024 * 1024,
            "the filler took {filled} bytes of 2 MiB"
        );
        let error = std::fs::write(disk.path().join("more"), vec![1u8; 4096])
            .expect_err("a write succeeded on the full disk");
        assert!(is_enospc(&error), "not ENOSPC: {error}");
        assert_eq!(std::fs::read(&probe).unwrap(), b"fits");

        disk.free();
        assert!(!disk.filler().exists());
        std::fs::write(disk.path().join("more"), vec![1u8; 512 * 1024])
            .expect("write after freeing the space");
        disk.free(); // nothing left to remove: no error

        let path = disk.path().to_owned();
        drop(disk);
        assert!(!path.exists(), "{} was not removed", path.display());
    }
}
