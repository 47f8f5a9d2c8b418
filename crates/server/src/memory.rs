//! When to give memory back after many event streams end.
//!
//! The allocator (mimalloc, chosen by the binary) keeps what a thread freed
//! in that thread's heap, and returns free pages to the OS only when some
//! thread allocates again: after 5,000 subscribers left, an idle server
//! still held 205–209 MB 20 s later (41–44 MB before they came,
//! docs/BENCHMARKS.md). The server says
//! when a release is worth it: [`StreamCount`] requests one each time the
//! open streams have at least halved, by [`MIN_DROP`] or more, since the last
//! request, and once more when the last of them has ended (what is still open
//! pins the pages it shares with what was freed), so a burst of N ends asks
//! about log2(N) times, and every request but the last one's (when none is
//! left) follows at least [`MIN_DROP`] ended streams. The binary releases on each runtime worker as it next goes idle,
//! when [`releases_requested`] has moved since that worker's last release.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Fewest streams that must have ended since the last request.
pub const MIN_DROP: usize = 256;

static REQUESTED: AtomicU64 = AtomicU64::new(0);

/// The event streams of this process (the allocator is the process's too).
pub static EVENT_STREAMS: StreamCount = StreamCount::new();

/// How many releases have been requested since the process started.
pub fn releases_requested() -> u64 {
    REQUESTED.load(Ordering::Acquire)
}

/// Open streams, the most that were open since the last request, and
/// whether a request was made since none were open.
#[derive(Debug)]
pub struct StreamCount {
    counts: Mutex<Counts>,
}

#[derive(Debug)]
struct Counts {
    open: usize,
    peak: usize,
    draining: bool,
}

impl StreamCount {
    /// No stream open.
    pub const fn new() -> StreamCount {
        StreamCount {
            counts: Mutex::new(Counts {
                open: 0,
                peak: 0,
                draining: false,
            }),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A stream opened.
    pub fn opened(&self) {
        let mut counts = self.counts();
        counts.open += 1;
        counts.peak = counts.peak.max(counts.open);
    }

    /// A stream ended; requests a release (and says so) when the open
    /// streams have at least halved, by [`MIN_DROP`] or more, since the last
    /// request, or when none is left after a request.
    pub fn closed(&self) -> bool {
        let mut counts = self.counts();
        counts.open = counts.open.saturating_sub(1);
        let halved = counts.peak - counts.open >= MIN_DROP && counts.open <= counts.peak / 2;
        let due = halved || (counts.open == 0 && counts.draining);
        if due {
            counts.peak = counts.open;
            counts.draining = counts.open > 0;
            REQUESTED.fetch_add(1, Ordering::Release);
        }
        due
    }
}

impl Default for StreamCount {
    fn default() -> Self {
        StreamCount::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens `open` streams, then closes them all; the open counts at which
    /// a release was requested.
    fn requests_while_closing(count: &StreamCount, open: usize) -> Vec<usize> {
        (0..open).for_each(|_| count.opened());
        (0..open)
            .rev()
            .filter(|_| count.closed())
            .collect::<Vec<_>>()
    }

    #[test]
    fn a_burst_of_ends_asks_each_time_the_streams_halve_and_when_all_are_gone() {
        let count = StreamCount::new();
        assert_eq!(
            requests_while_closing(&count, 5000),
            [2500, 1250, 625, 312, 56, 0]
        );
        assert_eq!(
            requests_while_closing(&count, MIN_DROP),
            [0],
            "one drop of MIN_DROP"
        );
    }

    #[test]
    fn fewer_ends_than_min_drop_never_ask() {
        let count = StreamCount::new();
        assert!(requests_while_closing(&count, MIN_DROP - 1).is_empty());
        // Churn: streams come and go below MIN_DROP, around a level that stays.
        (0..50).for_each(|_| count.opened());
        for _ in 0..10 {
            (0..200).for_each(|_| count.opened());
            assert!((0..200).all(|_| !count.closed()));
        }
        assert!((0..50).all(|_| !count.closed()), "nor do the last 50");
    }
}
