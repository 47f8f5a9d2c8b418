//! Group commit: one writer task per store applies concurrent writes in one
//! transaction, commits once (one fsync), then answers every caller.
//!
//! The business rules of each write (revision assignment, change-log payloads,
//! audit entries, precondition checks) live here once; the backends only
//! provide the SQL primitives of [`WriteTx`].

use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleetreg_model::{
    now, Audit, AuditResult, Capabilities, Cluster, ClusterPatch, ClusterStatus, Event, EventType,
    NewCluster,
};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

/// Most writes grouped into one transaction.
const MAX_BATCH: usize = 512;

/// Without a state change, a cluster gets at most one health history sample
/// per this period (`history_sample_minutes`, DESIGN.md data rules).
const HISTORY_SAMPLE_MINUTES: i64 = 5;

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
}

/// The result of one write.
#[derive(Debug)]
pub(crate) enum WriteOutcome {
    Cluster(Box<Cluster>),
    Deleted,
    Event(Option<Event>),
}

/// An audit row about to be written.
#[derive(Debug, Clone)]
pub(crate) struct AuditRecord<'a> {
    pub at: DateTime<Utc>,
    pub audit: &'a Audit,
    pub action: &'static str,
    pub resource_id: Option<Uuid>,
    pub result: AuditResult,
    pub error_code: Option<&'static str>,
    pub revision: Option<i64>,
}

/// SQL primitives a backend provides inside one write transaction.
#[async_trait]
pub(crate) trait WriteTx: Send {
    /// Locks and reads the last assigned revision.
    async fn lock_revision(&mut self) -> Result<i64, StoreError>;
    /// Told the names a batch is about to insert, a backend may look them up
    /// at once and then buffer the inserts (see `SqliteTx`); by default a no-op.
    async fn prepare_inserts(&mut self, _names: &[&str]) -> Result<(), StoreError> {
        Ok(())
    }
    /// Stores the last assigned revision.
    async fn save_revision(&mut self, revision: i64) -> Result<(), StoreError>;
    /// Inserts a cluster; `false` when the name is taken (nothing written).
    async fn insert_cluster(&mut self, cluster: &Cluster) -> Result<bool, StoreError>;
    /// Reads a cluster inside the transaction.
    async fn load_cluster(&mut self, id: Uuid) -> Result<Option<Cluster>, StoreError>;
    /// Rewrites a cluster's metadata, labels and revision.
    async fn update_cluster(&mut self, cluster: &Cluster) -> Result<(), StoreError>;
    /// Deletes a cluster and its labels.
    async fn delete_cluster(&mut self, id: Uuid) -> Result<(), StoreError>;
    /// Writes status, score and `last_seen_at`.
    async fn update_status(
        &mut self,
        id: Uuid,
        status: &ClusterStatus,
        last_seen_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// Writes capabilities and their indexed columns.
    async fn update_capabilities(
        &mut self,
        id: Uuid,
        capabilities: &Capabilities,
        platform_version: Option<&str>,
    ) -> Result<(), StoreError>;
    /// When the newest health history sample of a cluster was taken.
    async fn last_history_at(&mut self, id: Uuid) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Appends a health history sample.
    async fn append_history(
        &mut self,
        id: Uuid,
        status: &ClusterStatus,
        checked_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Appends a change-log entry.
    async fn append_event(&mut self, event: &Event) -> Result<(), StoreError>;
    /// Appends an audit entry.
    async fn append_audit(&mut self, record: &AuditRecord<'_>) -> Result<(), StoreError>;
    /// Commits durably.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// A backend that can open write transactions.
#[async_trait]
pub(crate) trait WriteBackend: Send + Sync + 'static {
    async fn begin(&self) -> Result<Box<dyn WriteTx>, StoreError>;
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
    pub(crate) fn spawn(
        backend: impl WriteBackend,
        revision: watch::Sender<i64>,
    ) -> (Writer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4096);
        let handle = tokio::spawn(run(backend, rx, revision));
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
    backend: impl WriteBackend,
    mut rx: mpsc::Receiver<Pending>,
    revision: watch::Sender<i64>,
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
        match apply_batch(&backend, &ops).await {
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
                    let result = match apply_batch(&backend, &[(&pending.op, &pending.audit)]).await
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
    backend: &impl WriteBackend,
    ops: &[(&WriteOp, &Audit)],
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
        results.push(apply_op(tx.as_mut(), op, audit, &mut revision).await?);
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

fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Applies one op. `Ok(Err(_))` is a logical refusal (audited, nothing else
/// written); `Err(_)` is a database failure that aborts the batch.
async fn apply_op(
    tx: &mut dyn WriteTx,
    op: &WriteOp,
    audit: &Audit,
    revision: &mut i64,
) -> Result<Result<WriteOutcome, StoreError>, StoreError> {
    let at = now();
    let refuse = |action: &'static str, id: Option<Uuid>, error: StoreError| {
        let code = error.code().as_str();
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
                tx.append_event(&event).await?;
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
                    tx.append_event(&event).await?;
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
                tx.append_event(&event).await?;
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
                || tx.last_history_at(*id).await?.is_none_or(|last| {
                    checked_at - last >= chrono::Duration::minutes(HISTORY_SAMPLE_MINUTES)
                });
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
            tx.append_event(&event).await?;
            return Ok(Ok(WriteOutcome::Event(Some(event))));
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
            tx.append_event(&event).await?;
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
