//! Health history samples (seed 7.1).

use crate::enums::ClusterState;
use crate::ClusterStatus;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One recorded health observation of a cluster: every state change plus one
/// sample per sampling period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthSample {
    /// When the observation was made.
    pub checked_at: DateTime<Utc>,
    /// The state at that time.
    pub state: ClusterState,
    /// The score at that time.
    pub health_score: i32,
    /// The full status as observed.
    pub status: ClusterStatus,
}
