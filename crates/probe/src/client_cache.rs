//! [`ClientCache`]: the HTTP clients built for one credential's TLS set-up, kept
//! by credential id so that checks every 30 s reuse their keep-alive
//! connections instead of a new TLS handshake each time.
//!
//! Bounded two ways: an entry unused for [`IDLE_TTL`] is dropped (a deleted or
//! rotated credential's pool goes away on its own; the idle connections inside
//! already close after the pool's 90 s idle timeout), and at [`CAPACITY`]
//! entries the least recently used one makes room. Idle entries are swept on
//! every insert and at most once per [`IDLE_TTL`] on lookups, so the cost is a
//! scan of at most `CAPACITY` entries, rarely.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// An entry unused this long is dropped.
pub(crate) const IDLE_TTL: Duration = Duration::from_secs(10 * 60);
/// Most entries kept (one per credential in use; a fleet of a few thousand
/// clusters fits).
pub(crate) const CAPACITY: usize = 4096;

/// Values by credential id, bounded by idleness and count.
pub(crate) struct ClientCache<T> {
    ttl: Duration,
    capacity: usize,
    state: Mutex<State<T>>,
}

struct State<T> {
    entries: HashMap<Uuid, Slot<T>>,
    last_sweep: Option<Instant>,
}

struct Slot<T> {
    value: T,
    last_used: Instant,
}

impl<T: Clone> ClientCache<T> {
    /// An empty cache with the default bounds.
    pub(crate) fn new() -> ClientCache<T> {
        ClientCache::with_bounds(IDLE_TTL, CAPACITY)
    }

    /// An empty cache dropping entries idle for `ttl`, holding at most `capacity`.
    pub(crate) fn with_bounds(ttl: Duration, capacity: usize) -> ClientCache<T> {
        ClientCache {
            ttl,
            capacity: capacity.max(1),
            state: Mutex::new(State {
                entries: HashMap::new(),
                last_sweep: None,
            }),
        }
    }

    /// The value for `id`, built by `build` when absent. `build` runs without the
    /// lock held (building TLS configurations takes a while); when two callers
    /// race, the first value stored wins and both get it.
    pub(crate) fn get_or_try_insert<E>(
        &self,
        id: Uuid,
        build: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        self.get_or_try_insert_at(id, Instant::now(), build)
    }

    pub(crate) fn get_or_try_insert_at<E>(
        &self,
        id: Uuid,
        now: Instant,
        build: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        if let Some(value) = self.lookup(id, now) {
            return Ok(value);
        }
        let built = build()?;
        let mut state = self.lock();
        self.sweep(&mut state, now);
        if let Some(slot) = state.entries.get_mut(&id) {
            slot.last_used = now;
            return Ok(slot.value.clone());
        }
        if state.entries.len() >= self.capacity {
            let oldest = state
                .entries
                .iter()
                .min_by_key(|(_, slot)| slot.last_used)
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                state.entries.remove(&oldest);
            }
        }
        state.entries.insert(
            id,
            Slot {
                value: built.clone(),
                last_used: now,
            },
        );
        Ok(built)
    }

    /// How many entries are held.
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }

    fn lookup(&self, id: Uuid, now: Instant) -> Option<T> {
        let mut state = self.lock();
        let due = state
            .last_sweep
            .is_none_or(|last| now.saturating_duration_since(last) >= self.ttl);
        if due {
            self.sweep(&mut state, now);
        }
        let slot = state.entries.get_mut(&id)?;
        if now.saturating_duration_since(slot.last_used) >= self.ttl {
            state.entries.remove(&id);
            return None;
        }
        slot.last_used = now;
        Some(slot.value.clone())
    }

    fn sweep(&self, state: &mut State<T>, now: Instant) {
        let ttl = self.ttl;
        state
            .entries
            .retain(|_, slot| now.saturating_duration_since(slot.last_used) < ttl);
        state.last_sweep = Some(now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // A panic elsewhere cannot leave the map half-updated between statements.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn ok(value: u32) -> impl FnOnce() -> Result<u32, Infallible> {
        move || Ok(value)
    }

    #[test]
    fn builds_once_and_reuses() {
        let cache = ClientCache::new();
        let id = Uuid::new_v4();
        assert_eq!(cache.get_or_try_insert(id, ok(1)).unwrap(), 1);
        assert_eq!(cache.get_or_try_insert(id, ok(2)).unwrap(), 1);
        assert_eq!(cache.len(), 1);
        let failed: Result<u32, &str> = cache.get_or_try_insert(Uuid::new_v4(), || Err("no"));
        assert_eq!(failed, Err("no"));
        assert_eq!(cache.len(), 1, "a failed build stores nothing");
    }

    #[test]
    fn idle_entries_expire() {
        let ttl = Duration::from_secs(600);
        let cache = ClientCache::with_bounds(ttl, 10);
        let start = Instant::now();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        cache.get_or_try_insert_at(a, start, ok(1)).unwrap();
        cache.get_or_try_insert_at(b, start, ok(2)).unwrap();
        // `a` is used again just before it would expire, `b` is not.
        let later = start + ttl - Duration::from_secs(1);
        assert_eq!(cache.get_or_try_insert_at(a, later, ok(9)).unwrap(), 1);
        let much_later = start + ttl + Duration::from_secs(1);
        assert_eq!(cache.get_or_try_insert_at(a, much_later, ok(9)).unwrap(), 1);
        assert_eq!(cache.len(), 1, "b was swept");
        assert_eq!(cache.get_or_try_insert_at(b, much_later, ok(3)).unwrap(), 3);
    }

    #[test]
    fn the_least_recently_used_makes_room() {
        let cache = ClientCache::with_bounds(Duration::from_secs(600), 2);
        let start = Instant::now();
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        cache.get_or_try_insert_at(ids[0], start, ok(0)).unwrap();
        cache
            .get_or_try_insert_at(ids[1], start + Duration::from_secs(1), ok(1))
            .unwrap();
        // Touch 0, so 1 is the least recently used.
        cache
            .get_or_try_insert_at(ids[0], start + Duration::from_secs(2), ok(7))
            .unwrap();
        cache
            .get_or_try_insert_at(ids[2], start + Duration::from_secs(3), ok(2))
            .unwrap();
        assert_eq!(cache.len(), 2);
        let at = start + Duration::from_secs(4);
        assert_eq!(cache.get_or_try_insert_at(ids[0], at, ok(7)).unwrap(), 0);
        assert_eq!(cache.get_or_try_insert_at(ids[2], at, ok(7)).unwrap(), 2);
        assert_eq!(
            cache.get_or_try_insert_at(ids[1], at, ok(8)).unwrap(),
            8,
            "1 was evicted and is rebuilt"
        );
    }
}
