//! The sync controller: one per deployment (a lease in the database decides
//! which replica runs it; another takes over within a lease when it dies).
//! Every tick it marks silent nodes offline (their routes fail over in the
//! same transaction), re-sends configurations not acknowledged in time with
//! exponential backoff (3 retries, then the node is `failed`), and every
//! reconciliation interval re-sends every node's full configuration. All of
//! its state that matters (attempts, statuses, revisions, the interval set
//! at run time and when the last reconciliation ran) is in the store, so a
//! restart or a new leader carries on; only the due times of retries are
//! kept in memory and start afresh.

use crate::settings::EdgeConfig;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use fleetreg_model::{Audit, Clock, NodeSyncStatus, PushReason};
use fleetreg_store::{ReconcileSchedule, Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Pushes of one desired revision before a node is `failed`: the first
/// (the change itself) and 3 retries.
pub const MAX_PUSHES: u32 = 4;

/// How long a controller lease lasts; renewed every tick.
const LEASE: Duration = Duration::from_secs(10);

/// How long the leading controller uses the stored reconciliation settings
/// before reading them again (another replica may have changed them; this
/// replica's own changes are read at the next tick).
const SETTINGS_REFRESH: Duration = Duration::from_secs(10);

/// The reconciliation settings as this replica applies them: the stored
/// interval, else the configuration's, and a wake-up of the local
/// controller when the API changed what is stored.
#[derive(Clone)]
pub struct ControllerHandle {
    default_every: Duration,
    changed: Arc<watch::Sender<()>>,
    /// Whether this replica's controller holds the lease now.
    leading: Arc<watch::Sender<bool>>,
}

impl ControllerHandle {
    /// A handle whose interval is `default_every` (`edge.reconcile_seconds`;
    /// zero: no periodic reconciliation) unless one is stored.
    pub fn new(default_every: Duration) -> ControllerHandle {
        ControllerHandle {
            default_every,
            changed: Arc::new(watch::Sender::new(())),
            leading: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Whether this replica's controller holds the lease, as it changes (the
    /// edge HTTP check runs only there).
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// The interval under `schedule`: the stored one, else the configuration's.
    pub fn every(&self, schedule: &ReconcileSchedule) -> Duration {
        schedule
            .every_seconds
            .map_or(self.default_every, Duration::from_secs)
    }

    /// When the next periodic reconciliation is due under `schedule`: an
    /// interval after the last; `None` when off or not scheduled yet.
    pub fn next_at(&self, schedule: &ReconcileSchedule) -> Option<DateTime<Utc>> {
        let every = self.every(schedule);
        if every.is_zero() {
            return None;
        }
        schedule
            .reconciled_at?
            .checked_add_signed(ChronoDuration::from_std(every).ok()?)
    }

    /// Tells this replica's controller that the stored settings changed (it
    /// reads them at its next tick; another replica's within 10 s).
    pub fn settings_changed(&self) {
        self.changed.send_replace(());
    }
}

/// A retry's schedule: for which revision and attempt count, due when.
#[derive(Debug, Clone, Copy)]
struct Due {
    revision: i64,
    attempts: u32,
    at: Instant,
}

/// The controller task's state.
pub struct Controller {
    store: Arc<dyn Store>,
    config: EdgeConfig,
    clock: Clock,
    holder: String,
    handle: ControllerHandle,
    changed: watch::Receiver<()>,
    /// The stored schedule and when it was read; `None`: read it at once.
    schedule: Option<(ReconcileSchedule, Instant)>,
    pending: HashMap<String, Due>,
    leading: bool,
}

impl Controller {
    /// A controller over `store` for this replica (`holder` names it in the lease).
    pub fn new(
        store: Arc<dyn Store>,
        config: EdgeConfig,
        holder: String,
        handle: &ControllerHandle,
    ) -> Controller {
        Controller {
            clock: store.clock().clone(),
            store,
            config,
            holder,
            handle: handle.clone(),
            changed: handle.changed.subscribe(),
            schedule: None,
            pending: HashMap::new(),
            leading: false,
        }
    }

    /// Runs until `shutdown`; a failing tick is logged and retried.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let period = Duration::from_millis(self.config.controller_tick_ms.max(50));
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return self.step_down().await,
                _ = ticks.tick() => {}
            }
            if let Err(error) = self.tick().await {
                tracing::warn!(%error, "sync controller tick failed; retrying");
            }
        }
    }

    /// Hands the lease back on shutdown (it expires now), so a restarted or
    /// another replica takes over at its next tick, not a lease later.
    async fn step_down(&self) {
        self.handle.leading.send_replace(false);
        if self.leading {
            let release = self.store.claim_controller(&self.holder, self.clock.now());
            if tokio::time::timeout(Duration::from_secs(2), release)
                .await
                .is_err()
            {
                tracing::warn!("sync controller lease not handed back; it expires by itself");
            }
        }
    }

    /// The retry delay after `attempts` pushes.
    fn backoff(&self, attempts: u32) -> Duration {
        Duration::from_millis(
            self.config
                .push_retry_base_ms
                .saturating_mul(1 << attempts.min(16)),
        )
    }

    /// One pass: lease, liveness, due retries, reconciliation.
    pub async fn tick(&mut self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let lease = ChronoDuration::from_std(LEASE).unwrap_or_default();
        let leading = self
            .store
            .claim_controller(&self.holder, now + lease)
            .await?;
        if leading != self.leading {
            tracing::info!(holder = %self.holder, leading, "sync controller lease");
            self.leading = leading;
            self.handle.leading.send_replace(leading);
            self.schedule = None;
        }
        if !leading {
            self.pending.clear();
            return Ok(());
        }
        let silent = ChronoDuration::seconds(self.config.offline_after_seconds as i64);
        let change = self.store.mark_silent_nodes(now - silent).await?;
        for (hostname, from, to) in &change.failovers {
            tracing::info!(%hostname, %from, %to, "route failed over");
        }
        self.retry_due().await?;
        let schedule = self.schedule().await?;
        if self
            .handle
            .next_at(&schedule)
            .is_some_and(|next| now >= next)
        {
            let sent = self
                .store
                .reset_pushes(None, PushReason::Reconcile, &Audit::system("reconcile"))
                .await?;
            // The reconciliation moved the schedule: read it again.
            self.schedule = None;
            tracing::info!(
                nodes = sent.len(),
                "reconciliation: full state sent to every node"
            );
        }
        Ok(())
    }

    /// The stored reconciliation schedule: read when taking the lease, when
    /// this replica changed it, and every [`SETTINGS_REFRESH`]; started when
    /// the database has none yet.
    async fn schedule(&mut self) -> Result<ReconcileSchedule, StoreError> {
        let poked = self.changed.has_changed().unwrap_or(false);
        if let Some((schedule, read)) = &self.schedule {
            if !poked && read.elapsed() < SETTINGS_REFRESH {
                return Ok(*schedule);
            }
        }
        self.changed.mark_unchanged();
        let mut schedule = self.store.reconcile_schedule().await?;
        if schedule.reconciled_at.is_none() {
            schedule = self.store.start_reconcile_schedule().await?;
        }
        self.schedule = Some((schedule, Instant::now()));
        Ok(schedule)
    }

    /// Retries the pushes that are due, among the nodes a push is pending
    /// for (only those are read: usually none).
    async fn retry_due(&mut self) -> Result<(), StoreError> {
        let nodes = self.store.list_pending_node_sync().await?;
        let names: HashSet<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
        self.pending.retain(|name, _| names.contains(name.as_str()));
        for sync in nodes {
            let name = sync.node.as_str().to_owned();
            let fresh = Due {
                revision: sync.desired_revision,
                attempts: sync.push_attempts,
                at: Instant::now() + self.backoff(sync.push_attempts),
            };
            let due = *self.pending.entry(name.clone()).or_insert(fresh);
            if due.revision != fresh.revision || due.attempts != fresh.attempts {
                self.pending.insert(name, fresh);
                continue;
            }
            if Instant::now() < due.at {
                continue;
            }
            let after = self
                .store
                .record_push(&sync.node, sync.desired_revision, MAX_PUSHES)
                .await?;
            if after.status == NodeSyncStatus::Failed {
                tracing::warn!(node = %sync.node, revision = sync.desired_revision,
                    "no acknowledgement after {} pushes; node failed", MAX_PUSHES);
            }
            let at = Instant::now() + self.backoff(after.push_attempts);
            self.pending.insert(
                sync.node.as_str().to_owned(),
                Due {
                    revision: after.desired_revision,
                    attempts: after.push_attempts,
                    at,
                },
            );
        }
        Ok(())
    }
}
