//! Credential expiry as the API and metrics show it: per cluster (the
//! `credentials` summary of status and single reads) and across the fleet
//! (counts and the soonest-expiring list), judged at read time against the
//! rotation warning window (`credentials.rotation_warning_days`).
//!
//! Every count and list comes from the store's `expires_at` index; nothing
//! here opens a sealed field.

use super::Credentials;
use chrono::{DateTime, Duration, Utc};
use fleetreg_model::{CredentialsSummary, ExpiringCredentialsList};
use fleetreg_store::StoreError;
use uuid::Uuid;

/// The largest window accepted, in days (about a century): keeps the date
/// arithmetic far from overflow.
pub const MAX_WINDOW_DAYS: u64 = 36_500;

/// A window of `days` days (capped at [`MAX_WINDOW_DAYS`]).
pub fn window(days: u64) -> Duration {
    let days = i64::try_from(days.min(MAX_WINDOW_DAYS)).unwrap_or(0);
    Duration::days(days)
}

/// The store's bounds are exclusive (`expires_at < before`); the expiry rules
/// are inclusive (expired at `now`, expiring at exactly the window). One
/// microsecond (the timestamps' precision) later makes them agree.
fn through(t: DateTime<Utc>) -> DateTime<Utc> {
    t + Duration::microseconds(1)
}

/// How many clusters have credentials expiring within a window and how many
/// have expired credentials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpiryCounts {
    /// Expiring within the window, not yet expired.
    pub expiring: u64,
    /// Already expired.
    pub expired: u64,
}

impl Credentials {
    /// The rotation warning window (`credentials.rotation_warning_days`).
    pub fn rotation_warning_days(&self) -> u64 {
        self.rotation_warning_days
    }

    /// Sets the rotation warning window in days.
    pub fn with_rotation_warning_days(mut self, days: u64) -> Credentials {
        self.rotation_warning_days = days.min(MAX_WINDOW_DAYS);
        self
    }

    /// The `credentials` summary of one cluster, judged now (one row read),
    /// with its `rotation` object.
    pub async fn summary(&self, cluster_id: Uuid) -> Result<CredentialsSummary, StoreError> {
        let stored = self.store.get_credentials(cluster_id).await?;
        let mut summary = CredentialsSummary::of(
            stored.as_ref(),
            self.store.clock().now(),
            window(self.rotation_warning_days),
        );
        if let Some(stored) = &stored {
            summary.rotation = self.rotation_status(stored).await;
        }
        Ok(summary)
    }

    /// The counts for a window of `within_days` days from now (two index
    /// range counts).
    pub async fn expiry_counts(&self, within_days: u64) -> Result<ExpiryCounts, StoreError> {
        let now = self.store.clock().now();
        let expired = self.store.count_expiring_credentials(through(now)).await?;
        let within = self
            .store
            .count_expiring_credentials(through(now + window(within_days)))
            .await?;
        Ok(ExpiryCounts {
            expiring: within.saturating_sub(expired),
            expired,
        })
    }

    /// The counts and the `limit` soonest-expiring credentials (expired ones
    /// first) for a window of `within_days` days from now.
    pub async fn expiring(
        &self,
        within_days: u64,
        limit: u32,
    ) -> Result<ExpiringCredentialsList, StoreError> {
        let within_days = within_days.min(MAX_WINDOW_DAYS);
        let counts = self.expiry_counts(within_days).await?;
        let before = through(self.store.clock().now() + window(within_days));
        let mut items = self.store.expiring_credentials(before, limit).await?;
        self.with_rotation(&mut items).await;
        Ok(ExpiringCredentialsList {
            within_days,
            expiring_count: counts.expiring,
            expired_count: counts.expired,
            items,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_capped() {
        assert_eq!(window(7), Duration::days(7));
        assert_eq!(window(u64::MAX), Duration::days(36_500));
    }
}
