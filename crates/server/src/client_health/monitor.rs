//! [`ClientHealthMonitor`]: the periodic live checks of deployed clients.
//!
//! Every deployed client is checked once per `client_health.interval_seconds`.
//! Its first check comes 1 s to one interval after it is first seen (a
//! fixed offset from its id), so the clients' checks spread over the interval
//! rather than all landing at once; later checks keep that phase. Clients in
//! any other status (`maintenance` included) are not scheduled. The deployed
//! clients are re-read when the store's revision moved, and at least every
//! 5 minutes. Due times follow the store's clock, so tests drive rounds with
//! [`ClientHealthMonitor::tick_at`] instead of waiting.

use super::ClientHealthChecker;
use crate::metrics;
use chrono::{DateTime, Utc};
use fleetreg_model::{Client, ClientFilter, ClientHealthState, ClientStatus, Page, MAX_PAGE_SIZE};
use fleetreg_store::{Store, StoreError};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Most client checks in flight at once.
pub const MAX_CONCURRENT_CLIENT_CHECKS: usize = 64;
/// How often the loop looks for due checks.
const TICK: Duration = Duration::from_secs(1);
/// The deployed clients are re-read at least this often.
const FULL_RELOAD: Duration = Duration::from_secs(300);

/// The periodic checker. Cheap to clone.
#[derive(Clone)]
pub struct ClientHealthMonitor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ClientHealthMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHealthMonitor")
            .field("interval", &self.inner.interval)
            .finish_non_exhaustive()
    }
}

struct Inner {
    store: Arc<dyn Store>,
    checker: ClientHealthChecker,
    interval: Duration,
    /// Held for a whole round, so rounds never overlap.
    schedule: tokio::sync::Mutex<Schedule>,
}

#[derive(Default)]
struct Schedule {
    /// The revision and time of the last load of the deployed clients.
    loaded: Option<(i64, Instant)>,
    slots: HashMap<Uuid, Slot>,
}

struct Slot {
    client: Client,
    due: DateTime<Utc>,
    /// The state last recorded by this monitor.
    state: Option<ClientHealthState>,
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientRound {
    /// Clients checked.
    pub checked: usize,
    /// Checks whose state change was recorded as an event.
    pub changed: usize,
    /// Checks that could not be recorded (logged).
    pub failed: usize,
}

impl ClientHealthMonitor {
    /// A monitor checking each deployed client every `interval` (at least 1 s).
    pub fn new(
        store: Arc<dyn Store>,
        checker: ClientHealthChecker,
        interval: Duration,
    ) -> ClientHealthMonitor {
        ClientHealthMonitor {
            inner: Arc::new(Inner {
                store,
                checker,
                interval: interval.max(Duration::from_secs(1)),
                schedule: tokio::sync::Mutex::new(Schedule::default()),
            }),
        }
    }

    /// Runs rounds every second until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = self.tick() => {}
            }
        }
    }

    /// One round now (by the store's clock).
    pub async fn tick(&self) -> ClientRound {
        let now = self.inner.checker.clock().now();
        self.tick_at(now).await
    }

    /// One round as if it were `now`: re-reads the deployed clients if the
    /// store changed, checks every client due by `now` (at most
    /// [`MAX_CONCURRENT_CLIENT_CHECKS`] at once) and records each result,
    /// then schedules its next check one interval after the due one. A `now`
    /// an interval ahead makes every scheduled client due.
    pub async fn tick_at(&self, now: DateTime<Utc>) -> ClientRound {
        let mut schedule = self.inner.schedule.lock().await;
        if let Err(error) = self.reload(&mut schedule).await {
            tracing::warn!(%error, "client health: cannot load the deployed clients");
        }
        let due: Vec<Client> = schedule
            .slots
            .values()
            .filter(|slot| slot.due <= now)
            .map(|slot| slot.client.clone())
            .collect();
        let mut round = ClientRound::default();
        let results: Vec<(Uuid, Result<_, StoreError>)> = futures::stream::iter(due)
            .map(|client| async move {
                let health = self.inner.checker.check(&client).await;
                let state = health.state;
                let recorded = self.inner.store.record_client_health(health).await;
                (client.id, recorded.map(|event| (state, event)))
            })
            .buffer_unordered(MAX_CONCURRENT_CLIENT_CHECKS)
            .collect()
            .await;
        let interval = chrono::Duration::from_std(self.inner.interval)
            .unwrap_or_else(|_| chrono::Duration::seconds(60));
        for (id, result) in results {
            round.checked += 1;
            match result {
                Ok((state, event)) => {
                    ::metrics::counter!(metrics::CLIENT_HEALTH_CHECKS, "state" => state.as_str())
                        .increment(1);
                    if let Some(event) = event {
                        round.changed += 1;
                        tracing::info!(client = %id, revision = event.revision, state = state.as_str(), "client health changed");
                    }
                    if let Some(slot) = schedule.slots.get_mut(&id) {
                        slot.state = Some(state);
                    }
                }
                Err(StoreError::ClientNotFound(_)) => {
                    schedule.slots.remove(&id);
                }
                Err(error) => {
                    round.failed += 1;
                    tracing::warn!(client = %id, %error, "client health: cannot record a check");
                }
            }
            if let Some(slot) = schedule.slots.get_mut(&id) {
                slot.due += interval;
                if slot.due <= now {
                    // Far behind (a stopped clock, a long pause): one interval from now.
                    slot.due = now + interval;
                }
            }
        }
        let mut by_state: HashMap<ClientHealthState, u64> = HashMap::new();
        for state in schedule.slots.values().filter_map(|slot| slot.state) {
            *by_state.entry(state).or_default() += 1;
        }
        for state in ClientHealthState::ALL {
            let count = by_state.get(state).copied().unwrap_or_default();
            ::metrics::gauge!(metrics::CLIENTS_BY_HEALTH, "state" => state.as_str())
                .set(count as f64);
        }
        round
    }

    /// The ids of the clients scheduled (tests).
    pub async fn scheduled(&self) -> Vec<Uuid> {
        self.inner
            .schedule
            .lock()
            .await
            .slots
            .keys()
            .copied()
            .collect()
    }

    /// Re-reads the deployed clients when the store's revision moved since
    /// the last load, or that load is [`FULL_RELOAD`] old; new clients get
    /// their first due time (from the clock's time, not a round's), gone
    /// ones are dropped.
    async fn reload(&self, schedule: &mut Schedule) -> Result<(), StoreError> {
        let revision = *self.inner.store.watch_revision().borrow();
        if let Some((loaded, at)) = schedule.loaded {
            if loaded == revision && at.elapsed() < FULL_RELOAD {
                return Ok(());
            }
        }
        let clients = self.deployed().await?;
        let now = self.inner.checker.clock().now();
        let mut slots = std::mem::take(&mut schedule.slots);
        for client in clients {
            let slot = match slots.remove(&client.id) {
                Some(slot) => Slot { client, ..slot },
                None => Slot {
                    due: now + self.first_offset(client.id),
                    client,
                    state: None,
                },
            };
            schedule.slots.insert(slot.client.id, slot);
        }
        schedule.loaded = Some((revision, Instant::now()));
        Ok(())
    }

    /// Every deployed client, a page at a time.
    async fn deployed(&self) -> Result<Vec<Client>, StoreError> {
        let filter = ClientFilter {
            status: Some(ClientStatus::Deployed),
            ..ClientFilter::default()
        };
        let mut all = Vec::new();
        let mut page = Page {
            page: 1,
            page_size: MAX_PAGE_SIZE,
        };
        loop {
            let list = self.inner.store.list_clients(&filter, page).await?;
            let last = list.items.len() < MAX_PAGE_SIZE as usize;
            all.extend(list.items);
            if last || page.page == u32::MAX {
                return Ok(all);
            }
            page.page += 1;
        }
    }

    /// A client's first check: 1 s to one interval after it is first seen,
    /// fixed by its id (UUID v7's low bits are random).
    fn first_offset(&self, id: Uuid) -> chrono::Duration {
        let span = self.inner.interval.as_millis().saturating_sub(1000).max(1);
        let millis = 1000 + (id.as_u128() % span);
        chrono::Duration::milliseconds(i64::try_from(millis).unwrap_or(1000))
    }
}
