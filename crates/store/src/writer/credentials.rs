//! Sealed credentials of a cluster (stored, rotated, deleted, re-wrapped) and
//! the vault canary. The store never sees plaintext.

use super::cluster::current;
use super::{Write, WriteCx};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleetreg_model::{
    AuditResult, AuthType, Cluster, CredentialBinding, CredentialOrigins, CredentialWrite,
    ErrorCode, EventType, StoredCredentials,
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
    /// The origins of the cluster's URLs they were validated against: the
    /// only ones they will be presented to. When the cluster has moved on
    /// since, they are stored `ORIGIN_CHANGED`.
    pub origins: CredentialOrigins,
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
        let cluster = match current(cx, id, None).await? {
            Ok(cluster) => cluster,
            Err(not_found) => return cx.refuse(action, Some(id), not_found).await,
        };
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
            origins: self.origins.clone(),
            unbound_at: unbound_at(cx, &self.origins, &cluster),
        };
        cx.tx.upsert_credentials(&stored).await?;
        let revision = credentials_updated(cx, id)?;
        cx.audit_success(action, Some(id), Some(revision)).await?;
        Ok(Ok(stored))
    }
}

/// Binds a cluster's credentials to the origins they were just re-validated
/// against (see `Store::bind_credentials`).
#[derive(Debug, Clone)]
pub struct BindCredentials {
    /// The cluster.
    pub cluster_id: Uuid,
    /// The version that was validated; refused with `PreconditionFailed`
    /// when the stored credentials have another.
    pub expected_version: i64,
    /// The origins of the cluster's URLs the validation reached.
    pub origins: CredentialOrigins,
}

#[async_trait]
impl Write for BindCredentials {
    type Reply = StoredCredentials;

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<StoredCredentials, StoreError>, StoreError> {
        let action = "credentials.rebind";
        let id = self.cluster_id;
        let cluster = match current(cx, id, None).await? {
            Ok(cluster) => cluster,
            Err(not_found) => return cx.refuse(action, Some(id), not_found).await,
        };
        let Some(mut stored) = cx.tx.load_credentials(id).await? else {
            let none = StoreError::CredentialsNotFound(id);
            return cx.refuse(action, Some(id), none).await;
        };
        if stored.version != self.expected_version {
            let stale = StoreError::PreconditionFailed {
                expected: self.expected_version,
                actual: stored.version,
                id,
            };
            return cx.refuse(action, Some(id), stale).await;
        }
        stored.origins = self.origins.clone();
        stored.unbound_at = unbound_at(cx, &self.origins, &cluster);
        cx.tx
            .set_credentials_binding(id, &stored.origins, stored.unbound_at)
            .await?;
        let payload = json!({
            "cluster_id": id,
            "binding": stored.binding(),
            "origins": stored.origins,
        });
        let event = cx.append_event(EventType::ClusterCredentialsUpdated, id, payload)?;
        cx.audit_success(action, Some(id), Some(event.revision))
            .await?;
        Ok(Ok(stored))
    }
}

/// Within a cluster update: when `cluster` (as updated) has a URL at another
/// origin than its bound credentials were validated against, marks them
/// `ORIGIN_CHANGED` — presented nowhere from this commit on — with
/// `CLUSTER_CREDENTIALS_UPDATED` (payload `{cluster_id, binding, moved}`) and
/// a `credentials.unbind` audit entry of the same caller. Nothing when there
/// are none, or they are unbound already.
pub(super) async fn unbind_if_moved(
    cx: &mut WriteCx<'_>,
    cluster: &Cluster,
) -> Result<(), StoreError> {
    let Some(stored) = cx.tx.load_credentials(cluster.id).await? else {
        return Ok(());
    };
    let moved = stored.origins.moved(&CredentialOrigins::of(cluster));
    if stored.unbound_at.is_some() || moved.is_empty() {
        return Ok(());
    }
    cx.tx
        .set_credentials_binding(cluster.id, &stored.origins, Some(cx.at))
        .await?;
    let moved: Vec<&str> = moved.into_iter().map(CredentialOrigins::field).collect();
    let payload = json!({
        "cluster_id": cluster.id,
        "binding": CredentialBinding::OriginChanged,
        "moved": moved,
    });
    let event = cx.append_event(EventType::ClusterCredentialsUpdated, cluster.id, payload)?;
    cx.audit_success("credentials.unbind", Some(cluster.id), Some(event.revision))
        .await
}

/// `None` (bound) when `cluster`'s URLs are at `origins`, else now: what was
/// validated is no longer where the cluster is.
fn unbound_at(
    cx: &WriteCx<'_>,
    origins: &CredentialOrigins,
    cluster: &Cluster,
) -> Option<DateTime<Utc>> {
    let moved = origins.moved(&CredentialOrigins::of(cluster));
    (!moved.is_empty()).then_some(cx.at)
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
