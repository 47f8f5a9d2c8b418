//! The sync controller: one per deployment (a lease in the database decides
//! which replica runs it; another takes over within a lease when it dies).
//! Every tick it marks silent nodes offline (their routes fail over in the
//! same transaction), re-sends configurations not acknowledged in time with
//! exponential backoff (3 retries, then the node is `failed`), and every
//! `reconcile` interval re-sends every node's full configuration. All of its
//! state that matters (attempts, statuses, revisions) is in the store, so a
//! restart or a new leader carries on; only the due times of retries are
//! kept in memory and start afresh.

use crate::settings::EdgeConfig;
use chrono::Duration as ChronoDuration;
use fleetreg_model::{Audit, Clock, NodeSyncStatus, PushReason};
use fleetreg_store::{Store, StoreError};
use std::collections::HashMap;
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

/// What the API can change in a running controller.
#[derive(Clone)]
pub struct ControllerHandle {
    every: Arc<watch::Sender<Duration>>,
}

impl ControllerHandle {
    /// A handle whose interval starts at `every`.
    pub fn new(every: Duration) -> ControllerHandle {
        ControllerHandle {
            every: Arc::new(watch::Sender::new(every)),
        }
    }

    /// The reconciliation interval now.
    pub fn reconcile_every(&self) -> Duration {
        *self.every.borrow()
    }

    /// Changes the reconciliation interval (`sync reconcile --every`).
    pub fn set_reconcile_every(&self, every: Duration) {
        self.every.send_replace(every);
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
    every: watch::Receiver<Duration>,
    pending: HashMap<String, Due>,
    last_reconcile: Instant,
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
            every: handle.every.subscribe(),
            pending: HashMap::new(),
            last_reconcile: Instant::now(),
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
            self.last_reconcile = Instant::now();
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
        let every = *self.every.borrow();
        if !every.is_zero() && self.last_reconcile.elapsed() >= every {
            self.last_reconcile = Instant::now();
            let sent = self
                .store
                .reset_pushes(None, PushReason::Reconcile, &Audit::system("reconcile"))
                .await?;
            tracing::info!(
                nodes = sent.len(),
                "reconciliation: full state sent to every node"
            );
        }
        Ok(())
    }

    async fn retry_due(&mut self) -> Result<(), StoreError> {
        let nodes = self.store.list_node_sync().await?;
        self.pending
            .retain(|name, _| nodes.iter().any(|n| n.node.as_str() == name));
        for sync in nodes {
            let name = sync.node.as_str().to_owned();
            if sync.in_sync() || sync.status == NodeSyncStatus::Failed {
                self.pending.remove(&name);
                continue;
            }
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
