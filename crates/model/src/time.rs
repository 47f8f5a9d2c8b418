//! Timestamps: RFC 3339 in UTC, microsecond precision.

use chrono::{DateTime, SecondsFormat, Utc};

/// The current time, truncated to microseconds so it survives every store unchanged.
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    let micros = t.timestamp_micros();
    DateTime::from_timestamp_micros(micros).unwrap_or(t)
}

/// Formats a timestamp as RFC 3339 UTC with microseconds and a `Z` suffix; the
/// fixed width makes the text sort in time order.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}
