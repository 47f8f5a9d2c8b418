//! Black-box tests of the HTTP API: each test starts the real server on a random
//! port, against SQLite and against PostgreSQL (`api_test!` emits both).

#[macro_use]
mod helpers;
mod audit;
mod auto_rotation;
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
mod leak_search;
mod leaks;
mod listing;
mod operations;
mod outage;
mod prometheus;
mod rbac;
mod redis;
mod rotation_under_checks;
mod secrets_backend;
mod tls;
mod vault;
