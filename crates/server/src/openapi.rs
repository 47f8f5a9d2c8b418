//! The OpenAPI document, generated from the handlers' annotations.

use crate::api::{clusters, events, fleet, ops};
use fleetreg_model::{
    Capabilities, Cluster, ClusterCreateRequest, ClusterState, ClusterStatus, ClusterType,
    ClusterUpdateRequest, Connectivity, Endpoints, Environment, Event, EventType, HealthSample,
    ObservabilityCapabilities, Platform,
};
use fleetreg_model::{
    FleetCapabilities, FleetClusterHealth, FleetHealth, FleetSummary, GpuTypeTotals,
    ObservabilityCoverage, ScoreBucket,
};

/// The fleetreg API.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "fleetreg",
        description = "Fleet registry: clusters, their health, capabilities and change events."
    ),
    paths(
        clusters::create,
        clusters::list,
        clusters::get_one,
        clusters::get_by_name,
        clusters::update,
        clusters::delete,
        clusters::status,
        clusters::history,
        clusters::refresh,
        events::list,
        events::stream,
        fleet::summary,
        fleet::health,
        fleet::capabilities,
        ops::health,
        ops::ready,
        ops::metrics,
        ops::openapi
    ),
    components(schemas(
        Cluster,
        ClusterCreateRequest,
        ClusterUpdateRequest,
        ClusterStatus,
        HealthSample,
        Capabilities,
        ObservabilityCapabilities,
        Endpoints,
        ClusterType,
        Platform,
        Environment,
        ClusterState,
        Connectivity,
        Event,
        EventType,
        clusters::ClusterPage,
        events::EventList,
        FleetSummary,
        FleetHealth,
        ScoreBucket,
        FleetClusterHealth,
        FleetCapabilities,
        GpuTypeTotals,
        ObservabilityCoverage
    ))
)]
pub struct ApiDoc;
