//! [`HealthScheduler`]: checks every registered cluster at its type's interval.
//!
//! One slot per cluster id: a slot is either waiting for its due time (in a
//! queue ordered by due time, so a round costs what it starts, not the size of
//! the fleet) or running one check, never two. The slot table follows the
//! change log: the full cluster list once at start (and every few minutes as a
//! safety net), then the `CLUSTER_REGISTERED` / `CLUSTER_UPDATED` /
//! `CLUSTER_DELETED` / `CLUSTER_CREDENTIALS_UPDATED` events after it, as the
//! event hub broadcasts them (the hub
//! reads the log once for every subscriber, including other replicas' writes),
//! so a new cluster is checked within about a second and a deleted one is
//! dropped. At start-up, clusters checked before by an earlier run get first
//! due times spread over an interval by a jitter derived from the id; a
//! cluster new to a running scheduler is due at once, in registration order
//! (`first_check_span`). A semaphore bounds the checks in flight.
//!
//! A slot knows when its cluster has no stored credentials (it came from the
//! registration's event, or a check found none, and no
//! `CLUSTER_CREDENTIALS_UPDATED` came since): while the table has every event
//! committed, the checks of such clusters skip reading them.
//!
//! Due checks start oldest-due first, as permits allow. When more are due than
//! permits are free, the loop does not wait for its next tick: every finished
//! check wakes it (after [`BACKLOG_COALESCE`], so one round starts many), so
//! throughput is bound by the checks' own latency and the permits, not by the
//! tick, and the delay falls evenly on the clusters longest due instead of
//! starving the same ones every round.
//!
//! Capabilities are rediscovered after a successful check once
//! `periodic_refresh_hours` have passed since the cluster's `discovered_at`
//! (clusters never discovered: at their first successful check), retried after
//! [`DISCOVERY_RETRY`] when discovery fails. The discovery on registration
//! (`discovery.on_registration`) is the same: a cluster registered while the
//! scheduler runs is discovered after its first check that reached the API
//! server, so the discovery of an unreachable cluster is not attempted in vain
//! (it runs once the cluster answers).

use super::{
    check_and_record, discover_and_record, CredentialsLookup, DiscoverError, HealthContext,
};
use crate::events::{EventHub, Frame};
use crate::metrics;
use chrono::{DateTime, Utc};
use fleetreg_model::{Cluster, ClusterFilter, ClusterState, EventType, Page, MAX_PAGE_SIZE};
use fleetreg_store::{Store, StoreError};
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Checks running at once, across all clusters.
pub const MAX_CONCURRENT_CHECKS: usize = 256;
/// How often the loop wakes to start due checks and look for new clusters.
const TICK: Duration = Duration::from_millis(250);
/// With checks waiting for a permit, how long the loop lets finished checks
/// accumulate after the first one before starting the next round.
const BACKLOG_COALESCE: Duration = Duration::from_millis(5);
/// The whole cluster list is reloaded this often as a safety net.
const FULL_RELOAD: Duration = Duration::from_secs(300);
/// How long a round waits for the hub to broadcast the events this process
/// committed before it (a round sees every write made before it, unless the
/// hub is that far behind).
const HUB_WAIT: Duration = Duration::from_secs(1);
/// The clusters-by-state gauge is recounted at most this often.
const GAUGE_EVERY: Duration = Duration::from_secs(1);
/// A failed periodic discovery is tried again after this long (or the period,
/// when shorter).
const DISCOVERY_RETRY: Duration = Duration::from_secs(600);

/// The background health checker. Cheap to clone; `run` drives it, tests call
/// [`HealthScheduler::tick_at`] instead.
#[derive(Clone)]
pub struct HealthScheduler {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    health: HealthContext,
    hub: EventHub,
    permits: Arc<Semaphore>,
    /// Notified whenever a check gives its permit back.
    permit_freed: tokio::sync::Notify,
    table: Mutex<Table>,
    /// The hub's events since the last full load (held while a round waits
    /// for them).
    events: tokio::sync::Mutex<Option<broadcast::Receiver<Arc<Frame>>>>,
}

#[derive(Default)]
struct Table {
    slots: HashMap<Uuid, Slot>,
    /// The slots not running, by due time: exactly one entry per such slot.
    queue: BTreeSet<(Instant, Uuid)>,
    /// How far the table follows the change log; `None` before the first load.
    loaded: Option<Loaded>,
    /// When the clusters-by-state gauge was last set.
    gauged_at: Option<Instant>,
}

#[derive(Clone, Copy)]
struct Loaded {
    /// The change-log revision the table reflects.
    revision: i64,
    /// When the whole list was last loaded.
    full_at: Instant,
}

impl Table {
    /// Adds a new cluster (due after a jitter within `span`: zero is at once)
    /// or replaces the metadata of a known one (keeping its due time, running
    /// flag, what it knows of its credentials and the status and
    /// `last_seen_at` this process observed). `discover_due` is a new slot's
    /// first discovery (see [`HealthScheduler::first_discovery`]);
    /// `registered`: a new slot's cluster comes from its `CLUSTER_REGISTERED`
    /// event, so the store holds no credentials for it yet (they are uploaded
    /// after registration, each upload an event the table follows).
    fn upsert(
        &mut self,
        mut cluster: Cluster,
        now: Instant,
        span: Duration,
        discover_due: Option<Instant>,
        registered: bool,
    ) {
        match self.slots.get_mut(&cluster.id) {
            Some(slot) => {
                cluster.status = slot.cluster.status.clone();
                cluster.last_seen_at = slot.cluster.last_seen_at;
                slot.cluster = Arc::new(cluster);
            }
            None => {
                let id = cluster.id;
                let due = now + jitter(id, span);
                self.queue.insert((due, id));
                self.slots.insert(
                    id,
                    Slot {
                        state: cluster.status.state,
                        discover_due,
                        cluster: Arc::new(cluster),
                        due,
                        running: false,
                        credentials: CredentialsKnown {
                            none: registered,
                            changes: 0,
                        },
                    },
                );
            }
        }
    }

    /// Drops a deleted cluster's slot (a running check finds it gone).
    fn remove(&mut self, id: Uuid) {
        if let Some(slot) = self.slots.remove(&id) {
            if !slot.running {
                self.queue.remove(&(slot.due, id));
            }
        }
    }

    /// Takes the soonest slot due by `now` out of the queue, marked running.
    fn start_next(&mut self, now: Instant) -> Option<&mut Slot> {
        loop {
            let (due, id) = *self.queue.first().filter(|(due, _)| *due <= now)?;
            self.queue.pop_first();
            // Only the entry of a slot waiting at that time (the queue and
            // the slots change in separate steps).
            let waiting = |slot: &Slot| !slot.running && slot.due == due;
            if self.slots.get(&id).is_some_and(waiting) {
                let slot = self.slots.get_mut(&id)?;
                slot.running = true;
                return Some(slot);
            }
        }
    }

    /// The queue as the slots have it: every slot not running, at its due time.
    fn waiting(&self) -> BTreeSet<(Instant, Uuid)> {
        (self.slots.iter())
            .filter(|(_, slot)| !slot.running)
            .map(|(id, slot)| (slot.due, *id))
            .collect()
    }

    /// How many slots are due by `now` and not running.
    fn due_by(&self, now: Instant) -> usize {
        self.queue.range(..=(now, Uuid::max())).count()
    }

    /// Sets the clusters-by-state gauge, at most every [`GAUGE_EVERY`].
    fn gauge_states(&mut self, now: Instant) {
        if self.gauged_at.is_some_and(|at| now < at + GAUGE_EVERY) {
            return;
        }
        self.gauged_at = Some(now);
        let mut by_state: HashMap<ClusterState, u64> = HashMap::new();
        for slot in self.slots.values() {
            *by_state.entry(slot.state).or_default() += 1;
        }
        for state in ClusterState::ALL {
            let count = by_state.get(state).copied().unwrap_or_default();
            ::metrics::gauge!(metrics::CLUSTERS_BY_STATE, "state" => state.as_str())
                .set(count as f64);
        }
    }
}

struct Slot {
    cluster: Arc<Cluster>,
    due: Instant,
    running: bool,
    state: ClusterState,
    /// When capabilities are next discovered (after a check that reached the
    /// API server); `None`: not unless periodic discovery is on.
    discover_due: Option<Instant>,
    /// What the table knows of the cluster's stored credentials.
    credentials: CredentialsKnown,
}

/// What the table knows of a cluster's stored credentials, from the change
/// log it follows: a check of a cluster known to have none does not read
/// the store for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CredentialsKnown {
    /// The store holds none: the slot came from the cluster's registration
    /// (never with credentials), or a check found none, and no
    /// `CLUSTER_CREDENTIALS_UPDATED` came since.
    none: bool,
    /// How often the slot's credentials may have changed (an event, a full
    /// reload): a check's finding of none counts only when this did not move
    /// while it ran, so a finding older than an upload never hides it.
    changes: u32,
}

impl CredentialsKnown {
    /// How a check started now learns the credentials.
    fn lookup(self) -> CredentialsLookup {
        if self.none {
            CredentialsLookup::KnownNone
        } else {
            CredentialsLookup::Read
        }
    }

    /// They may have changed: the next check reads them.
    fn changed(&mut self) {
        self.none = false;
        self.changes = self.changes.wrapping_add(1);
    }

    /// A check that started when `started` was known found none stored.
    fn found_none(&mut self, started: CredentialsKnown) {
        if self.changes == started.changes {
            self.none = true;
        }
    }
}

/// The outcome of a discovery: when the next is due (`None`: none, periodic
/// discovery is off), and what was found.
struct Rediscovery {
    next: Option<Instant>,
    capabilities: Option<fleetreg_model::Capabilities>,
}

/// How a round started one check.
struct Started {
    /// When it was due.
    due: Instant,
    /// Its late start was already counted as one missed interval.
    counted_late: bool,
    /// The round's time, when it also rediscovers the cluster.
    discover_at: Option<Instant>,
    /// What the table knew of its credentials when it started.
    credentials: CredentialsKnown,
}

/// The checks one tick started; [`Tick::finish`] waits for them (tests).
#[derive(Debug, Default)]
#[must_use = "drop it to leave the checks running, or finish() to wait for them"]
pub struct Tick {
    started: Vec<JoinHandle<()>>,
    waiting: usize,
    known_none: usize,
}

impl Tick {
    /// How many checks the tick started.
    pub fn started(&self) -> usize {
        self.started.len()
    }

    /// How many due checks the tick left waiting for a permit.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// How many of the checks started skip reading stored credentials (the
    /// table knows the clusters have none).
    pub fn known_without_credentials(&self) -> usize {
        self.known_none
    }

    /// Waits until every check the tick started has been recorded.
    pub async fn finish(self) {
        for task in self.started {
            let _ = task.await;
        }
    }
}

impl HealthScheduler {
    /// A scheduler over `store` with no clusters loaded yet, following the
    /// change log through `hub`.
    pub fn new(store: Arc<dyn Store>, health: HealthContext, hub: EventHub) -> HealthScheduler {
        HealthScheduler {
            inner: Arc::new(Inner {
                store,
                health,
                hub,
                permits: Arc::new(Semaphore::new(MAX_CONCURRENT_CHECKS)),
                permit_freed: tokio::sync::Notify::new(),
                table: Mutex::new(Table::default()),
                events: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The store, health context and event hub the scheduler works with
    /// (tests build a second, manually driven scheduler from them).
    pub fn parts(&self) -> (Arc<dyn Store>, HealthContext, EventHub) {
        let inner = &self.inner;
        (inner.store.clone(), inner.health.clone(), inner.hub.clone())
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves a consistent table (every update
        // is a single assignment), so a poisoned lock is still usable.
        self.inner
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs until `shutdown`: every round starts the checks that are due, the
    /// next round comes after [`TICK`] or, while due checks wait for permits,
    /// as soon as checks finish; checks still running at shutdown are abandoned.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut running: Vec<JoinHandle<()>> = Vec::new();
        loop {
            let tick = tokio::select! {
                tick = self.tick() => tick,
                () = shutdown.cancelled() => break,
            };
            let backlog = tick.waiting > 0;
            running.retain(|task| !task.is_finished());
            running.extend(tick.started);
            let freed = async {
                if backlog {
                    self.inner.permit_freed.notified().await;
                    tokio::time::sleep(BACKLOG_COALESCE).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(TICK) => {}
                () = freed => {}
            }
        }
        for task in running {
            task.abort();
        }
    }

    /// One round now: reload the cluster list if it changed, start every due check.
    pub async fn tick(&self) -> Tick {
        self.tick_at(Instant::now()).await
    }

    /// One round as if it were `now`: a `now` in the future makes every cluster
    /// due (tests drive rounds this way without sleeping).
    pub async fn tick_at(&self, now: Instant) -> Tick {
        if let Err(error) = self.reload().await {
            tracing::warn!(%error, "health scheduler: cannot load the cluster list");
        }
        // What the table knows of credentials holds only while it has every
        // event committed so far, other replicas' too (the hub reads theirs
        // every half second): else this round's checks read them.
        let latest = self.inner.store.latest_revision().await.ok();
        let mut table = self.table();
        let caught_up = table
            .loaded
            .zip(latest)
            .is_some_and(|(loaded, latest)| loaded.revision >= latest);
        table.gauge_states(Instant::now());
        // Oldest due first, so a backlog delays every cluster a little rather
        // than starving some; as many as there are free permits start, the
        // rest wait for the next round.
        let mut started = Vec::new();
        let mut known_none = 0;
        while let Ok(permit) = self.inner.permits.clone().try_acquire_owned() {
            let Some(slot) = table.start_next(now) else {
                break;
            };
            let lag = Instant::now().saturating_duration_since(slot.due);
            ::metrics::histogram!(metrics::HEALTH_SCHEDULER_LAG).record(lag.as_secs_f64());
            let interval = self.inner.health.timing(slot.cluster.cluster_type).interval;
            // Started so late that the gap since the previous check is over one
            // and a half intervals: one missed interval, counted now (a start a
            // whole interval late or more is counted by `next_due` when it ends).
            let counted_late = lag >= interval / 2 && lag < interval;
            if counted_late {
                ::metrics::counter!(metrics::HEALTH_MISSED_INTERVALS).increment(1);
            }
            let this = self.clone();
            let cluster = slot.cluster.clone();
            let due = slot.due;
            let discover = slot.discover_due.is_some_and(|at| at <= now);
            let credentials = CredentialsKnown {
                none: slot.credentials.none && caught_up,
                ..slot.credentials
            };
            known_none += usize::from(credentials.none);
            started.push(tokio::spawn(async move {
                let started = Started {
                    due,
                    counted_late,
                    discover_at: discover.then_some(now),
                    credentials,
                };
                this.check(cluster, started, permit).await;
            }));
        }
        // Every permit is taken: the rest start as checks finish (the lag
        // metric shows it).
        let waiting = table.due_by(now);
        Tick {
            started,
            waiting,
            known_none,
        }
    }

    /// The ids of the clusters currently scheduled (tests).
    pub fn scheduled(&self) -> Vec<Uuid> {
        self.table().slots.keys().copied().collect()
    }

    /// Checks one cluster, then rediscovers it when the round asked for it
    /// and the API server answered.
    async fn check(&self, cluster: Arc<Cluster>, started: Started, permit: OwnedSemaphorePermit) {
        let lookup = started.credentials.lookup();
        let store = self.inner.store.as_ref();
        let result = check_and_record(store, &self.inner.health, &cluster, lookup).await;
        let reachable = result
            .as_ref()
            .is_ok_and(|outcome| outcome.report.results.api_server);
        let next_discovery = match started.discover_at {
            Some(at) if reachable => self.rediscover(&cluster, at).await,
            _ => None,
        };
        drop(permit);
        self.inner.permit_freed.notify_one();
        let (id, interval) = (
            cluster.id,
            self.inner.health.timing(cluster.cluster_type).interval,
        );
        // Usually only the slot's copy is left then, changed in place below.
        drop(cluster);
        let observed = match result {
            Ok(outcome) => Some(outcome),
            Err(StoreError::NotFound(_)) => None,
            Err(error) => {
                tracing::warn!(cluster = %id, %error, "cannot record a health check");
                None
            }
        };
        let mut table = self.table();
        let Some(slot) = table.slots.get_mut(&id) else {
            return; // deleted meanwhile
        };
        if !slot.running {
            // Dropped and loaded again meanwhile: the new slot is queued.
            return;
        }
        slot.running = false;
        if let Some(rediscovery) = next_discovery {
            slot.discover_due = rediscovery.next;
            if rediscovery.capabilities.is_some() {
                Arc::make_mut(&mut slot.cluster).capabilities = rediscovery.capabilities;
            }
        }
        if let Some(outcome) = observed {
            if outcome.none_stored {
                slot.credentials.found_none(started.credentials);
            }
            slot.state = outcome.status.state;
            let updated = Arc::make_mut(&mut slot.cluster);
            updated.status = outcome.status;
            updated.last_seen_at = outcome.last_seen_at;
        }
        let (next, missed) = next_due(started.due, interval, Instant::now());
        let missed = missed.saturating_sub(u64::from(started.counted_late));
        if missed > 0 {
            ::metrics::counter!(metrics::HEALTH_MISSED_INTERVALS).increment(missed);
        }
        slot.due = next;
        table.queue.insert((next, id));
    }

    /// Discovers `cluster` and returns when to do it next, with the capabilities
    /// found. A cluster this table never saw discovered is read first: a
    /// refresh or a credential upload may have discovered it meanwhile.
    async fn rediscover(&self, cluster: &Cluster, at: Instant) -> Option<Rediscovery> {
        let period = self.inner.health.rediscovery_period();
        let base = at.max(Instant::now());
        if cluster.capabilities.is_none() {
            match self.inner.store.get_cluster(cluster.id).await {
                Ok(fresh) if fresh.capabilities.is_some() => {
                    let wall = self.inner.store.clock().now();
                    return Some(Rediscovery {
                        next: period.map(|period| discovery_due(&fresh, period, base, wall)),
                        capabilities: fresh.capabilities,
                    });
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(cluster = %cluster.id, %error, "rediscovery: cannot read the cluster");
                    return None;
                }
            }
        }
        let store = self.inner.store.as_ref();
        match discover_and_record(store, &self.inner.health, cluster).await {
            Ok(found) => {
                ::metrics::counter!(metrics::DISCOVERIES, "result" => "ok").increment(1);
                Some(Rediscovery {
                    next: period.map(|period| base + period),
                    capabilities: Some(found.capabilities),
                })
            }
            Err(DiscoverError::Store(StoreError::NotFound(_))) => None,
            Err(error) => {
                ::metrics::counter!(metrics::DISCOVERIES, "result" => "failed").increment(1);
                tracing::warn!(cluster = %cluster.id, %error, "discovery failed");
                Some(Rediscovery {
                    next: period.map(|period| base + period.min(DISCOVERY_RETRY)),
                    capabilities: None,
                })
            }
        }
    }

    /// When a cluster new to the table is first discovered: with periodic
    /// discovery, a period after its `discovered_at` (at once when never
    /// discovered); else, with `discovery.on_registration`, at once when it was
    /// `registered` while this process runs and never discovered (the
    /// discovery on registration); else never.
    fn first_discovery(
        &self,
        cluster: &Cluster,
        registered: bool,
        now: Instant,
    ) -> Option<Instant> {
        match self.inner.health.rediscovery_period() {
            Some(period) => Some(discovery_due(
                cluster,
                period,
                now,
                self.inner.store.clock().now(),
            )),
            None => (registered
                && self.inner.health.discovery.on_registration
                && cluster.capabilities.is_none())
            .then_some(now),
        }
    }

    /// Brings the slot table up to date: the first call loads every cluster
    /// (first checks of those checked before spread over a whole interval,
    /// see [`first_check_span`]); later calls apply the
    /// events the hub broadcast since, falling back to a full reload every
    /// [`FULL_RELOAD`] or when the table could not follow the events (it fell
    /// behind the hub's buffer, or an event was unreadable).
    ///
    /// The hub's receiver is held throughout, so concurrent rounds (the loop
    /// and a test's `tick_at`) reload one after the other, and a failed
    /// reload leaves no receiver behind: the next round reloads again.
    async fn reload(&self) -> Result<(), StoreError> {
        let mut events = self.inner.events.lock().await;
        let loaded = self.table().loaded;
        match loaded {
            Some(l) if l.full_at.elapsed() < FULL_RELOAD => {
                if let Some(receiver) = events.as_mut() {
                    if self.follow_hub(receiver, l).await {
                        return Ok(());
                    }
                }
            }
            _ => {}
        }
        // Taken first: a reload that fails leaves none to follow.
        events.take();
        *events = Some(self.full_reload(loaded.is_none()).await?);
        Ok(())
    }

    /// Applies the cluster events the hub broadcast since the last round,
    /// waiting up to [`HUB_WAIT`] for those up to this process's latest
    /// commit; false when the table cannot follow them (it fell behind the
    /// hub's buffer, the hub skipped events, or one was unreadable) and needs
    /// a full reload.
    async fn follow_hub(
        &self,
        receiver: &mut broadcast::Receiver<Arc<Frame>>,
        mut loaded: Loaded,
    ) -> bool {
        let committed = *self.inner.store.watch_revision().borrow();
        let deadline = Instant::now() + HUB_WAIT;
        let mut frames = Vec::new();
        loop {
            // `Err(Some(n))`: n events were lost to the buffer; `Err(None)`: none left.
            let received = match receiver.try_recv() {
                Ok(frame) => Ok(frame),
                Err(TryRecvError::Empty) if loaded.revision < committed => {
                    match tokio::time::timeout_at(deadline, receiver.recv()).await {
                        Ok(Ok(frame)) => Ok(frame),
                        Ok(Err(RecvError::Lagged(missed))) => Err(Some(missed)),
                        // The hub is behind (or its task stopped, at shutdown):
                        // go on with what it sent.
                        Ok(Err(RecvError::Closed)) | Err(_) => Err(None),
                    }
                }
                Err(TryRecvError::Lagged(missed)) => Err(Some(missed)),
                Err(TryRecvError::Empty | TryRecvError::Closed) => Err(None),
            };
            match received {
                Ok(frame) if frame.revision() <= loaded.revision => {}
                // Revisions are consecutive: the hub skipped some (it fell
                // behind the change log's retention).
                Ok(frame) if frame.revision() > loaded.revision + 1 => {
                    tracing::info!(
                        after = loaded.revision,
                        next = frame.revision(),
                        "health scheduler missed events; reloading the list"
                    );
                    return false;
                }
                Ok(frame) => {
                    loaded.revision = frame.revision();
                    frames.push(frame);
                }
                Err(None) => break,
                Err(Some(missed)) => {
                    tracing::info!(
                        missed,
                        "health scheduler fell behind the event hub; reloading the list"
                    );
                    return false;
                }
            }
        }
        let now = Instant::now();
        let mut table = self.table();
        for frame in &frames {
            if !self.apply(&mut table, &frame.event, now) {
                return false;
            }
        }
        table.loaded = Some(loaded);
        true
    }

    /// Applies one cluster event to the table; false when it could not be
    /// read (the caller then reloads the whole list).
    fn apply(&self, table: &mut Table, event: &fleetreg_model::Event, now: Instant) -> bool {
        match event.event_type {
            EventType::ClusterRegistered | EventType::ClusterUpdated => {
                match Cluster::deserialize(&event.payload) {
                    Ok(cluster) => {
                        let interval = self.inner.health.timing(cluster.cluster_type).interval;
                        let span = first_check_span(false, &cluster, interval);
                        let registered = event.event_type == EventType::ClusterRegistered;
                        let discover_due = self.first_discovery(&cluster, registered, now);
                        table.upsert(cluster, now, span, discover_due, registered);
                    }
                    Err(error) => {
                        tracing::warn!(revision = event.revision, %error, "health scheduler: unreadable cluster event; reloading the list");
                        return false;
                    }
                }
            }
            EventType::ClusterDeleted => table.remove(event.resource_id),
            EventType::ClusterCredentialsUpdated => {
                if let Some(slot) = table.slots.get_mut(&event.resource_id) {
                    slot.credentials.changed();
                }
            }
            _ => {}
        }
        true
    }

    /// Replaces the table's cluster list with the store's: new clusters get a
    /// slot (due after a jitter over a whole interval when `first` and they
    /// were checked before, else at once: [`first_check_span`]), deleted ones
    /// lose theirs, known ones keep their due time. Returns the hub's receiver
    /// of the events after the list.
    async fn full_reload(
        &self,
        first: bool,
    ) -> Result<broadcast::Receiver<Arc<Frame>>, StoreError> {
        // Subscribed before the revision is read, and the revision before the
        // list: every event after the revision reaches the receiver, and those
        // the list already holds are applied again, which is harmless.
        let events = self.inner.hub.subscribe().frames;
        let revision = self.inner.store.latest_revision().await?;
        let clusters = all_clusters(self.inner.store.as_ref()).await?;
        let now = Instant::now();
        {
            let mut table = self.table();
            let mut old = std::mem::take(&mut table.slots);
            for cluster in clusters {
                let interval = self.inner.health.timing(cluster.cluster_type).interval;
                let span = first_check_span(first, &cluster, interval);
                match old.remove(&cluster.id) {
                    Some(mut slot) => {
                        // The events this reload replaces may have changed them.
                        slot.credentials.changed();
                        table.slots.insert(
                            cluster.id,
                            Slot {
                                cluster: Arc::new(cluster),
                                ..slot
                            },
                        );
                    }
                    None => {
                        // Clusters new to a later reload were registered while
                        // this process ran.
                        let discover_due = self.first_discovery(&cluster, !first, now);
                        table.upsert(cluster, now, span, discover_due, false);
                    }
                }
            }
            // Rebuilt from the slots: those of deleted clusters leave it, and
            // it is in step again whatever happened before.
            table.queue = table.waiting();
            table.loaded = Some(Loaded {
                revision,
                full_at: now,
            });
        }
        Ok(events)
    }
}

/// When `cluster` is next due for discovery: `period` after its `discovered_at`
/// (as an instant relative to `now`, which is `wall` by the store's clock), or
/// `now` when it was never discovered.
fn discovery_due(
    cluster: &Cluster,
    period: Duration,
    now: Instant,
    wall: DateTime<Utc>,
) -> Instant {
    let Some(discovered_at) = cluster.capabilities.as_ref().and_then(|c| c.discovered_at) else {
        return now;
    };
    let age = (wall - discovered_at).to_std().unwrap_or_default();
    now + period.saturating_sub(age)
}

/// Over how long the first check of a cluster new to the table is spread
/// (see [`jitter`]): a whole `interval` when the scheduler's `first_load`
/// finds it checked before, by an earlier run; otherwise not at all, due at
/// once: one never checked (registered while this process was starting) or
/// registered while it runs. A registration storm is then checked in
/// registration order (v7 ids sort by time, and so do equal due times), so one
/// write batch's observations change neighbouring rows and index entries
/// instead of ones spread over the last second of registrations
/// (docs/BENCHMARKS.md, issue 10). Later checks keep that phase (each is due
/// an interval after the last was): clusters that became due in one round
/// stay due together, started oldest first as permits allow, as a storm's
/// registrations were spread in time.
fn first_check_span(first_load: bool, cluster: &Cluster, interval: Duration) -> Duration {
    if first_load && cluster.status.checked_at.is_some() {
        interval
    } else {
        Duration::ZERO
    }
}

/// A deterministic jitter in `[0, span)` from the id's random bits (zero
/// when `span` is under a millisecond).
fn jitter(id: Uuid, span: Duration) -> Duration {
    let span_ms = span.as_millis().max(1) as u64;
    Duration::from_millis(id.as_u64_pair().1 % span_ms)
}

/// The next due time after a check that was due at `due`: one interval later, or
/// the first start still ahead of `now` when the check ran past whole intervals
/// (returned as the number missed).
fn next_due(due: Instant, interval: Duration, now: Instant) -> (Instant, u64) {
    let next = due + interval;
    if next > now {
        return (next, 0);
    }
    let behind = now.duration_since(next).as_nanos();
    let missed = (behind / interval.as_nanos().max(1)) as u64 + 1;
    let missed_u32 = u32::try_from(missed).unwrap_or(u32::MAX);
    (next + interval.saturating_mul(missed_u32), missed)
}

/// Every registered cluster, read page by page (the health scheduler's and
/// the service discovery's round over the fleet).
pub async fn all_clusters(store: &dyn Store) -> Result<Vec<Cluster>, StoreError> {
    let filter = ClusterFilter::default();
    let mut clusters = Vec::new();
    for page in 1.. {
        let page = Page {
            page,
            page_size: MAX_PAGE_SIZE,
        };
        let list = store.list_clusters(&filter, page).await?;
        let done = list.items.len() < MAX_PAGE_SIZE as usize;
        clusters.extend(list.items);
        if done {
            break;
        }
    }
    Ok(clusters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_due_counts_missed_intervals() {
        let t0 = Instant::now();
        let i = Duration::from_secs(10);
        assert_eq!(next_due(t0, i, t0 + Duration::from_secs(3)), (t0 + i, 0));
        assert_eq!(
            next_due(t0, i, t0 + Duration::from_secs(10)),
            (t0 + Duration::from_secs(20), 1)
        );
        assert_eq!(
            next_due(t0, i, t0 + Duration::from_secs(35)),
            (t0 + Duration::from_secs(40), 3)
        );
    }

    fn cluster(name: &str) -> Cluster {
        let request = serde_json::json!({"name": name, "api_server_url": "https://127.0.0.1:9"});
        serde_json::from_value::<fleetreg_model::ClusterCreateRequest>(request)
            .unwrap()
            .validate()
            .unwrap()
            .into_cluster(Uuid::now_v7(), 1, chrono::Utc::now())
    }

    /// Every waiting slot is queued exactly once, at its due time.
    fn assert_queue_matches_slots(table: &Table) {
        assert_eq!(table.queue, table.waiting());
    }

    #[test]
    fn the_queue_starts_the_longest_due_first_and_forgets_deleted_slots() {
        let t0 = Instant::now();
        let span = Duration::from_secs(60);
        let mut table = Table::default();
        let clusters: Vec<Cluster> = (0..50).map(|i| cluster(&format!("cluster-{i}"))).collect();
        for c in &clusters {
            table.upsert(c.clone(), t0, span, None, true);
        }
        // A known cluster's new metadata keeps its place.
        table.upsert(clusters[0].clone(), t0, span, None, true);
        assert_eq!((table.slots.len(), table.queue.len()), (50, 50));
        assert_queue_matches_slots(&table);

        let mut by_due: Vec<(Instant, Uuid)> = table.queue.iter().copied().collect();
        by_due.sort();
        let halfway = by_due[24].0;
        assert_eq!(table.due_by(halfway), 25);
        let started: Vec<Uuid> =
            std::iter::from_fn(|| table.start_next(halfway).map(|s| s.cluster.id)).collect();
        let expected: Vec<Uuid> = by_due[..25].iter().map(|(_, id)| *id).collect();
        assert_eq!(started, expected, "oldest due first, only those due");
        assert_eq!(table.due_by(halfway), 0);
        assert_queue_matches_slots(&table);

        // A stale entry (of a slot now running) starts nothing and is dropped.
        table.queue.insert((halfway, started[1]));
        assert!(table.start_next(halfway).is_none());
        assert_queue_matches_slots(&table);

        // Deleting a running and a waiting slot: neither stays queued.
        table.remove(started[0]);
        table.remove(by_due[40].1);
        assert_eq!((table.slots.len(), table.queue.len()), (48, 24));
        assert_queue_matches_slots(&table);
        assert_eq!(table.due_by(t0 + span), 24);
    }

    #[test]
    fn clusters_new_to_a_running_scheduler_are_due_at_once_in_registration_order() {
        let t0 = Instant::now();
        let mut table = Table::default();
        let interval = Duration::from_secs(60);
        // Registered in this order (v7 ids: the store's), applied in another.
        let clusters: Vec<Cluster> = (0..20).map(|i| cluster(&format!("storm-{i}"))).collect();
        for c in clusters.iter().rev() {
            // Following the events, or loaded before their first check.
            for first_load in [false, true] {
                assert_eq!(first_check_span(first_load, c, interval), Duration::ZERO);
            }
            table.upsert(
                c.clone(),
                t0,
                first_check_span(false, c, interval),
                None,
                true,
            );
        }
        assert_eq!(table.due_by(t0), 20, "all due at once");
        let started: Vec<String> = std::iter::from_fn(|| {
            table
                .start_next(t0)
                .map(|slot| slot.cluster.name.to_string())
        })
        .collect();
        let registered: Vec<String> = clusters.iter().map(|c| c.name.to_string()).collect();
        assert_eq!(started, registered);

        // Checked by an earlier run: spread over the interval at start-up only.
        let mut checked = cluster("checked-before");
        checked.status.checked_at = Some(chrono::Utc::now());
        assert_eq!(first_check_span(true, &checked, interval), interval);
        assert_eq!(first_check_span(false, &checked, interval), Duration::ZERO);
    }

    #[test]
    fn a_finding_of_no_credentials_counts_only_when_nothing_changed_meanwhile() {
        let mut table = Table::default();
        let t0 = Instant::now();
        let (registered, loaded) = (cluster("registered"), cluster("loaded"));
        table.upsert(registered.clone(), t0, Duration::ZERO, None, true);
        table.upsert(loaded.clone(), t0, Duration::ZERO, None, false);
        let lookup = |table: &Table, id: Uuid| table.slots[&id].credentials.lookup();
        assert_eq!(lookup(&table, registered.id), CredentialsLookup::KnownNone);
        assert_eq!(lookup(&table, loaded.id), CredentialsLookup::Read);

        // An upload's event comes while a check that found none runs: its
        // finding is older than the upload and does not count.
        let known = &mut table.slots.get_mut(&loaded.id).unwrap().credentials;
        let started = *known;
        known.changed();
        known.found_none(started);
        assert_eq!(lookup(&table, loaded.id), CredentialsLookup::Read);

        // The next check finds none and nothing changed: known from then on.
        let known = &mut table.slots.get_mut(&loaded.id).unwrap().credentials;
        let started = *known;
        known.found_none(started);
        assert_eq!(lookup(&table, loaded.id), CredentialsLookup::KnownNone);

        // Another event: read again; a known cluster's metadata update keeps
        // what the table knows.
        table
            .slots
            .get_mut(&loaded.id)
            .unwrap()
            .credentials
            .changed();
        assert_eq!(lookup(&table, loaded.id), CredentialsLookup::Read);
        table.upsert(registered.clone(), t0, Duration::ZERO, None, false);
        assert_eq!(lookup(&table, registered.id), CredentialsLookup::KnownNone);
    }

    #[test]
    fn jitter_stays_within_the_span() {
        for _ in 0..100 {
            let j = jitter(Uuid::new_v4(), Duration::from_secs(1));
            assert!(j < Duration::from_secs(1));
        }
    }
}
