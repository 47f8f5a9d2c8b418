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
/// Readers and edge agents (an agent only for its own node: the handler checks).
const NODE_READERS: &[Role] = &[Role::Admin, Role::Operator, Role::Viewer, Role::Agent];
/// Writers and edge agents (an agent only for its own node: the handler checks).
const NODE_WRITERS: &[Role] = &[Role::Admin, Role::Operator, Role::Agent];

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
        // An agent token reads and acknowledges its own node's configuration.
        "/api/v1/nodes/{name}/config" | "/api/v1/nodes/{name}/config/stream" => {
            Access::Roles(NODE_READERS)
        }
        "/api/v1/nodes/{name}/ack" => Access::Roles(NODE_WRITERS),
        // Mints a token that can read a node's routes.
        "/api/v1/nodes/{name}/token" => Access::Roles(ADMINS),
        // Presents stored secrets to wherever the cluster's URLs now point.
        "/api/v1/clusters/{id}/credentials/rebind" => Access::Roles(ADMINS),
        _ if *method == Method::GET || *method == Method::HEAD => Access::Roles(READERS),
        _ => Access::Roles(WRITERS),
    }
}

/// The audit action of `method` on the matched route `path`: what a refused
/// call would have done (the actions the writes themselves audit, and
/// `{resource}.read` for reads).
pub fn action(method: &Method, path: &str) -> &'static str {
    let write = !(*method == Method::GET || *method == Method::HEAD);
    match (method.as_str(), path) {
        ("POST", "/api/v1/clusters") => "cluster.create",
        ("PUT", "/api/v1/clusters/{id}") => "cluster.update",
        ("DELETE", "/api/v1/clusters/{id}") => "cluster.delete",
        ("POST", "/api/v1/clusters/{id}/refresh") => "cluster.refresh",
        ("POST", "/api/v1/clusters/{id}/credentials") => "credentials.store",
        ("DELETE", "/api/v1/clusters/{id}/credentials") => "credentials.delete",
        ("POST", "/api/v1/clusters/{id}/credentials/rotate") => "credentials.rotate",
        ("POST", "/api/v1/clusters/{id}/credentials/validate") => "credentials.validate",
        ("POST", "/api/v1/clusters/{id}/credentials/rebind") => "credentials.rebind",
        ("POST", "/api/v1/clients") => "client.create",
        ("PUT", "/api/v1/clients/{name}") => "client.update",
        ("DELETE", "/api/v1/clients/{name}") => "client.delete",
        ("POST", "/api/v1/clients/import") => "client.import",
        ("POST", p) if p.starts_with("/api/v1/clients/{name}/") => {
            match p.rsplit('/').next().unwrap_or_default() {
                "deploy" => "client.deploy",
                "rebuild" => "client.rebuild",
                "destroy" => "client.destroy",
                "status" => "client.status",
                "maintenance" => "client.maintenance",
                "versions" => "client.versions",
                "notes" => "client.notes",
                _ => "client.write",
            }
        }
        ("POST", "/api/v1/clusters/{id}/hosts") => "host.create",
        ("POST", "/api/v1/clusters/{id}/leader") => "leader.claim",
        ("POST", "/api/v1/hosts/{host_id}/deployments") => "deployment.create",
        ("DELETE", "/api/v1/deployments/{deployment_id}") => "deployment.delete",
        ("POST", "/api/v1/deployments/{deployment_id}/enable") => "deployment.enable_sync",
        ("POST", "/api/v1/deployments/{deployment_id}/pause") => "deployment.pause_sync",
        ("POST", "/api/v1/deployments/{deployment_id}/move") => "deployment.move",
        ("POST", "/api/v1/deployments/{deployment_id}/sync") => "sync.start",
        ("POST", "/api/v1/deployments/{deployment_id}/conflicts") => "sync.conflict",
        ("POST", "/api/v1/sync-jobs/{job_id}/finish") => "sync.finish",
        ("POST", "/api/v1/rollouts") => "rollout.start",
        ("POST", "/api/v1/rollouts/{rollout_id}/promote") => "rollout.promote",
        ("POST", "/api/v1/rollouts/{rollout_id}/pause") => "rollout.pause",
        ("POST", "/api/v1/rollouts/{rollout_id}/resume") => "rollout.resume",
        ("POST", "/api/v1/rollouts/{rollout_id}/abort") => "rollout.abort",
        ("POST", "/api/v1/domains") => "domain.create",
        ("PUT", "/api/v1/domains/{name}") => "domain.update",
        ("DELETE", "/api/v1/domains/{name}") => "domain.delete",
        ("POST", "/api/v1/nodes") => "node.create",
        ("PUT", "/api/v1/nodes/{name}") => "node.update",
        ("DELETE", "/api/v1/nodes/{name}") => "node.delete",
        ("POST", "/api/v1/nodes/{name}/ack") => "node.ack",
        ("POST", "/api/v1/nodes/{name}/token") => "token.create",
        ("POST", "/api/v1/services") => "service.create",
        ("PUT", "/api/v1/services/{name}") => "service.update",
        ("DELETE", "/api/v1/services/{name}") => "service.delete",
        ("POST", "/api/v1/services/sync") => "service.sync",
        ("PUT", "/api/v1/routing/{service}") => "routing.configure",
        ("DELETE", "/api/v1/routing/{service}") => "routing.delete",
        ("POST", "/api/v1/sync/push") => "sync.push",
        ("POST", "/api/v1/sync/reconcile") => "sync.reconcile",
        ("POST", "/api/v1/tokens") => "token.create",
        ("DELETE", "/api/v1/tokens/{id}") => "token.revoke",
        ("GET", "/api/v1/tokens") => "token.list",
        ("GET", "/metrics") => "metrics.read",
        ("GET", "/api/v1/openapi.json") => "openapi.read",
        (_, p) if write => match p.split('/').nth(3) {
            Some("clusters") => "cluster.write",
            Some("clients") => "client.write",
            Some("hosts") => "host.write",
            Some("deployments") => "deployment.write",
            Some("sync-jobs") => "sync.write",
            Some("rollouts") => "rollout.write",
            Some("credentials") => "credentials.write",
            Some("tokens") => "token.write",
            _ => "api.write",
        },
        (_, p) => match p.split('/').nth(3) {
            Some("audit") => "audit.read",
            Some("credentials") => "credentials.read",
            Some("events") => "event.read",
            Some("fleet") => "fleet.read",
            Some("clusters") => "cluster.read",
            Some("clients") => "client.read",
            Some("hosts") => "host.read",
            Some("deployments") => "deployment.read",
            Some("rollouts") => "rollout.read",
            Some("domains") => "domain.read",
            Some("nodes") => "node.read",
            Some("services") => "service.read",
            Some("routing" | "routes") => "routing.read",
            Some("sync") => "sync.read",
            _ => "api.read",
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_calls_are_named_like_the_writes_they_attempted() {
        let cases = [
            (Method::POST, "/api/v1/clusters", "cluster.create"),
            (Method::DELETE, "/api/v1/clusters/{id}", "cluster.delete"),
            (
                Method::POST,
                "/api/v1/clusters/{id}/credentials/rotate",
                "credentials.rotate",
            ),
            (Method::DELETE, "/api/v1/tokens/{id}", "token.revoke"),
            (Method::GET, "/api/v1/audit", "audit.read"),
            (Method::GET, "/api/v1/clusters/{id}/status", "cluster.read"),
            (
                Method::GET,
                "/api/v1/credentials/expiring",
                "credentials.read",
            ),
            (Method::PATCH, "/api/v1/clusters/{id}", "cluster.write"),
            (Method::POST, "/api/v1/clusters/{id}/hosts", "host.create"),
            (
                Method::POST,
                "/api/v1/clients/{name}/deploy",
                "client.deploy",
            ),
            (
                Method::POST,
                "/api/v1/sync-jobs/{job_id}/finish",
                "sync.finish",
            ),
        ];
        for (method, path, expected) in cases {
            assert_eq!(action(&method, path), expected, "{method} {path}");
        }
    }
}
