//! Black-box tests of the HTTP API: each test starts the real server on a random
//! port, against SQLite and against PostgreSQL (`api_test!` emits both).

#[macro_use]
mod helpers;
mod audit;
mod clusters;
mod concurrency;
mod credential_expiry;
mod credentials;
mod errors;
mod events;
mod fleet;
mod health;
mod history;
mod isolation;
mod leaks;
mod listing;
mod operations;
mod prometheus;
mod rbac;
mod redis;
mod tls;
mod vault;
