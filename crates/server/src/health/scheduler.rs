//! [`HealthScheduler`]: checks every registered cluster at its type's interval.
//!
//! One slot per cluster id: a slot is either waiting for its due time or running
//! one check, never two. The slot table follows the change log: the full cluster
//! list once at start (and every few minutes as a safety net), then the
//! `CLUSTER_REGISTERED` / `CLUSTER_UPDATED` / `CLUSTER_DELETED` events after it,
//! read whenever the store's revision moves (and at least every second, for writes
//! of other replicas), so a new cluster is checked within about a second and a
//! deleted one is dropped. First due times are spread by a jitter derived from the
//! id; a semaphore bounds the checks in flight.
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

use super::{check_and_record, discover_and_record, DiscoverError, HealthContext};
use crate::metrics;
use chrono::{DateTime, Utc};
use fleetreg_model::{Cluster, ClusterFilter, ClusterState, EventType, Page, MAX_PAGE_SIZE};
use fleetreg_store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
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
/// The largest first-check jitter of a cluster registered while running.
const NEW_CLUSTER_JITTER: Duration = Duration::from_secs(1);
/// The change log is read at least this often even when this process's revision
/// watch has not moved (writes by another replica).
const LOG_POLL: Duration = Duration::from_secs(1);
/// The whole cluster list is reloaded this often as a safety net.
const FULL_RELOAD: Duration = Duration::from_secs(300);
/// Change-log entries read per query.
const LOG_PAGE: u32 = 1000;
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
    permits: Arc<Semaphore>,
    /// Notified whenever a check gives its permit back.
    permit_freed: tokio::sync::Notify,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    slots: HashMap<Uuid, Slot>,
    /// How far the table follows the change log; `None` before the first load.
    loaded: Option<Loaded>,
}

#[derive(Clone, Copy)]
struct Loaded {
    /// The change-log revision the table reflects.
    revision: i64,
    /// When the change log was last read.
    polled_at: Instant,
    /// When the whole list was last loaded.
    full_at: Instant,
}

impl Table {
    /// Adds a new cluster (due after a jitter within `span`) or replaces the
    /// metadata of a known one (keeping its due time, running flag and the
    /// status and `last_seen_at` this process observed).
    /// `discover_due` is a new slot's first discovery (see
    /// [`HealthScheduler::first_discovery`]).
    fn upsert(
        &mut self,
        mut cluster: Cluster,
        now: Instant,
        span: Duration,
        discover_due: Option<Instant>,
    ) {
        match self.slots.get_mut(&cluster.id) {
            Some(slot) => {
                cluster.status = slot.cluster.status.clone();
                cluster.last_seen_at = slot.cluster.last_seen_at;
                slot.cluster = Arc::new(cluster);
            }
            None => {
                let id = cluster.id;
                self.slots.insert(
                    id,
                    Slot {
                        state: cluster.status.state,
                        discover_due,
                        cluster: Arc::new(cluster),
                        due: now + jitter(id, span),
                        running: false,
                    },
                );
            }
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
}

/// The outcome of a discovery: when the next is due (`None`: none, periodic
/// discovery is off), and what was found.
struct Rediscovery {
    next: Option<Instant>,
    capabilities: Option<fleetreg_model::Capabilities>,
}

/// The checks one tick started; [`Tick::finish`] waits for them (tests).
#[derive(Debug, Default)]
#[must_use = "drop it to leave the checks running, or finish() to wait for them"]
pub struct Tick {
    started: Vec<JoinHandle<()>>,
    waiting: usize,
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

    /// Waits until every check the tick started has been recorded.
    pub async fn finish(self) {
        for task in self.started {
            let _ = task.await;
        }
    }
}

impl HealthScheduler {
    /// A scheduler over `store` with no clusters loaded yet.
    pub fn new(store: Arc<dyn Store>, health: HealthContext) -> HealthScheduler {
        HealthScheduler {
            inner: Arc::new(Inner {
                store,
                health,
                permits: Arc::new(Semaphore::new(MAX_CONCURRENT_CHECKS)),
                permit_freed: tokio::sync::Notify::new(),
                table: Mutex::new(Table::default()),
            }),
        }
    }

    /// The store and health context the scheduler checks with (tests build a
    /// second, manually driven scheduler from them).
    pub fn parts(&self) -> (Arc<dyn Store>, HealthContext) {
        (self.inner.store.clone(), self.inner.health.clone())
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
            let tick = self.tick().await;
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
        let mut table = self.table();
        let mut by_state: HashMap<ClusterState, u64> = HashMap::new();
        let mut due: Vec<(Instant, Uuid)> = Vec::new();
        for (id, slot) in &table.slots {
            *by_state.entry(slot.state).or_default() += 1;
            if !slot.running && slot.due <= now {
                due.push((slot.due, *id));
            }
        }
        // Oldest due first, so a backlog delays every cluster a little rather
        // than starving some; only as many as there are free permits are
        // ordered (a linear selection), the rest wait for the next round.
        let free = self.inner.permits.available_permits();
        let mut waiting = due.len().saturating_sub(free);
        if waiting > 0 {
            due.select_nth_unstable(free);
            due.truncate(free);
        }
        due.sort_unstable();
        let mut started = Vec::new();
        for (_, id) in due {
            let Ok(permit) = self.inner.permits.clone().try_acquire_owned() else {
                // Every permit is taken: the rest start as checks finish (the
                // lag metric shows it).
                waiting += 1;
                continue;
            };
            let Some(slot) = table.slots.get_mut(&id) else {
                continue;
            };
            slot.running = true;
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
            started.push(tokio::spawn(async move {
                this.check(cluster, due, counted_late, discover.then_some(now), permit)
                    .await;
            }));
        }
        for state in ClusterState::ALL {
            let count = by_state.get(state).copied().unwrap_or_default();
            ::metrics::gauge!(metrics::CLUSTERS_BY_STATE, "state" => state.as_str())
                .set(count as f64);
        }
        Tick { started, waiting }
    }

    /// The ids of the clusters currently scheduled (tests).
    pub fn scheduled(&self) -> Vec<Uuid> {
        self.table().slots.keys().copied().collect()
    }

    /// Checks one cluster, then rediscovers it when `discover_at` (the tick's
    /// time) is given and the API server answered. `counted_late`: its late
    /// start was already counted as one missed interval.
    async fn check(
        &self,
        cluster: Arc<Cluster>,
        due: Instant,
        counted_late: bool,
        discover_at: Option<Instant>,
        permit: OwnedSemaphorePermit,
    ) {
        let result =
            check_and_record(self.inner.store.as_ref(), &self.inner.health, &cluster).await;
        let reachable = result
            .as_ref()
            .is_ok_and(|outcome| outcome.report.results.api_server);
        let next_discovery = match discover_at {
            Some(at) if reachable => self.rediscover(&cluster, at).await,
            _ => None,
        };
        drop(permit);
        self.inner.permit_freed.notify_one();
        let observed = match result {
            Ok(outcome) => Some((outcome.status, outcome.last_seen_at)),
            Err(StoreError::NotFound(_)) => None,
            Err(error) => {
                tracing::warn!(cluster = %cluster.id, %error, "cannot record a health check");
                None
            }
        };
        let interval = self.inner.health.timing(cluster.cluster_type).interval;
        let mut table = self.table();
        let Some(slot) = table.slots.get_mut(&cluster.id) else {
            return; // deleted meanwhile
        };
        slot.running = false;
        let mut updated = Cluster::clone(&slot.cluster);
        if let Some(rediscovery) = next_discovery {
            slot.discover_due = rediscovery.next;
            if rediscovery.capabilities.is_some() {
                updated.capabilities = rediscovery.capabilities;
            }
        }
        if let Some((status, last_seen_at)) = observed {
            slot.state = status.state;
            updated.status = status;
            updated.last_seen_at = last_seen_at;
        }
        slot.cluster = Arc::new(updated);
        let (next, missed) = next_due(due, interval, Instant::now());
        let missed = missed.saturating_sub(u64::from(counted_late));
        if missed > 0 {
            ::metrics::counter!(metrics::HEALTH_MISSED_INTERVALS).increment(missed);
        }
        slot.due = next;
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
    /// (first checks spread over a whole interval); later calls read the change log
    /// after the table's revision when the revision watch moved or [`LOG_POLL`]
    /// passed, falling back to a full reload every [`FULL_RELOAD`] or when
    /// retention already removed the events needed.
    async fn reload(&self) -> Result<(), StoreError> {
        let watched = *self.inner.store.watch_revision().borrow();
        let loaded = self.table().loaded;
        match loaded {
            None => self.full_reload(true).await,
            Some(l) if l.full_at.elapsed() >= FULL_RELOAD => self.full_reload(false).await,
            Some(l) if l.revision >= watched && l.polled_at.elapsed() < LOG_POLL => Ok(()),
            Some(l) => self.follow_log(l).await,
        }
    }

    /// Applies the cluster events after `loaded.revision` to the table.
    async fn follow_log(&self, mut loaded: Loaded) -> Result<(), StoreError> {
        loop {
            let page = match self
                .inner
                .store
                .events_after(loaded.revision, LOG_PAGE)
                .await
            {
                Ok(page) => page,
                Err(StoreError::EventsExpired { .. }) => return self.full_reload(false).await,
                Err(error) => return Err(error),
            };
            let now = Instant::now();
            let unreadable = self.apply(&page.items, &mut loaded, now);
            if unreadable {
                return self.full_reload(false).await;
            }
            if page.items.len() < LOG_PAGE as usize {
                return Ok(());
            }
        }
    }

    /// Applies cluster events to the table, advancing `loaded`; true when an
    /// event could not be read (the caller then reloads the whole list).
    fn apply(&self, events: &[fleetreg_model::Event], loaded: &mut Loaded, now: Instant) -> bool {
        let mut table = self.table();
        for event in events {
            match event.event_type {
                EventType::ClusterRegistered | EventType::ClusterUpdated => {
                    match serde_json::from_value::<Cluster>(event.payload.clone()) {
                        Ok(cluster) => {
                            let interval = self.inner.health.timing(cluster.cluster_type).interval;
                            let registered = event.event_type == EventType::ClusterRegistered;
                            let discover_due = self.first_discovery(&cluster, registered, now);
                            table.upsert(
                                cluster,
                                now,
                                interval.min(NEW_CLUSTER_JITTER),
                                discover_due,
                            );
                        }
                        Err(error) => {
                            tracing::warn!(revision = event.revision, %error, "health scheduler: unreadable cluster event; reloading the list");
                            return true;
                        }
                    }
                }
                EventType::ClusterDeleted => {
                    table.slots.remove(&event.resource_id);
                }
                _ => {}
            }
            loaded.revision = event.revision;
        }
        loaded.polled_at = now;
        table.loaded = Some(*loaded);
        false
    }

    /// Replaces the table's cluster list with the store's: new clusters get a
    /// slot due after a jitter (over a whole interval when `first` and they
    /// were checked before), deleted ones lose theirs, known ones keep their
    /// due time.
    async fn full_reload(&self, first: bool) -> Result<(), StoreError> {
        // The revision is read before the list: events after it are applied again
        // by the next `follow_log`, which is harmless.
        let revision = self.inner.store.latest_revision().await?;
        let clusters = all_clusters(self.inner.store.as_ref()).await?;
        let now = Instant::now();
        let mut table = self.table();
        let mut old = std::mem::take(&mut table.slots);
        for cluster in clusters {
            let interval = self.inner.health.timing(cluster.cluster_type).interval;
            // Only the first load spreads first checks over a whole interval,
            // and only of clusters checked before (by an earlier run): one never
            // checked, e.g. registered while this process was starting, is due
            // as soon as one registered while it runs.
            let span = if first && cluster.status.checked_at.is_some() {
                interval
            } else {
                interval.min(NEW_CLUSTER_JITTER)
            };
            match old.remove(&cluster.id) {
                Some(slot) => {
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
                    table.upsert(cluster, now, span, discover_due);
                }
            }
        }
        table.loaded = Some(Loaded {
            revision,
            polled_at: now,
            full_at: now,
        });
        Ok(())
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

/// A deterministic jitter in `[0, span)` from the id's random bits.
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

    #[test]
    fn jitter_stays_within_the_span() {
        for _ in 0..100 {
            let j = jitter(Uuid::new_v4(), Duration::from_secs(1));
            assert!(j < Duration::from_secs(1));
        }
    }
}
