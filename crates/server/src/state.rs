//! Shared state of the handlers.

use crate::events::EventHub;
use crate::health::HealthContext;
use fleetreg_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What every handler can reach: one shared [`Shared`], so a clone (the
/// router and its middleware make several per request) is one reference
/// count, not a copy of every handle inside.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state holding `shared`.
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The handles behind [`AppState`].
pub struct Shared {
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
    /// Live checks of clients' URLs (`GET /api/v1/clients/{name}/health`).
    pub client_health: crate::client_health::ClientHealthChecker,
    /// Fleet-wide aggregates shared by concurrent requests.
    pub fleet: crate::api::fleet::SharedAggregates,
    /// Where handlers read the current time: the store's clock
    /// ([`Store::clock`]), so that a test setting it moves both.
    pub clock: fleetreg_model::Clock,
    /// Wake-ups of this replica's open agent streams, by node.
    pub signals: crate::edge_sync::NodeSignals,
    /// The reads of woken agent streams, shared.
    pub config_reads: crate::edge_sync::ConfigReads,
    /// The sync controller's run-time settings (reconciliation interval).
    pub edge: crate::edge_sync::ControllerHandle,
}
