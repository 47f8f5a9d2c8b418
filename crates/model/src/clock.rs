//! [`Clock`]: where the store and the server read the current time, so that
//! tests can set it instead of sleeping (token and credential expiry, health
//! history sampling, retention).
//!
//! Only wall-clock time goes through it. Timers and timeouts (tokio's
//! `Instant`, `sleep`, `interval`) measure elapsed time and stay as they are.

use chrono::{DateTime, Duration, Utc};
use std::sync::{Arc, Mutex, PoisonError};

/// The current time as the store and the server see it: the system clock,
/// or a manual one that only moves when a test sets or advances it. Cheap to
/// clone; clones share one manual time.
#[derive(Clone, Default)]
pub struct Clock(Source);

#[derive(Clone, Default)]
enum Source {
    #[default]
    System,
    Manual(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    /// The system clock (the default).
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    /// A clock standing still at `start` (truncated to microseconds) until
    /// [`Clock::set`] or [`Clock::advance`] moves it. For tests.
    pub fn manual(start: DateTime<Utc>) -> Clock {
        Clock(Source::Manual(Arc::new(Mutex::new(truncate(start)))))
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        matches!(self.0, Source::Manual(_))
    }

    /// The current time, truncated to microseconds so it survives every
    /// store unchanged (like [`crate::now`]).
    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            Source::System => crate::now(),
            Source::Manual(at) => *at.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// Sets a manual clock to `t` (truncated to microseconds); it may go back.
    ///
    /// # Panics
    /// On the system clock, which cannot be set.
    pub fn set(&self, t: DateTime<Utc>) {
        *self.manual_time("set") = truncate(t);
    }

    /// Moves a manual clock by `by` (negative goes back) and returns the new
    /// time.
    ///
    /// # Panics
    /// On the system clock, which cannot be moved, or past the end of time.
    pub fn advance(&self, by: Duration) -> DateTime<Utc> {
        let mut at = self.manual_time("advanced");
        *at = at
            .checked_add_signed(by)
            .map(truncate)
            .unwrap_or_else(|| panic!("Clock::advance by {by} leaves the representable range"));
        *at
    }

    fn manual_time(&self, what: &str) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        match &self.0 {
            Source::Manual(at) => at.lock().unwrap_or_else(PoisonError::into_inner),
            Source::System => panic!("the system clock cannot be {what}; use Clock::manual"),
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Source::System => f.write_str("Clock::System"),
            Source::Manual(_) => write!(f, "Clock::Manual({})", self.now()),
        }
    }
}

/// `t` truncated to microseconds.
fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_follows_the_wall_clock() {
        let clock = Clock::system();
        let before = crate::now();
        let now = clock.now();
        assert!(now >= before && now <= crate::now());
        assert_eq!(now.timestamp_subsec_nanos() % 1000, 0, "microseconds");
        assert!(!clock.is_manual());
        assert!(!Clock::default().is_manual());
    }

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let start = DateTime::parse_from_rfc3339("2030-01-02T03:04:05.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Clock::manual(start);
        let shared = clock.clone();
        let truncated = DateTime::parse_from_rfc3339("2030-01-02T03:04:05.123456Z").unwrap();
        assert_eq!(clock.now(), truncated);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(clock.now(), truncated, "stands still");
        assert!(clock.is_manual());

        let later = shared.advance(Duration::hours(1));
        assert_eq!(later, truncated + Duration::hours(1));
        assert_eq!(clock.now(), later, "clones share the time");
        clock.advance(Duration::minutes(-90));
        assert_eq!(
            shared.now(),
            truncated - Duration::minutes(30),
            "and may go back"
        );
        shared.set(start + Duration::days(1));
        assert_eq!(clock.now(), truncated + Duration::days(1));
        assert!(format!("{clock:?}").starts_with("Clock::Manual(2030-01-03"));
    }

    #[test]
    #[should_panic(expected = "the system clock cannot be advanced")]
    fn the_system_clock_cannot_be_moved() {
        Clock::system().advance(Duration::seconds(1));
    }
}
