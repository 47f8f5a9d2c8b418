//! Group commit: one writer task per store applies concurrent writes in one
//! transaction, commits once (one fsync), then answers every caller.
//!
//! The business rules of each write (revision assignment, change-log payloads,
//! audit entries, precondition checks) live here once; the backends only
//! provide the SQL primitives of [`WriteTx`].

use crate::audit_chain::{ChainConfig, TxChain};
use crate::engine::Engine;
use crate::write_tx::WriteTx;
use crate::StoreError;
use chrono::{DateTime, Utc};
use fleetreg_model::{
    now, Audit, AuditResult, Capabilities, Cluster, ClusterPatch, ClusterStatus, CredentialWrite,
    ErrorCode, Event, EventType, NewCluster, StoredCredentials,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

/// Most writes grouped into one transaction.
const MAX_BATCH: usize = 512;

/// One write, as queued for the writer.
#[derive(Debug)]
pub(crate) enum WriteOp {
    Insert(NewCluster),
    Update {
        id: Uuid,
        expected_revision: Option<i64>,
        patch: ClusterPatch,
    },
    Delete {
        id: Uuid,
        expected_revision: Option<i64>,
    },
    RecordStatus {
        id: Uuid,
        status: ClusterStatus,
        last_seen_at: Option<DateTime<Utc>>,
    },
    SetCapabilities {
        id: Uuid,
        capabilities: Capabilities,
        platform_version: Option<String>,
    },
    PutCredentials(Box<PutCredentials>),
    /// Re-wrapped envelopes of unchanged credentials (master-key rotation).
    RewrapCredentials(Box<RewrapCredentials>),
    /// Replaces the vault canary (master-key rotation).
    ReplaceVaultCanary {
        sealed: String,
        key_id: String,
    },
    DeleteCredentials {
        cluster_id: Uuid,
    },
    /// Creates an API token; with `replace`, an existing token of the same
    /// name is replaced (the bootstrap admin token).
    CreateToken {
        token: Box<fleetreg_model::ApiToken>,
        hash: String,
        replace: bool,
    },
    /// Revokes an API token.
    RevokeToken {
        id: Uuid,
    },
    /// An audit entry with no other write (credential validation, decryption).
    Audit {
        action: &'static str,
        resource_id: Option<Uuid>,
        result: AuditResult,
        error_code: Option<ErrorCode>,
    },
}

/// Sealed credentials to store for a cluster (see `Store::put_credentials`).
#[derive(Debug, Clone)]
pub struct PutCredentials {
    /// The cluster.
    pub cluster_id: Uuid,
    /// Store (first or replacing) or rotate (existing ones required).
    pub write: CredentialWrite,
    /// How they authenticate.
    pub auth_type: fleetreg_model::AuthType,
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

/// The result of one write.
#[derive(Debug)]
pub(crate) enum WriteOutcome {
    Token(Box<fleetreg_model::ApiToken>),
    Cluster(Box<Cluster>),
    Credentials(Box<StoredCredentials>),
    Deleted,
    Event(Option<Event>),
    /// Whether a conditional write took place.
    Applied(bool),
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
    pub fn to_entry(&self) -> fleetreg_model::AuditEntry {
        fleetreg_model::AuditEntry {
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

/// Where the writer's transactions come from: the engine, and the audit
/// chain's configuration (keys, head publisher).
pub(crate) struct WriteBackend {
    /// The database.
    pub engine: Arc<dyn Engine>,
    /// The audit chain's keys and head.
    pub chain: Arc<ChainConfig>,
}

impl WriteBackend {
    async fn begin(&self) -> Result<WriteTx, StoreError> {
        let tx = self.engine.begin().await?;
        Ok(WriteTx::new(
            tx,
            self.engine.dialect(),
            TxChain::new(self.chain.clone()),
        ))
    }
}

struct Pending {
    op: WriteOp,
    audit: Audit,
    reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
}

/// Handle to the writer task.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Pending>,
}

impl Writer {
    /// Starts the writer task on `backend`; `revision` publishes each committed revision.
    /// `history_sample` is the period of health history samples without a state
    /// change (`StoreOptions::history_sample`).
    pub(crate) fn spawn(
        backend: WriteBackend,
        revision: watch::Sender<i64>,
        history_sample: std::time::Duration,
    ) -> (Writer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4096);
        let sample = chrono::Duration::from_std(history_sample).unwrap_or(chrono::Duration::MAX);
        let handle = tokio::spawn(run(backend, rx, revision, sample));
        (Writer { tx }, handle)
    }

    /// Queues `op` and waits until it is durably committed (or refused).
    pub(crate) async fn write(
        &self,
        op: WriteOp,
        audit: &Audit,
    ) -> Result<WriteOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending {
                op,
                audit: audit.clone(),
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run(
    backend: WriteBackend,
    mut rx: mpsc::Receiver<Pending>,
    revision: watch::Sender<i64>,
    sample: chrono::Duration,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let ops: Vec<(&WriteOp, &Audit)> = batch.iter().map(|p| (&p.op, &p.audit)).collect();
        match apply_batch(&backend, &ops, sample).await {
            Ok((results, last_revision)) => {
                if let Some(rev) = last_revision {
                    revision.send_replace(rev);
                }
                for (pending, result) in batch.into_iter().zip(results) {
                    let _ = pending.reply.send(result);
                }
            }
            Err(error) if batch.len() > 1 => {
                // One write broke the whole transaction: retry each alone so the
                // others still land and only the culprit sees the error.
                tracing::warn!(%error, size = batch.len(), "write batch failed; retrying writes one by one");
                for pending in batch {
                    let result =
                        match apply_batch(&backend, &[(&pending.op, &pending.audit)], sample).await
                        {
                            Ok((mut results, last_revision)) => {
                                if let Some(rev) = last_revision {
                                    revision.send_replace(rev);
                                }
                                results.pop().unwrap_or(Err(StoreError::Closed))
                            }
                            Err(e) => Err(e),
                        };
                    let _ = pending.reply.send(result);
                }
            }
            Err(error) => {
                for pending in batch {
                    let _ = pending.reply.send(Err(clone_error(&error)));
                }
            }
        }
    }
}

impl Writer {
    /// Registers a cluster.
    pub(crate) async fn insert_cluster(
        &self,
        new: NewCluster,
        audit: &Audit,
    ) -> Result<Cluster, StoreError> {
        into_cluster(self.write(WriteOp::Insert(new), audit).await?)
    }

    /// Applies a patch, optionally guarded by the expected revision.
    pub(crate) async fn update_cluster(
        &self,
        id: Uuid,
        expected_revision: Option<i64>,
        patch: ClusterPatch,
        audit: &Audit,
    ) -> Result<Cluster, StoreError> {
        into_cluster(
            self.write(
                WriteOp::Update {
                    id,
                    expected_revision,
                    patch,
                },
                audit,
            )
            .await?,
        )
    }

    /// Deletes a cluster, optionally guarded by the expected revision.
    pub(crate) async fn delete_cluster(
        &self,
        id: Uuid,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<(), StoreError> {
        self.write(
            WriteOp::Delete {
                id,
                expected_revision,
            },
            audit,
        )
        .await
        .map(|_| ())
    }

    /// Records a health observation (see `Store::record_status`).
    pub(crate) async fn record_status(
        &self,
        id: Uuid,
        status: ClusterStatus,
        last_seen_at: Option<DateTime<Utc>>,
    ) -> Result<Option<Event>, StoreError> {
        into_event(
            self.write(
                WriteOp::RecordStatus {
                    id,
                    status,
                    last_seen_at,
                },
                &Audit::system("health"),
            )
            .await?,
        )
    }

    /// Records discovered capabilities (see `Store::set_capabilities`).
    pub(crate) async fn set_capabilities(
        &self,
        id: Uuid,
        capabilities: Capabilities,
        platform_version: Option<String>,
    ) -> Result<Option<Event>, StoreError> {
        into_event(
            self.write(
                WriteOp::SetCapabilities {
                    id,
                    capabilities,
                    platform_version,
                },
                &Audit::system("discovery"),
            )
            .await?,
        )
    }
}

impl Writer {
    /// Stores or rotates sealed credentials (see `Store::put_credentials`).
    pub(crate) async fn put_credentials(
        &self,
        put: PutCredentials,
        audit: &Audit,
    ) -> Result<StoredCredentials, StoreError> {
        match self
            .write(WriteOp::PutCredentials(Box::new(put)), audit)
            .await?
        {
            WriteOutcome::Credentials(stored) => Ok(*stored),
            _ => Err(StoreError::Corrupt("unexpected write outcome".into())),
        }
    }

    /// Puts re-wrapped envelopes in place (see `Store::rewrap_credentials`).
    pub(crate) async fn rewrap_credentials(
        &self,
        rewrap: RewrapCredentials,
        audit: &Audit,
    ) -> Result<bool, StoreError> {
        match self
            .write(WriteOp::RewrapCredentials(Box::new(rewrap)), audit)
            .await?
        {
            WriteOutcome::Applied(done) => Ok(done),
            _ => Err(StoreError::Corrupt("unexpected write outcome".into())),
        }
    }

    /// Replaces the vault canary (see `Store::replace_vault_canary`).
    pub(crate) async fn replace_vault_canary(
        &self,
        sealed: &str,
        key_id: &str,
        audit: &Audit,
    ) -> Result<(), StoreError> {
        let op = WriteOp::ReplaceVaultCanary {
            sealed: sealed.to_owned(),
            key_id: key_id.to_owned(),
        };
        self.write(op, audit).await.map(|_| ())
    }

    /// Deletes a cluster's credentials (see `Store::delete_credentials`).
    pub(crate) async fn delete_credentials(
        &self,
        cluster_id: Uuid,
        audit: &Audit,
    ) -> Result<(), StoreError> {
        self.write(WriteOp::DeleteCredentials { cluster_id }, audit)
            .await
            .map(|_| ())
    }

    /// Appends an audit entry alone (see `Store::append_audit`).
    pub(crate) async fn append_audit(
        &self,
        entry: AuditOnly,
        audit: &Audit,
    ) -> Result<(), StoreError> {
        self.write(
            WriteOp::Audit {
                action: entry.action,
                resource_id: entry.resource_id,
                result: entry.result,
                error_code: entry.error_code,
            },
            audit,
        )
        .await
        .map(|_| ())
    }
}

impl Writer {
    /// Creates (or, with `replace`, replaces by name) an API token.
    pub(crate) async fn create_token(
        &self,
        token: fleetreg_model::ApiToken,
        hash: String,
        replace: bool,
        audit: &Audit,
    ) -> Result<fleetreg_model::ApiToken, StoreError> {
        let op = WriteOp::CreateToken {
            token: Box::new(token),
            hash,
            replace,
        };
        match self.write(op, audit).await? {
            WriteOutcome::Token(token) => Ok(*token),
            _ => Err(StoreError::Corrupt("unexpected write outcome".into())),
        }
    }

    /// Revokes an API token.
    pub(crate) async fn revoke_token(&self, id: Uuid, audit: &Audit) -> Result<(), StoreError> {
        self.write(WriteOp::RevokeToken { id }, audit)
            .await
            .map(|_| ())
    }
}

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

fn into_cluster(outcome: WriteOutcome) -> Result<Cluster, StoreError> {
    match outcome {
        WriteOutcome::Cluster(cluster) => Ok(*cluster),
        _ => Err(StoreError::Corrupt("unexpected write outcome".into())),
    }
}

fn into_event(outcome: WriteOutcome) -> Result<Option<Event>, StoreError> {
    match outcome {
        WriteOutcome::Event(event) => Ok(event),
        _ => Err(StoreError::Corrupt("unexpected write outcome".into())),
    }
}

/// Store errors hold non-clonable sources; give each waiter a description.
fn clone_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Closed => StoreError::Closed,
        other => StoreError::Database(sqlx::Error::Protocol(other.to_string())),
    }
}

type BatchResult = (Vec<Result<WriteOutcome, StoreError>>, Option<i64>);

async fn apply_batch(
    backend: &WriteBackend,
    ops: &[(&WriteOp, &Audit)],
    sample: chrono::Duration,
) -> Result<BatchResult, StoreError> {
    let mut tx = backend.begin().await?;
    let start = tx.lock_revision().await?;
    let names: Vec<&str> = ops
        .iter()
        .filter_map(|(op, _)| match op {
            WriteOp::Insert(new) => Some(new.name.as_str()),
            _ => None,
        })
        .collect();
    if names.len() > 1 {
        tx.prepare_inserts(&names).await?;
    }
    let mut revision = start;
    let mut results = Vec::with_capacity(ops.len());
    for (op, audit) in ops {
        results.push(apply_op(&mut tx, op, audit, &mut revision, sample).await?);
    }
    if revision != start {
        tx.save_revision(revision).await?;
    }
    tx.commit().await?;
    Ok((results, (revision != start).then_some(revision)))
}

fn cluster_event(
    event_type: EventType,
    revision: i64,
    at: DateTime<Utc>,
    id: Uuid,
    payload: serde_json::Value,
) -> Event {
    Event {
        revision,
        event_type,
        occurred_at: at,
        resource: "cluster".to_owned(),
        resource_id: id,
        payload,
    }
}

/// Appends `CLUSTER_CREDENTIALS_UPDATED` (payload `{cluster_id}` only) and
/// returns its revision.
async fn credentials_event(
    tx: &mut WriteTx,
    revision: &mut i64,
    at: DateTime<Utc>,
    cluster_id: Uuid,
) -> Result<i64, StoreError> {
    let next = *revision + 1;
    *revision = next;
    let event = Event {
        revision: next,
        event_type: EventType::ClusterCredentialsUpdated,
        occurred_at: at,
        resource: "cluster".to_owned(),
        resource_id: cluster_id,
        payload: json!({ "cluster_id": cluster_id }),
    };
    tx.append_event(&event)?;
    Ok(next)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Applies one op. `Ok(Err(_))` is a logical refusal (audited, nothing else
/// written); `Err(_)` is a database failure that aborts the batch.
async fn apply_op(
    tx: &mut WriteTx,
    op: &WriteOp,
    audit: &Audit,
    revision: &mut i64,
    sample: chrono::Duration,
) -> Result<Result<WriteOutcome, StoreError>, StoreError> {
    let at = now();
    let refuse = |action: &'static str, id: Option<Uuid>, error: StoreError| {
        let code = error.code();
        (
            AuditRecord {
                at,
                audit,
                action,
                resource_id: id,
                result: AuditResult::Failure,
                error_code: Some(code),
                revision: None,
            },
            error,
        )
    };
    let outcome = match op {
        WriteOp::Insert(new) => {
            let next = *revision + 1;
            let cluster = new.clone().into_cluster(Uuid::now_v7(), next, at);
            if !tx.insert_cluster(&cluster).await? {
                Err(refuse(
                    "cluster.create",
                    None,
                    StoreError::AlreadyExists(new.name.to_string()),
                ))
            } else {
                *revision = next;
                let event = cluster_event(
                    EventType::ClusterRegistered,
                    next,
                    at,
                    cluster.id,
                    to_json(&cluster)?,
                );
                tx.append_event(&event)?;
                Ok((
                    "cluster.create",
                    cluster.id,
                    next,
                    WriteOutcome::Cluster(Box::new(cluster)),
                ))
            }
        }
        WriteOp::Update {
            id,
            expected_revision,
            patch,
        } => match tx.load_cluster(*id).await? {
            None => Err(refuse(
                "cluster.update",
                Some(*id),
                StoreError::NotFound(id.to_string()),
            )),
            Some(current) if expected_revision.is_some_and(|r| r != current.revision) => {
                Err(refuse(
                    "cluster.update",
                    Some(*id),
                    StoreError::PreconditionFailed {
                        expected: expected_revision.unwrap_or_default(),
                        actual: current.revision,
                        id: *id,
                    },
                ))
            }
            Some(mut cluster) => match patch.apply(&mut cluster) {
                Err(invalid) => Err(refuse(
                    "cluster.update",
                    Some(*id),
                    StoreError::Invalid(invalid),
                )),
                Ok(false) => return Ok(Ok(WriteOutcome::Cluster(Box::new(cluster)))),
                Ok(true) => {
                    let next = *revision + 1;
                    *revision = next;
                    cluster.revision = next;
                    cluster.updated_at = at;
                    tx.update_cluster(&cluster).await?;
                    let event = cluster_event(
                        EventType::ClusterUpdated,
                        next,
                        at,
                        cluster.id,
                        to_json(&cluster)?,
                    );
                    tx.append_event(&event)?;
                    Ok((
                        "cluster.update",
                        cluster.id,
                        next,
                        WriteOutcome::Cluster(Box::new(cluster)),
                    ))
                }
            },
        },
        WriteOp::Delete {
            id,
            expected_revision,
        } => match tx.load_cluster(*id).await? {
            None => Err(refuse(
                "cluster.delete",
                Some(*id),
                StoreError::NotFound(id.to_string()),
            )),
            Some(current) if expected_revision.is_some_and(|r| r != current.revision) => {
                Err(refuse(
                    "cluster.delete",
                    Some(*id),
                    StoreError::PreconditionFailed {
                        expected: expected_revision.unwrap_or_default(),
                        actual: current.revision,
                        id: *id,
                    },
                ))
            }
            Some(_) => {
                let next = *revision + 1;
                *revision = next;
                tx.delete_cluster(*id).await?;
                let event = cluster_event(
                    EventType::ClusterDeleted,
                    next,
                    at,
                    *id,
                    json!({ "cluster_id": id }),
                );
                tx.append_event(&event)?;
                Ok(("cluster.delete", *id, next, WriteOutcome::Deleted))
            }
        },
        WriteOp::RecordStatus {
            id,
            status,
            last_seen_at,
        } => {
            let Some(current) = tx.load_cluster(*id).await? else {
                return Ok(Err(StoreError::NotFound(id.to_string())));
            };
            tx.update_status(*id, status, last_seen_at.or(current.last_seen_at))
                .await?;
            let changed = current.status.state != status.state;
            let checked_at = status.checked_at.or(*last_seen_at).unwrap_or(at);
            let sample_due = changed
                || tx
                    .last_history_at(*id)
                    .await?
                    .is_none_or(|last| checked_at - last >= sample);
            if sample_due {
                tx.append_history(*id, status, checked_at).await?;
            }
            if !changed {
                return Ok(Ok(WriteOutcome::Event(None)));
            }
            let next = *revision + 1;
            *revision = next;
            let payload = json!({ "cluster_id": id, "old_state": current.status.state, "new_state": status.state });
            let event = cluster_event(EventType::ClusterStatusChanged, next, at, *id, payload);
            tx.append_event(&event)?;
            return Ok(Ok(WriteOutcome::Event(Some(event))));
        }
        WriteOp::PutCredentials(put) => {
            let action = put.write.action();
            if tx.load_cluster(put.cluster_id).await?.is_none() {
                Err(refuse(
                    action,
                    Some(put.cluster_id),
                    StoreError::NotFound(put.cluster_id.to_string()),
                ))
            } else {
                let current = tx.load_credentials(put.cluster_id).await?;
                let stale = put
                    .expected_version
                    .filter(|expected| current.as_ref().map_or(0, |c| c.version) != *expected);
                if put.write == CredentialWrite::Rotate && current.is_none() {
                    Err(refuse(
                        action,
                        Some(put.cluster_id),
                        StoreError::CredentialsNotFound(put.cluster_id),
                    ))
                } else if let Some(expected) = stale {
                    Err(refuse(
                        action,
                        Some(put.cluster_id),
                        StoreError::PreconditionFailed {
                            expected,
                            actual: current.as_ref().map_or(0, |c| c.version),
                            id: put.cluster_id,
                        },
                    ))
                } else {
                    let version = tx.next_credentials_version(put.cluster_id).await?;
                    let stored = StoredCredentials {
                        cluster_id: put.cluster_id,
                        version,
                        auth_type: put.auth_type,
                        sealed: put.sealed.clone(),
                        key_id: put.key_id.clone(),
                        expires_at: put.expires_at,
                        created_at: current.as_ref().map_or(at, |c| c.created_at),
                        updated_at: at,
                    };
                    tx.upsert_credentials(&stored).await?;
                    let next = credentials_event(tx, revision, at, put.cluster_id).await?;
                    Ok((
                        action,
                        put.cluster_id,
                        next,
                        WriteOutcome::Credentials(Box::new(stored)),
                    ))
                }
            }
        }
        WriteOp::CreateToken {
            token,
            hash,
            replace,
        } => {
            if tx.insert_token(token, hash, *replace).await? {
                let record = AuditRecord {
                    at,
                    audit,
                    action: "token.create",
                    resource_id: Some(token.id),
                    result: AuditResult::Success,
                    error_code: None,
                    revision: None,
                };
                tx.append_audit(&record).await?;
                return Ok(Ok(WriteOutcome::Token(token.clone())));
            }
            let (record, error) = refuse(
                "token.create",
                None,
                StoreError::TokenNameTaken(token.name.clone()),
            );
            tx.append_audit(&record).await?;
            return Ok(Err(error));
        }
        WriteOp::RevokeToken { id } => {
            let found = tx.revoke_token(*id, at).await?;
            let record = AuditRecord {
                at,
                audit,
                action: "token.revoke",
                resource_id: Some(*id),
                result: if found {
                    AuditResult::Success
                } else {
                    AuditResult::Failure
                },
                error_code: (!found).then_some(ErrorCode::TokenNotFound),
                revision: None,
            };
            tx.append_audit(&record).await?;
            return Ok(if found {
                Ok(WriteOutcome::Deleted)
            } else {
                Err(StoreError::TokenNotFound(*id))
            });
        }
        WriteOp::RewrapCredentials(rewrap) => {
            // Same secrets, new wraps: no version, no event; a version that
            // moved (a concurrent upload or rotation) wins and is left alone.
            let done = tx.rewrap_credentials(rewrap).await?;
            let record = AuditRecord {
                at,
                audit,
                action: "vault.rewrap",
                resource_id: Some(rewrap.cluster_id),
                result: if done {
                    AuditResult::Success
                } else {
                    AuditResult::Failure
                },
                error_code: (!done).then_some(ErrorCode::PreconditionFailed),
                revision: None,
            };
            tx.append_audit(&record).await?;
            return Ok(Ok(WriteOutcome::Applied(done)));
        }
        WriteOp::ReplaceVaultCanary { sealed, key_id } => {
            tx.replace_vault_canary(sealed, key_id, at).await?;
            let record = AuditRecord {
                at,
                audit,
                action: "vault.canary",
                resource_id: None,
                result: AuditResult::Success,
                error_code: None,
                revision: None,
            };
            tx.append_audit(&record).await?;
            return Ok(Ok(WriteOutcome::Applied(true)));
        }
        WriteOp::DeleteCredentials { cluster_id } => {
            let action = "credentials.delete";
            if tx.load_cluster(*cluster_id).await?.is_none() {
                Err(refuse(
                    action,
                    Some(*cluster_id),
                    StoreError::NotFound(cluster_id.to_string()),
                ))
            } else if !tx.delete_credentials(*cluster_id).await? {
                Err(refuse(
                    action,
                    Some(*cluster_id),
                    StoreError::CredentialsNotFound(*cluster_id),
                ))
            } else {
                let next = credentials_event(tx, revision, at, *cluster_id).await?;
                Ok((action, *cluster_id, next, WriteOutcome::Deleted))
            }
        }
        WriteOp::Audit {
            action,
            resource_id,
            result,
            error_code,
        } => {
            let record = AuditRecord {
                at,
                audit,
                action,
                resource_id: *resource_id,
                result: result.clone(),
                error_code: *error_code,
                revision: None,
            };
            tx.append_audit(&record).await?;
            return Ok(Ok(WriteOutcome::Deleted));
        }
        WriteOp::SetCapabilities {
            id,
            capabilities,
            platform_version,
        } => {
            let Some(current) = tx.load_cluster(*id).await? else {
                return Ok(Err(StoreError::NotFound(id.to_string())));
            };
            tx.update_capabilities(*id, capabilities, platform_version.as_deref())
                .await?;
            let unchanged = current.capabilities.as_ref().is_some_and(|old| {
                Capabilities {
                    discovered_at: None,
                    ..old.clone()
                } == Capabilities {
                    discovered_at: None,
                    ..capabilities.clone()
                }
            });
            if unchanged {
                return Ok(Ok(WriteOutcome::Event(None)));
            }
            let next = *revision + 1;
            *revision = next;
            let payload = json!({ "cluster_id": id, "capabilities": capabilities });
            let event = cluster_event(
                EventType::ClusterCapabilitiesChanged,
                next,
                at,
                *id,
                payload,
            );
            tx.append_event(&event)?;
            return Ok(Ok(WriteOutcome::Event(Some(event))));
        }
    };
    match outcome {
        Ok((action, id, rev, result)) => {
            let record = AuditRecord {
                at,
                audit,
                action,
                resource_id: Some(id),
                result: AuditResult::Success,
                error_code: None,
                revision: Some(rev),
            };
            tx.append_audit(&record).await?;
            Ok(Ok(result))
        }
        Err((record, error)) => {
            tx.append_audit(&record).await?;
            Ok(Err(error))
        }
    }
}
