//! Authentication and roles: bearer tokens (stored as a keyed hash), the permission
//! matrix, the bootstrap admin token and the request's principal.
//!
//! Invariant: every matched route passes [`authorize`] — `/health` and `/ready`
//! (and `/metrics` unless configured otherwise) are open, everything else needs
//! a token whose role the matrix in [`permissions`] allows.

mod bootstrap;
mod middleware;
pub mod permissions;
mod tokens;

pub use bootstrap::{check_preset, check_token_file, ensure_admin_token, BootstrapError};
pub use middleware::{authorize, AuthState, Principal, Session};
pub(crate) use tokens::listed_prefix;
pub use tokens::{new_token, rekey_stored_tokens, TokenHasher, TOKEN_KEY_PURPOSE, TOKEN_PREFIX};
