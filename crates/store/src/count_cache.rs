//! Exact list totals cached per filter and revision.
//!
//! Every filterable field changes only through writes that take a revision
//! (metadata updates, state transitions, capability changes), so a total read
//! at revision R stays exact until the revision moves.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

const CAPACITY: usize = 4096;

/// Totals by filter (a cluster or a client filter), each valid for one revision.
#[derive(Debug)]
pub(crate) struct CountCache<F> {
    // std Mutex: held only for a map lookup, never across an await.
    entries: Mutex<HashMap<F, (i64, u64)>>,
}

impl<F> Default for CountCache<F> {
    fn default() -> Self {
        CountCache {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<F: Hash + Eq + Clone> CountCache<F> {
    /// The total for `filter` read at `revision`, if cached.
    pub(crate) fn get(&self, filter: &F, revision: i64) -> Option<u64> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(filter)
            .filter(|(rev, _)| *rev == revision)
            .map(|(_, total)| *total)
    }

    /// Remembers `total` for `filter` at `revision`.
    pub(crate) fn put(&self, filter: &F, revision: i64, total: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CAPACITY && !entries.contains_key(filter) {
            entries.clear();
        }
        entries.insert(filter.clone(), (revision, total));
    }
}
