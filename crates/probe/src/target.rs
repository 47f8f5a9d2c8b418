//! [`Target`]: what the probe needs to know to reach one cluster.

use crate::credential::ClusterCredential;
use fleetreg_model::{Cluster, Endpoints};
use std::sync::Arc;

/// A cluster as the probe sees it: where its API server and observability
/// endpoints are, and the credential to present.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base URL of the API server; a path is kept as a prefix of every request
    /// (`http://127.0.0.1:9000/c/name` → `…/c/name/api/v1/namespaces`). The
    /// probe connects here, whatever `server` a kubeconfig named.
    pub api_server_url: String,
    /// Observability endpoints; each one configured is checked.
    pub endpoints: Endpoints,
    /// What to authenticate with: the API server's part goes to the API server
    /// only, each observability token to its own endpoint only. `None` is
    /// anonymous.
    pub credential: Option<Arc<ClusterCredential>>,
}

impl Target {
    /// The target of a registered cluster, with no credential.
    pub fn from_cluster(cluster: &Cluster) -> Target {
        Target {
            api_server_url: cluster.api_server_url.clone(),
            endpoints: cluster.endpoints.clone(),
            credential: None,
        }
    }

    /// The same target presenting `credential`.
    pub fn with_credential(self, credential: Arc<ClusterCredential>) -> Target {
        Target {
            credential: Some(credential),
            ..self
        }
    }
}
