//! The permission matrix: which roles may call which route. The README's table
//! and the RBAC test (`tests/api/rbac.rs`) spell out the same matrix.

use axum::http::Method;
use fleetreg_model::Role;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token.
    Open,
    /// Any valid token, whatever its role.
    AnyRole,
    /// Tokens of these roles.
    Roles(&'static [Role]),
}

const READERS: &[Role] = &[Role::Admin, Role::Operator, Role::Viewer];
const WRITERS: &[Role] = &[Role::Admin, Role::Operator];
const AUDITORS: &[Role] = &[Role::Admin, Role::Auditor];
const ADMINS: &[Role] = &[Role::Admin];

/// The access rule of `method` on the matched route `path`; `metrics_open`
/// leaves `/metrics` without authentication (`auth.metrics_open`).
pub fn access(method: &Method, path: &str, metrics_open: bool) -> Access {
    match path {
        "/health" | "/ready" => Access::Open,
        "/metrics" if metrics_open => Access::Open,
        "/metrics" => Access::Roles(READERS),
        "/api/v1/openapi.json" => Access::AnyRole,
        p if p.starts_with("/api/v1/audit") => Access::Roles(AUDITORS),
        p if p.starts_with("/api/v1/tokens") => Access::Roles(ADMINS),
        _ if *method == Method::GET || *method == Method::HEAD => Access::Roles(READERS),
        _ => Access::Roles(WRITERS),
    }
}

impl Access {
    /// Whether a principal with `role` (or none) passes.
    pub fn allows(self, role: Option<Role>) -> bool {
        match (self, role) {
            (Access::Open, _) => true,
            (_, None) => false,
            (Access::AnyRole, Some(_)) => true,
            (Access::Roles(roles), Some(role)) => roles.contains(&role),
        }
    }
}
