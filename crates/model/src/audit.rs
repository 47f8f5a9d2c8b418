//! Audit records: who did what, when, from where, with which result.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Who is making a change; passed to every store write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// The authenticated actor (`anonymous` until authentication exists).
    pub actor: String,
    /// The actor's role, when known.
    pub role: Option<String>,
    /// Source address of the request.
    pub source: Option<String>,
    /// Request id, to find the matching log lines.
    pub request_id: Option<String>,
}

impl Audit {
    /// An actor acting from inside the server (workers).
    pub fn system(worker: &str) -> Self {
        Audit {
            actor: format!("system:{worker}"),
            role: None,
            source: None,
            request_id: None,
        }
    }
}

/// Outcome of an audited action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuditResult {
    /// The action took effect.
    Success,
    /// The action was refused; the error code says why.
    Failure,
}

/// One stored audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Sequence number.
    pub id: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it.
    pub actor: String,
    /// The actor's role.
    pub role: Option<String>,
    /// What was done (`cluster.create`, `cluster.update`, `cluster.delete`, …).
    pub action: String,
    /// Kind of resource.
    pub resource: String,
    /// Which resource, when known.
    pub resource_id: Option<Uuid>,
    /// Success or failure.
    pub result: AuditResult,
    /// Error code of a failure.
    pub error_code: Option<String>,
    /// Change-log revision the action produced.
    pub revision: Option<i64>,
    /// Source address.
    pub source: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
}
