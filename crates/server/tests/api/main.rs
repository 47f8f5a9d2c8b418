//! Black-box tests of the HTTP API: each test starts the real server on a random
//! port, against SQLite and against PostgreSQL (`api_test!` emits both).

#[macro_use]
mod helpers;
mod clusters;
mod concurrency;
mod errors;
mod events;
mod fleet;
mod health;
mod history;
mod listing;
mod operations;
mod redis;
