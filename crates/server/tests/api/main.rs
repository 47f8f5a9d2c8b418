//! Black-box tests of the HTTP API: each test starts the real server on a random
//! port, against SQLite and against PostgreSQL (`api_test!` emits both).

#[macro_use]
mod helpers;
mod audit;
mod auth_hardening;
mod auto_rotation;
mod client_health;
mod clients;
mod clusters;
mod concurrency;
mod credential_expiry;
mod credentials;
mod edge;
mod edge_render;
mod errors;
mod events;
mod fleet;
mod health;
mod history;
mod http_front;
mod input_rules;
mod isolation;
mod leaks;
mod listing;
mod openapi;
mod operations;
mod origin_binding;
mod outage;
mod prometheus;
mod rbac;
mod redis;
mod remote_bounds;
mod rollouts;
mod rotation_under_checks;
mod secrets_backend;
mod service_sync;
mod sync;
mod tls;
mod vault;
