//! Timestamps: RFC 3339 in UTC, microsecond precision, within the range both
//! stores keep and compare correctly.

use crate::Error;
use chrono::{DateTime, SecondsFormat, Utc};

/// Earliest storable timestamp, 0001-01-01T00:00:00Z: PostgreSQL refuses
/// dates before 4713 BC and SQLite's text form needs a four-digit year.
pub const MIN_STORABLE_SECONDS: i64 = -62_135_596_800;
/// Latest storable timestamp, 9999-12-31T23:59:59Z: beyond it SQLite's text
/// form gains a fifth digit and stops sorting in time order.
pub const MAX_STORABLE_SECONDS: i64 = 253_402_300_799;

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

/// Whether `seconds` since the Unix epoch lies in the storable range
/// (years 0001 to 9999).
pub fn is_storable_seconds(seconds: i64) -> bool {
    (MIN_STORABLE_SECONDS..=MAX_STORABLE_SECONDS).contains(&seconds)
}

/// Refuses a timestamp outside years 0001–9999 as invalid `field`: every
/// timestamp from outside (a body, a token's `exp`, a duration added to now)
/// passes here before it is stored or compared.
pub fn check_storable(field: &str, t: &DateTime<Utc>) -> Result<(), Error> {
    if is_storable_seconds(t.timestamp()) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "must lie between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storable_range_is_years_1_to_9999() {
        let first = DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z").unwrap();
        let last = DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z").unwrap();
        assert_eq!(first.timestamp(), MIN_STORABLE_SECONDS);
        assert_eq!(last.timestamp(), MAX_STORABLE_SECONDS);
        assert!(check_storable("t", &first.with_timezone(&Utc)).is_ok());
        let beyond = DateTime::from_timestamp(MAX_STORABLE_SECONDS + 1, 0).unwrap();
        assert_eq!(check_storable("t", &beyond).unwrap_err().field(), "t");
        let before = DateTime::from_timestamp(MIN_STORABLE_SECONDS - 1, 0).unwrap();
        assert!(check_storable("t", &before).is_err());
    }
}
