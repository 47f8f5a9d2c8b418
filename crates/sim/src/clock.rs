//! The simulator's clock: wall time plus an offset that tests move forward, so
//! token and certificate expiry can be tested without sleeping.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, Ordering};

/// Wall-clock time shifted by an adjustable offset.
#[derive(Debug, Default)]
pub(crate) struct SimClock {
    offset_ms: AtomicI64,
}

impl SimClock {
    /// The simulator's current time.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Moves the clock by `seconds` (may be negative) and returns the new view.
    pub(crate) fn advance(&self, seconds: i64) -> ClockView {
        let delta = seconds.saturating_mul(1000);
        self.offset_ms.fetch_add(delta, Ordering::Relaxed);
        self.view()
    }

    /// The current time and offset.
    pub(crate) fn view(&self) -> ClockView {
        let offset_ms = self.offset_ms.load(Ordering::Relaxed);
        ClockView {
            now: Utc::now() + Duration::milliseconds(offset_ms),
            offset_seconds: offset_ms / 1000,
        }
    }
}

/// The simulator's clock as `GET /admin/clock` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockView {
    /// The time credential expiry is judged by.
    pub now: DateTime<Utc>,
    /// How far it is ahead of wall-clock time.
    pub offset_seconds: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_now() {
        let clock = SimClock::default();
        let before = clock.now();
        let view = clock.advance(3600);
        assert_eq!(view.offset_seconds, 3600);
        assert!(clock.now() - before >= Duration::seconds(3600));
    }
}
