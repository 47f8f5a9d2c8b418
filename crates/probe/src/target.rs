//! [`Target`]: what the probe needs to know to reach one cluster.

use fleetreg_model::{Cluster, Endpoints};

/// A cluster as the probe sees it: where its API server and observability
/// endpoints are, and the credential to present to the API server.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base URL of the API server; a path is kept as a prefix of every request
    /// (`http://127.0.0.1:9000/c/name` → `…/c/name/api/v1/namespaces`).
    pub api_server_url: String,
    /// Observability endpoints; each one configured is checked.
    pub endpoints: Endpoints,
    /// What to authenticate with (sent to the API server only, never to the
    /// user-supplied observability URLs).
    pub credential: Credential,
}

impl Target {
    /// The target of a registered cluster, with no credential.
    pub fn from_cluster(cluster: &Cluster) -> Target {
        Target {
            api_server_url: cluster.api_server_url.clone(),
            endpoints: cluster.endpoints.clone(),
            credential: Credential::None,
        }
    }

    /// The same target presenting `credential`.
    pub fn with_credential(self, credential: Credential) -> Target {
        Target { credential, ..self }
    }
}

/// A credential for the API server.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Credential {
    /// Anonymous.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    BearerToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::None => f.write_str("None"),
            Credential::BearerToken(_) => f.write_str("BearerToken(<redacted>)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let text = format!("{:?}", Credential::BearerToken("s3cret".into()));
        assert!(!text.contains("s3cret"));
    }
}
