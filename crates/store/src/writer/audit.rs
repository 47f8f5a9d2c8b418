//! Audit entries: the row every write appends, and a write that is only an
//! audit entry (credential validation, decryption).

use super::{Write, WriteCx};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleetreg_model::{Audit, AuditEntry, AuditResult, ErrorCode};
use uuid::Uuid;

/// An audit entry with no other write (see `Store::append_audit`).
#[derive(Debug, Clone)]
pub struct AuditOnly {
    /// What was done, e.g. `credentials.validate`, `credentials.decrypt`.
    pub action: &'static str,
    /// The resource (a cluster id).
    pub resource_id: Option<Uuid>,
    /// Success or failure.
    pub result: AuditResult,
    /// The error code of a failure.
    pub error_code: Option<ErrorCode>,
}

#[async_trait]
impl Write for AuditOnly {
    type Reply = ();

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<(), StoreError>, StoreError> {
        cx.audit_entry(
            self.action,
            self.resource_id,
            self.result.clone(),
            self.error_code,
            None,
        )
        .await?;
        Ok(Ok(()))
    }
}

/// An audit row about to be written.
#[derive(Debug, Clone)]
pub(crate) struct AuditRecord<'a> {
    pub at: DateTime<Utc>,
    pub audit: &'a Audit,
    pub action: &'static str,
    pub resource_id: Option<Uuid>,
    pub result: AuditResult,
    pub error_code: Option<ErrorCode>,
    pub revision: Option<i64>,
}

impl AuditRecord<'_> {
    /// The entry as it will be stored (id 0 until the chain assigns one).
    pub fn to_entry(&self) -> AuditEntry {
        AuditEntry {
            id: 0,
            at: self.at,
            actor: self.audit.actor.clone(),
            role: self.audit.role.clone(),
            action: self.action.to_owned(),
            resource: self.resource().to_owned(),
            resource_id: self.resource_id,
            result: self.result.clone(),
            error_code: self.error_code.map(|code| code.as_str().to_owned()),
            revision: self.revision,
            source: self.audit.source.clone(),
            request_id: self.audit.request_id.clone(),
        }
    }

    /// The kind of resource: the action's prefix (`cluster`, `credentials`),
    /// except `vault.rewrap`, which changes a cluster's `credentials`.
    pub fn resource(&self) -> &'static str {
        match self.action {
            "vault.rewrap" => "credentials",
            action => action.split('.').next().unwrap_or(action),
        }
    }
}
