//! Sealed credentials of a cluster (stored, rotated, deleted, re-wrapped) and
//! the vault canary. The store never sees plaintext.

use super::cluster::current;
use super::{Write, WriteCx};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleetreg_model::{
    AuditResult, AuthType, CredentialWrite, ErrorCode, EventType, StoredCredentials,
};
use serde_json::json;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Sealed credentials to store for a cluster (see `Store::put_credentials`).
#[derive(Debug, Clone)]
pub struct PutCredentials {
    /// The cluster.
    pub cluster_id: Uuid,
    /// Store (first or replacing) or rotate (existing ones required).
    pub write: CredentialWrite,
    /// How they authenticate.
    pub auth_type: AuthType,
    /// Secret field name → vault envelope.
    pub sealed: BTreeMap<String, String>,
    /// The master key id the envelopes are wrapped with.
    pub key_id: String,
    /// When they expire, when known.
    pub expires_at: Option<DateTime<Utc>>,
    /// Write only while the stored credentials have this version (automatic
    /// rotation: never replace credentials changed since they were read);
    /// otherwise refused with `PreconditionFailed` (`expected`/`actual` are
    /// credential versions; 0: none stored). `Some(0)`: only while none are
    /// stored. `None`: unconditional.
    pub expected_version: Option<i64>,
}

#[async_trait]
impl Write for PutCredentials {
    type Reply = StoredCredentials;

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<StoredCredentials, StoreError>, StoreError> {
        let action = self.write.action();
        let id = self.cluster_id;
        if let Err(not_found) = current(cx, id, None).await? {
            return cx.refuse(action, Some(id), not_found).await;
        }
        let current = cx.tx.load_credentials(id).await?;
        let current_version = current.as_ref().map_or(0, |c| c.version);
        if self.write == CredentialWrite::Rotate && current.is_none() {
            return cx
                .refuse(action, Some(id), StoreError::CredentialsNotFound(id))
                .await;
        }
        if let Some(expected) = self.expected_version.filter(|v| *v != current_version) {
            let stale = StoreError::PreconditionFailed {
                expected,
                actual: current_version,
                id,
            };
            return cx.refuse(action, Some(id), stale).await;
        }
        let stored = StoredCredentials {
            cluster_id: id,
            version: current_version + 1,
            auth_type: self.auth_type,
            sealed: self.sealed.clone(),
            key_id: self.key_id.clone(),
            expires_at: self.expires_at,
            created_at: current.as_ref().map_or(cx.at, |c| c.created_at),
            updated_at: cx.at,
        };
        cx.tx.upsert_credentials(&stored).await?;
        let revision = credentials_updated(cx, id)?;
        cx.audit_success(action, Some(id), Some(revision)).await?;
        Ok(Ok(stored))
    }
}

/// Deletes a cluster's credentials (see `Store::delete_credentials`).
pub(crate) struct DeleteCredentials(pub Uuid);

#[async_trait]
impl Write for DeleteCredentials {
    type Reply = ();

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<(), StoreError>, StoreError> {
        let action = "credentials.delete";
        let id = self.0;
        if let Err(not_found) = current(cx, id, None).await? {
            return cx.refuse(action, Some(id), not_found).await;
        }
        if !cx.tx.delete_credentials(id).await? {
            return cx
                .refuse(action, Some(id), StoreError::CredentialsNotFound(id))
                .await;
        }
        let revision = credentials_updated(cx, id)?;
        cx.audit_success(action, Some(id), Some(revision)).await?;
        Ok(Ok(()))
    }
}

/// Re-wrapped envelopes to put in place of a cluster's current ones (see
/// `Store::rewrap_credentials`).
#[derive(Debug, Clone)]
pub struct RewrapCredentials {
    /// The cluster.
    pub cluster_id: Uuid,
    /// The version the envelopes were read at; nothing is written unless the
    /// stored credentials still have it.
    pub expected_version: i64,
    /// Secret field name → re-wrapped vault envelope (every field).
    pub sealed: BTreeMap<String, String>,
    /// The master key id now wrapping the data keys.
    pub key_id: String,
}

#[async_trait]
impl Write for RewrapCredentials {
    /// Whether the envelopes were replaced.
    type Reply = bool;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<bool, StoreError>, StoreError> {
        // Same secrets, new wraps: no version, no event; a version that moved
        // (a concurrent upload or rotation) wins and is left alone.
        let done = cx.tx.rewrap_credentials(self).await?;
        let (result, code) = if done {
            (AuditResult::Success, None)
        } else {
            (AuditResult::Failure, Some(ErrorCode::PreconditionFailed))
        };
        cx.audit_entry("vault.rewrap", Some(self.cluster_id), result, code, None)
            .await?;
        Ok(Ok(done))
    }
}

/// Replaces (or records) the vault canary after a master-key rotation.
pub(crate) struct ReplaceVaultCanary {
    pub sealed: String,
    pub key_id: String,
}

#[async_trait]
impl Write for ReplaceVaultCanary {
    type Reply = ();

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<(), StoreError>, StoreError> {
        cx.tx
            .replace_vault_canary(&self.sealed, &self.key_id, cx.at)
            .await?;
        cx.audit_success("vault.canary", None, None).await?;
        Ok(Ok(()))
    }
}

/// Appends `CLUSTER_CREDENTIALS_UPDATED` (payload `{cluster_id}` only) and
/// returns its revision.
fn credentials_updated(cx: &mut WriteCx<'_>, cluster_id: Uuid) -> Result<i64, StoreError> {
    let payload = json!({ "cluster_id": cluster_id });
    Ok(cx
        .append_event(EventType::ClusterCredentialsUpdated, cluster_id, payload)?
        .revision)
}
