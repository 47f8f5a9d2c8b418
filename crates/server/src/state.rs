//! Shared state of the handlers.

use crate::events::EventHub;
use crate::health::HealthContext;
use fleetreg_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What every handler can reach; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The live event fan-out.
    pub hub: EventHub,
    /// The metrics renderer.
    pub metrics: PrometheusHandle,
    /// Cancelled when the server shuts down; long-lived streams end on it.
    pub shutdown: CancellationToken,
    /// Token checks (its cache is cleared on revocation).
    pub auth: crate::auth::AuthState,
    /// The prober and the health-check and discovery settings (refresh,
    /// discovery on registration).
    pub health: HealthContext,
    /// Fleet-wide aggregates shared by concurrent requests.
    pub fleet: crate::api::fleet::SharedAggregates,
}
