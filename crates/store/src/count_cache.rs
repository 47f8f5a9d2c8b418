//! Exact list totals cached per filter and revision.
//!
//! Every filterable field changes only through writes that take a revision
//! (metadata updates, state transitions, capability changes), so a total read
//! at revision R stays exact until the revision moves.

use fleetreg_model::ClusterFilter;
use std::collections::HashMap;
use std::sync::Mutex;

const CAPACITY: usize = 4096;

/// Totals by filter, each valid for one revision.
#[derive(Debug, Default)]
pub(crate) struct CountCache {
    // std Mutex: held only for a map lookup, never across an await.
    entries: Mutex<HashMap<ClusterFilter, (i64, u64)>>,
}

impl CountCache {
    /// The total for `filter` read at `revision`, if cached.
    pub(crate) fn get(&self, filter: &ClusterFilter, revision: i64) -> Option<u64> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(filter)
            .filter(|(rev, _)| *rev == revision)
            .map(|(_, total)| *total)
    }

    /// Remembers `total` for `filter` at `revision`.
    pub(crate) fn put(&self, filter: &ClusterFilter, revision: i64, total: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CAPACITY && !entries.contains_key(filter) {
            entries.clear();
        }
        entries.insert(filter.clone(), (revision, total));
    }
}
