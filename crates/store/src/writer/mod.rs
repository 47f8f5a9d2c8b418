//! Group commit: one writer task per store applies concurrent writes in one
//! transaction, commits once (one fsync), then answers every caller.
//!
//! Each kind of write is a type implementing [`Write`] in a module of its own
//! (`cluster`, `observe`, `credentials`, `token`, `audit`, `edge`, …) with a typed
//! [`Write::Reply`]; it holds the business rules of that write (revision
//! assignment, change-log payloads, audit entries, precondition checks) over
//! the SQL of [`WriteTx`]. This module only batches, commits and answers.

mod audit;
mod client;
mod client_health;
mod cluster;
mod credentials;
mod edge;
mod edge_check;
mod edge_settings;
mod observe;
mod rollout;
mod sync;
mod token;

pub use audit::AuditOnly;
pub(crate) use audit::AuditRecord;
pub(crate) use client::{ChangeClient, ClientChange, CreateClient, DeleteClient, ImportClients};
pub(crate) use client_health::RecordClientHealth;
pub(crate) use cluster::{DeleteCluster, InsertCluster, UpdateCluster};
pub use credentials::{BindCredentials, PutCredentials, RewrapCredentials};
pub(crate) use credentials::{DeleteCredentials, ReplaceVaultCanary};
pub(crate) use edge::{
    Acknowledge, ClaimController, ConfigureRouting, CreateDomain, CreateNode, CreateService,
    DeleteDomain, DeleteNode, DeleteRouting, DeleteService, MarkSilentNodes, RecordPush,
    ResetPushes, SyncClusterServices, UpdateDomain, UpdateNode, UpdateService,
};
pub(crate) use edge_check::RecordNodeCheck;
pub(crate) use edge_settings::{SetReconcileEvery, StartReconcileSchedule};
pub(crate) use observe::{RecordStatus, SetCapabilities};
pub(crate) use rollout::{ChangeRollout, CreateRollout, RolloutChange};
pub use sync::SYNC_FAILING_AFTER;
pub(crate) use sync::{
    ClaimLeader, CreateDeployment, DeleteDeployment, FinishSync, Heartbeat, MarkOrphans,
    MoveDeployment, RecordConflict, RegisterHost, SetSync, StartSync,
};
pub(crate) use token::{CreateToken, RekeyTokens, RevokeToken};

use crate::audit_chain::{ChainConfig, TxChain};
use crate::engine::Engine;
use crate::write_tx::WriteTx;
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleetreg_model::{Audit, AuditResult, Clock, ErrorCode, Event, EventType};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

/// Most writes grouped into one transaction.
const MAX_BATCH: usize = 512;

/// One kind of write.
#[async_trait]
pub(crate) trait Write: Send + Sync + 'static {
    /// What the caller gets when the write is committed.
    type Reply: Send + 'static;

    /// The name a registration takes, so that a batch's registrations can be
    /// decided together (see [`WriteTx::prepare_inserts`]).
    fn registers(&self) -> Option<&str> {
        None
    }

    /// The node whose sync row the write reads, so that a batch's are read
    /// with one statement and written with one (see
    /// [`WriteTx::expect_node_syncs`]).
    fn reads_node_sync(&self) -> Option<&str> {
        None
    }

    /// The cluster the write observes (a health observation), so that a
    /// batch's are read with one statement and written with one (see
    /// [`WriteTx::expect_observations`]).
    fn observes(&self) -> Option<Uuid> {
        None
    }

    /// Applies the write inside the batch's transaction. `Ok(Err(_))` is a
    /// refusal (audited, nothing else written); `Err(_)` is a database
    /// failure that aborts the batch.
    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<Self::Reply, StoreError>, StoreError>;
}

/// What a write sees of its batch: the transaction, its caller, its time and
/// the batch's revision counter.
pub(crate) struct WriteCx<'a> {
    /// The batch's transaction.
    pub tx: &'a mut WriteTx,
    /// Who asked, for the audit entry.
    pub audit: &'a Audit,
    /// When the write is applied.
    pub at: DateTime<Utc>,
    /// Health history sampling period without a state change.
    pub sample: chrono::Duration,
    revision: &'a mut i64,
}

impl WriteCx<'_> {
    /// The revision the next event of this batch will take (not taken yet).
    pub fn upcoming_revision(&self) -> i64 {
        *self.revision + 1
    }

    /// Appends a change-log entry at the next revision and returns it.
    pub fn append_event(
        &mut self,
        event_type: EventType,
        resource_id: Uuid,
        payload: serde_json::Value,
    ) -> Result<Event, StoreError> {
        *self.revision += 1;
        let event = Event {
            revision: *self.revision,
            event_type,
            occurred_at: self.at,
            resource: event_type.resource().to_owned(),
            resource_id,
            payload,
        };
        self.tx.append_event(&event)?;
        Ok(event)
    }

    /// Audits a successful `action` (with the revision it took, if any).
    pub async fn audit_success(
        &mut self,
        action: &'static str,
        resource_id: Option<Uuid>,
        revision: Option<i64>,
    ) -> Result<(), StoreError> {
        self.audit_entry(action, resource_id, AuditResult::Success, None, revision)
            .await
    }

    /// Audits a refused `action` with the error's code, and returns the
    /// refusal for the caller.
    pub async fn refuse<T>(
        &mut self,
        action: &'static str,
        resource_id: Option<Uuid>,
        error: StoreError,
    ) -> Result<Result<T, StoreError>, StoreError> {
        let code = error.code();
        self.audit_entry(action, resource_id, AuditResult::Failure, Some(code), None)
            .await?;
        Ok(Err(error))
    }

    /// Appends one audit entry for this write's caller.
    pub async fn audit_entry(
        &mut self,
        action: &'static str,
        resource_id: Option<Uuid>,
        result: AuditResult,
        error_code: Option<ErrorCode>,
        revision: Option<i64>,
    ) -> Result<(), StoreError> {
        let record = AuditRecord {
            at: self.at,
            audit: self.audit,
            action,
            resource_id,
            result,
            error_code,
            revision,
        };
        self.tx.append_audit(&record).await
    }
}

/// `PreconditionFailed` unless `expected` (an `If-Match` revision, when
/// given) is `actual`, the current revision of resource `id`.
pub(crate) fn check_revision(
    expected: Option<i64>,
    actual: i64,
    id: Uuid,
) -> Result<(), StoreError> {
    match expected {
        Some(expected) if expected != actual => Err(StoreError::PreconditionFailed {
            expected,
            actual,
            id,
        }),
        _ => Ok(()),
    }
}

/// Serialises a model value into an event payload.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A queued write with its caller, its reply type erased.
#[async_trait]
trait Queued: Send {
    fn registers(&self) -> Option<&str>;
    fn reads_node_sync(&self) -> Option<&str>;
    fn observes(&self) -> Option<Uuid>;
    /// Applies the write at `at`, keeping its outcome for [`Queued::answer`].
    async fn apply(
        &mut self,
        tx: &mut WriteTx,
        revision: &mut i64,
        sample: chrono::Duration,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Sends the kept outcome (after commit).
    fn answer(self: Box<Self>);
    /// Sends a failure of the batch instead.
    fn fail(self: Box<Self>, error: StoreError);
}

struct Pending<W: Write> {
    write: W,
    audit: Audit,
    outcome: Option<Result<W::Reply, StoreError>>,
    reply: oneshot::Sender<Result<W::Reply, StoreError>>,
}

#[async_trait]
impl<W: Write> Queued for Pending<W> {
    fn registers(&self) -> Option<&str> {
        self.write.registers()
    }

    fn reads_node_sync(&self) -> Option<&str> {
        self.write.reads_node_sync()
    }

    fn observes(&self) -> Option<Uuid> {
        self.write.observes()
    }

    async fn apply(
        &mut self,
        tx: &mut WriteTx,
        revision: &mut i64,
        sample: chrono::Duration,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut cx = WriteCx {
            tx,
            audit: &self.audit,
            at,
            sample,
            revision,
        };
        self.outcome = Some(self.write.apply(&mut cx).await?);
        Ok(())
    }

    fn answer(self: Box<Self>) {
        let outcome = self.outcome.unwrap_or(Err(StoreError::Closed));
        let _ = self.reply.send(outcome);
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

/// Where the writer's transactions come from: the engine, the audit chain's
/// configuration (keys, head publisher), and the clock writes are stamped by.
pub(crate) struct WriteBackend {
    /// The database.
    pub engine: Arc<dyn Engine>,
    /// The audit chain's keys and head.
    pub chain: Arc<ChainConfig>,
    /// Each write's time ([`WriteCx::at`]), read as it is applied.
    pub clock: Clock,
}

impl WriteBackend {
    /// Runs the dialect's storage relief: whether it succeeded, `None` when
    /// the dialect has none.
    async fn relieve(&self) -> Option<bool> {
        let statement = self.engine.dialect().relieve_storage?;
        match self.engine.execute(&crate::sql::Sql::new(statement)).await {
            Ok(_) => Some(true),
            Err(error) => {
                tracing::warn!(%error, "could not give back storage space yet");
                Some(false)
            }
        }
    }

    async fn begin(&self) -> Result<WriteTx, StoreError> {
        let tx = self.engine.begin().await?;
        Ok(WriteTx::new(
            tx,
            self.engine.dialect(),
            TxChain::new(self.chain.clone()),
        ))
    }
}

/// The writer's thread, to stop it. The writer runs a single-threaded
/// runtime of its own: SQLite's statements and `fdatasync` block that thread,
/// no async worker; PostgreSQL's write connection is opened there, so its
/// answers wake the writer at once rather than when the busy request
/// runtime next polls its sockets (each batch waits for some ten of them).
pub(crate) struct WriterTask {
    /// Set to stop: looked at between two batches (and the thread woken,
    /// which abandons a batch still waiting for PostgreSQL).
    stop: Arc<AtomicBool>,
    /// Sent or dropped to wake an idle writer.
    wake: oneshot::Sender<()>,
    /// Closed when the thread has ended.
    ended: oneshot::Receiver<()>,
}

impl WriterTask {
    /// Runs `writing` on a thread of its own ([`crate::thread::spawn`]).
    fn on_own_thread(
        writing: impl std::future::Future<Output = ()> + Send + 'static,
        stop: Arc<AtomicBool>,
    ) -> Result<WriterTask, StoreError> {
        let (wake, woken) = oneshot::channel::<()>();
        let (end, ended) = oneshot::channel::<()>();
        let (started, start) = std::sync::mpsc::sync_channel(1);
        let cannot_start = |e: std::io::Error| {
            StoreError::Unavailable(format!("cannot start the writer's thread: {e}"))
        };
        crate::thread::spawn("fleetreg-writer", move || {
            // Built (and dropped) on this thread: a runtime may not be
            // dropped where async code runs.
            let built = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let runtime = match built {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            let _ = started.send(Ok(()));
            runtime.block_on(async {
                tokio::select! {
                    () = writing => {}
                    _ = woken => {}
                }
            });
            drop(runtime);
            drop(end);
        })
        .map_err(cannot_start)?;
        match start.recv() {
            Ok(Ok(())) => Ok(WriterTask { stop, wake, ended }),
            Ok(Err(e)) => Err(cannot_start(e)),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// Stops the writer and waits until it has: writes still queued are
    /// answered `Closed`; a batch under way is finished first on SQLite (it
    /// never yields), or abandoned on PostgreSQL (its waiters answered
    /// `Closed`; rolled back, unless its `COMMIT` had reached the database).
    pub(crate) async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.wake.send(());
        let _ = self.ended.await;
    }
}

/// Handle to the writer task.
#[derive(Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Box<dyn Queued>>,
}

impl Writer {
    /// Starts the writer task on `backend`; `revision` publishes each
    /// committed revision. `history_sample` is the period of health history
    /// samples without a state change (`StoreOptions::history_sample`).
    pub(crate) fn spawn(
        backend: WriteBackend,
        revision: watch::Sender<i64>,
        history_sample: std::time::Duration,
    ) -> Result<(Writer, WriterTask), StoreError> {
        let (queue, rx) = mpsc::channel(4096);
        let sample = chrono::Duration::from_std(history_sample).unwrap_or(chrono::Duration::MAX);
        let stop = Arc::new(AtomicBool::new(false));
        let writing = run(backend, rx, revision, sample, stop.clone());
        let task = WriterTask::on_own_thread(writing, stop)?;
        Ok((Writer { queue }, task))
    }

    /// Queues `write` and waits until it is durably committed (or refused).
    pub(crate) async fn write<W: Write>(
        &self,
        write: W,
        audit: &Audit,
    ) -> Result<W::Reply, StoreError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            write,
            audit: audit.clone(),
            outcome: None,
            reply,
        };
        self.queue
            .send(Box::new(pending))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run(
    backend: WriteBackend,
    mut rx: mpsc::Receiver<Box<dyn Queued>>,
    revision: watch::Sender<i64>,
    sample: chrono::Duration,
    stop: Arc<AtomicBool>,
) {
    while let Some(first) = rx.recv().await {
        if stop.load(Ordering::Relaxed) {
            first.fail(StoreError::Closed);
            break;
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut result = apply_batch(&backend, &mut batch, sample).await;
        if matches!(result, Err(StoreError::Unavailable(_)))
            && backend.relieve().await == Some(true)
        {
            // Space was given back (a WAL checkpoint after a full disk): the
            // batch, rolled back, gets one more try.
            result = apply_batch(&backend, &mut batch, sample).await;
        }
        match result {
            Ok(last_revision) => {
                if let Some(rev) = last_revision {
                    revision.send_replace(rev);
                }
                batch.into_iter().for_each(|job| job.answer());
            }
            Err(StoreError::Unavailable(cause)) => {
                // The database cannot be reached or written: every waiter
                // gets that at once (retrying one by one would only wait N
                // times as long for the same answer).
                for job in batch {
                    job.fail(StoreError::Unavailable(cause.clone()));
                }
            }
            Err(error) if batch.len() == 1 => {
                // The only waiter gets the database's own error.
                if let Some(job) = batch.pop() {
                    job.fail(error);
                }
            }
            Err(error) => {
                // One write broke the whole transaction: retry each alone so
                // the others still land and only the culprit sees its error.
                tracing::warn!(%error, size = batch.len(), "write batch failed; retrying writes one by one");
                for job in batch {
                    if stop.load(Ordering::Relaxed) {
                        job.fail(StoreError::Closed);
                        continue;
                    }
                    let mut alone = [job];
                    let result = apply_batch(&backend, &mut alone, sample).await;
                    let [job] = alone;
                    match result {
                        Ok(last_revision) => {
                            if let Some(rev) = last_revision {
                                revision.send_replace(rev);
                            }
                            job.answer();
                        }
                        Err(error) => job.fail(error),
                    }
                }
            }
        }
    }
}

/// Applies `batch` in one transaction; the last revision it took, if any.
async fn apply_batch(
    backend: &WriteBackend,
    batch: &mut [Box<dyn Queued>],
    sample: chrono::Duration,
) -> Result<Option<i64>, StoreError> {
    let mut tx = backend.begin().await?;
    let start = tx.lock_revision().await?;
    let names: Vec<&str> = batch.iter().filter_map(|job| job.registers()).collect();
    if names.len() > 1 {
        tx.prepare_inserts(&names).await?;
    }
    tx.expect_node_syncs(batch.iter().filter_map(|job| job.reads_node_sync()));
    tx.expect_observations(batch.iter().filter_map(|job| job.observes()));
    let mut revision = start;
    for job in batch.iter_mut() {
        let at = backend.clock.now();
        job.apply(&mut tx, &mut revision, sample, at).await?;
    }
    if revision != start {
        tx.save_revision(revision).await?;
    }
    tx.commit().await?;
    Ok((revision != start).then_some(revision))
}
