//! The store contract: every method of `fleetreg_store::Store`, exercised
//! through the trait only, on SQLite and on PostgreSQL with the same bodies.
//!
//! `store_test!(name, |store| async move { … })` emits `name::sqlite` and
//! `name::postgres`. Each gets a fresh store from `fleetreg_store::connect_with`:
//! SQLite in a temporary directory, PostgreSQL in a database of its own from
//! `fleetreg-testkit` (a `SKIP:` line when no server answers, unless
//! `FLEETREG_REQUIRE_POSTGRES=1`, where that fails). The default options carry
//! an audit keyring; `store_test!(name, options = expr, |store| …)` sets others.

/// Emits `$name::sqlite` and `$name::postgres`, running the body (a closure
/// taking `Arc<dyn Store>` and returning a future) on a fresh store of each.
macro_rules! store_test {
    ($name:ident, $body:expr) => {
        store_test!($name, options = crate::harness::test_options(), $body);
    };
    ($name:ident, options = $options:expr, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                crate::harness::run_sqlite($options, $body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                crate::harness::run_postgres($options, $body).await;
            }
        }
    };
}

mod harness;

mod audit;
mod basics;
mod client_health;
mod clients;
mod clock;
mod clusters;
mod credentials;
mod edge;
mod events;
mod fleet;
mod history;
mod listing;
mod origins;
mod rollouts;
mod sync;
mod tokens;
