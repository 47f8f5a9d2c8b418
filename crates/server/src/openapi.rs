//! The OpenAPI document, generated from the handlers' annotations.

use crate::api::{clusters, credentials, events, fleet, ops, tokens};
use fleetreg_model::{
    AuthType, CredentialInput, CredentialStatus, CredentialValidation, ValidationOutcome,
};
use fleetreg_model::{
    Capabilities, Cluster, ClusterCreateRequest, ClusterState, ClusterStatus, ClusterType,
    ClusterUpdateRequest, Connectivity, Endpoints, Environment, Event, EventType, HealthSample,
    ObservabilityCapabilities, Platform,
};
use fleetreg_model::{
    ClusterStatusDetail, CredentialExpiry, CredentialsSummary, ExpiringCredentials,
    ExpiringCredentialsList,
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
        credentials::store,
        credentials::rotate,
        credentials::validate,
        credentials::delete,
        credentials::expiring,
        tokens::create,
        tokens::list,
        tokens::revoke,
        events::list,
        events::stream,
        crate::api::audit::list,
        fleet::summary,
        fleet::health,
        fleet::capabilities,
        ops::health,
        ops::ready,
        ops::metrics,
        ops::openapi
    ),
    components(schemas(
        fleetreg_model::AuditEntry,
        fleetreg_model::AuditResult,
        crate::api::audit::AuditList,
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
        ObservabilityCoverage,
        AuthType,
        CredentialInput,
        CredentialStatus,
        CredentialValidation,
        ValidationOutcome,
        CredentialsSummary,
        CredentialExpiry,
        ExpiringCredentials,
        ExpiringCredentialsList,
        fleetreg_model::RotationStatus,
        fleetreg_model::RotationMode,
        ClusterStatusDetail,
        fleetreg_model::Role,
        fleetreg_model::ApiToken,
        fleetreg_model::CreatedToken,
        fleetreg_model::TokenCreateRequest
    ))
)]
pub struct ApiDoc;
