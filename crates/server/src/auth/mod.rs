//! Authentication and roles: bearer tokens (stored hashed), the permission
//! matrix, the bootstrap admin token and the request's principal.
//!
//! Invariant: every matched route passes [`authorize`] — `/health` and `/ready`
//! (and `/metrics` unless configured otherwise) are open, everything else needs
//! a token whose role the matrix in [`permissions`] allows.

mod bootstrap;
mod middleware;
pub mod permissions;
mod tokens;

pub use bootstrap::{ensure_admin_token, BootstrapError};
pub use middleware::{authorize, AuthState, Principal};
pub use tokens::{hash_token, new_token, TOKEN_PREFIX};
