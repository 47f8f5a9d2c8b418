//! [`replace`]: the one way new credentials take a cluster's place — upload
//! (`POST …/credentials`), manual rotation (`POST …/credentials/rotate`) and
//! automatic rotation ([`super::auto_rotate`]) all go through it.
//!
//! Zero downtime: the new credentials are checked and validated against the
//! cluster before anything is written; a failure writes nothing (the old ones
//! stay in force) and is audited; success is one store write (new version,
//! `CLUSTER_CREDENTIALS_UPDATED`, audit entry in one transaction), after which
//! checks pick the new version up. Checks already running keep the credential
//! they opened (an immutable `Arc`), never a half-written one.

use super::{Credentials, CredentialsError};
use crate::health::{
    check_and_record, discover_and_record, ClusterGuard, CredentialsLookup, HealthContext,
};
use fleetreg_model::{
    Audit, AuditResult, Cluster, CredentialInput, CredentialValidation, CredentialWrite, ErrorCode,
    StoredCredentials,
};
use fleetreg_probe::{ClusterCredential, CredentialError, Failure, Target};
use fleetreg_store::{AuditOnly, Store, StoreError};
use std::sync::Arc;

/// What to put in place of a cluster's credentials.
#[derive(Debug)]
pub struct Replace<'a> {
    /// Store (first or replacing) or rotate (existing ones required).
    pub write: CredentialWrite,
    /// The new credentials.
    pub input: &'a CredentialInput,
    /// Write only while the stored version is this one (automatic rotation);
    /// `None`: the version read just before writing (see [`Credentials::put`]).
    pub expected_version: Option<i64>,
    /// Who does it (the audit entry).
    pub audit: &'a Audit,
}

/// The new credentials were stored.
#[derive(Debug)]
pub struct Replaced {
    /// What the store now holds.
    pub stored: StoredCredentials,
    /// What each component said to the new credentials.
    pub validation: CredentialValidation,
}

/// Why nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// The fields do not fit together (`VALIDATION_ERROR`; not audited, like
    /// any malformed request).
    #[error(transparent)]
    Shape(fleetreg_model::Error),
    /// The credentials cannot be used (kubeconfig safety, malformed token or
    /// CA): `CREDENTIALS_INVALID`, audited.
    #[error(transparent)]
    Unusable(CredentialError),
    /// A component refused them: `CREDENTIALS_INVALID`, audited.
    #[error("the credentials failed validation against the cluster")]
    Rejected {
        /// Each component's outcome.
        validation: CredentialValidation,
        /// The causes (never credentials).
        failures: Vec<Failure>,
    },
    /// The store or the vault failed, or refused the write (e.g.
    /// `PreconditionFailed` when the version moved on).
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
}

impl From<StoreError> for ReplaceError {
    fn from(error: StoreError) -> Self {
        ReplaceError::Credentials(error.into())
    }
}

/// Checks `replace.input` against `cluster`, validates it with the cluster,
/// then stores it; afterwards a health check and discovery with the new
/// credentials run in the background. The caller holds `_writes`, the
/// cluster's credential write lock ([`Credentials::lock_writes`]).
pub async fn replace(
    store: &Arc<dyn Store>,
    health: &HealthContext,
    cluster: Cluster,
    replace: Replace<'_>,
    _writes: &ClusterGuard,
) -> Result<Replaced, ReplaceError> {
    let Replace {
        write,
        input,
        expected_version,
        audit,
    } = replace;
    let id = cluster.id;
    input
        .validate(&cluster.api_server_url)
        .map_err(ReplaceError::Shape)?;
    if input.insecure_skip_tls_verify {
        tracing::warn!(cluster = %id, "credentials with insecure_skip_tls_verify: the API server's certificate will not be verified");
    }
    let credential = match Credentials::build(input) {
        Ok(credential) => Arc::new(credential),
        Err(error) => {
            audit_failure(
                store,
                write.action(),
                id,
                ErrorCode::CredentialsInvalid,
                audit,
            )
            .await?;
            return Err(ReplaceError::Unusable(error));
        }
    };
    let (validation, failures) = validate_against(health, &cluster, credential.clone()).await;
    if !validation.passed() {
        audit_failure(
            store,
            write.action(),
            id,
            ErrorCode::CredentialsInvalid,
            audit,
        )
        .await?;
        return Err(ReplaceError::Rejected {
            validation,
            failures,
        });
    }
    // Bound to where they were just validated (an update that moved the
    // cluster meanwhile leaves them ORIGIN_CHANGED).
    let stored = health
        .credentials
        .put(&cluster, write, input, credential, expected_version, audit)
        .await?;
    check_in_background(store, health, cluster);
    Ok(Replaced { stored, validation })
}

/// Validates `credential` against the cluster within its type's timeout.
pub async fn validate_against(
    health: &HealthContext,
    cluster: &Cluster,
    credential: Arc<ClusterCredential>,
) -> (CredentialValidation, Vec<Failure>) {
    let timeout = health.timing(cluster.cluster_type).timeout;
    let target = Target::from_cluster(cluster).with_credential(credential);
    health.prober.validate(&target, timeout).await
}

/// Audits a credential write that wrote nothing (`action`, failure, `code`):
/// refused uploads and rotations, failed automatic rotations.
pub(super) async fn audit_failure(
    store: &Arc<dyn Store>,
    action: &'static str,
    id: uuid::Uuid,
    code: ErrorCode,
    audit: &Audit,
) -> Result<(), StoreError> {
    let entry = AuditOnly {
        action,
        resource_id: Some(id),
        result: AuditResult::Failure,
        error_code: Some(code),
    };
    store.append_audit(entry, audit).await
}

/// A health check and discovery with the new credentials, after the answer
/// (cancelled when the server stops).
pub(crate) fn check_in_background(
    store: &Arc<dyn Store>,
    health: &HealthContext,
    cluster: Cluster,
) {
    let (store, health) = (store.clone(), health.clone());
    let background = health.background.clone();
    background.spawn(async move {
        if let Err(error) =
            check_and_record(store.as_ref(), &health, &cluster, CredentialsLookup::Read).await
        {
            tracing::debug!(cluster = %cluster.id, %error, "check after a credential change");
            return;
        }
        if let Err(error) = discover_and_record(store.as_ref(), &health, &cluster).await {
            tracing::debug!(cluster = %cluster.id, %error, "discovery after a credential change");
        }
    });
}
