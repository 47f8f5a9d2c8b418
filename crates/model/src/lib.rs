//! Domain types of fleetreg: clusters, their enums and validation, list filters,
//! events and audit records.
//!
//! Invariant: this crate never does IO. Everything here is pure data and pure
//! functions, so the store, the server and the CLI agree on one definition.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod audit;
mod auth;
mod client;
mod client_health;
mod client_lifecycle;
mod client_query;
mod client_schema;
mod clock;
mod cluster;
mod credentials;
mod edge;
mod enums;
mod error;
mod event;
mod filter;
mod fleet;
mod health;
mod history;
mod labels;
mod name;
mod nullable;
mod origin;
mod registry_file;
mod render;
mod rollout;
mod routing;
mod sync;
mod time;
mod url_field;

pub use audit::{Audit, AuditEntry, AuditResult};
pub use auth::{ApiToken, CreatedToken, Role, TokenCreateRequest};
pub use client::{
    Client, ClientCreateRequest, ClientSpec, ClientUpdateRequest, Maintenance, NewClient,
    ServerInfo, MAX_CLIENT_ENTRIES, MAX_NOTES,
};
pub use client_health::{
    tls_days_left, ClientHealth, ClientHealthState, ClientUrlHealth, UrlOutcome,
};
pub use client_lifecycle::{
    ClientAction, DeployRequest, DestroyRequest, MaintenanceRequest, NotesRequest, RebuildRequest,
    StatusRequest, VersionsRequest,
};
pub use client_query::{
    stale_cutoff, ClientFilter, ClientHistoryEntry, ClientSummary, StaleCondition,
    DEFAULT_STALE_DAYS, MAX_HISTORY_PAGE,
};
pub use clock::Clock;
pub use cluster::{
    Capabilities, Cluster, ClusterCreateRequest, ClusterPatch, ClusterStatus, ClusterUpdateRequest,
    Endpoints, NewCluster, ObservabilityCapabilities, FIELD_LIMITS,
};
pub use credentials::{
    ClusterStatusDetail, CredentialInput, CredentialStatus, CredentialValidation, CredentialWrite,
    CredentialsSummary, ExpiringCredentials, ExpiringCredentialsList, RotationMode, RotationStatus,
    StoredCredentials, ValidationOutcome, SECRET_FIELDS,
};
pub use edge::{
    DiscoveredService, DnsLabel, Domain, DomainFields, DomainName, DomainRequest, Node, NodeAck,
    NodeFields, NodeRequest, NodeSync, Routing, RoutingFields, RoutingRequest, Service,
    ServiceFields, ServiceRequest, ServiceSyncReport, Upstream, MAX_AGENT_ERROR, MAX_CHECK_ERROR,
    MAX_DESCRIPTION, MAX_ROUTING_TARGETS, MAX_UPSTREAMS,
};
pub use enums::{
    AuthType, ClientRole, ClientStatus, ClusterState, ClusterType, Connectivity, CredentialBinding,
    CredentialExpiry, Environment, MaintenanceField, NodeKind, NodeSyncStatus, Platform,
    PushReason, RoutingStrategy, ServiceOrigin, ServiceState,
};
pub use error::{Error, ErrorCode};
pub use event::{Event, EventFilter, EventType, EVENT_RESOURCES};
pub use filter::{
    parse_bool, ClusterFilter, LabelSelector, Page, DEFAULT_PAGE_SIZE, MAX_LABEL_SELECTORS,
    MAX_PAGE_SIZE,
};
pub use fleet::{
    CapabilityCounts, FleetCapabilities, FleetClusterHealth, FleetHealth, FleetSummary,
    GpuTypeTotals, ObservabilityCoverage, ScoreBucket, SummaryGroup, SCORE_BUCKETS,
};
pub use health::{
    cluster_status, describe, health_score, next_state, CheckResults, CheckTiming, Component,
};
pub use history::HealthSample;
pub use labels::{validate_label_key, validate_label_value, Labels};
pub use name::{ClientName, ClusterName};
pub use origin::{origin_of, CredentialOrigins};
pub use registry_file::{ImportPlan, ImportProblem, RegistryFile};
pub use render::{
    render_caddy, render_file_set, render_hosts_block, render_traefik, render_zones,
    replace_hosts_block, zone_serial, CaddyOptions, RenderOptions, RenderedFile,
    TraefikHealthCheck, TraefikOptions, ZoneFile, ZoneOptions, CADDY_FILE, HOSTS_BEGIN, HOSTS_END,
    HOSTS_FILE, TRAEFIK_FILE,
};
pub use rollout::{
    Rollout, RolloutClient, RolloutClientState, RolloutCommand, RolloutConflict, RolloutEvent,
    RolloutObservation, RolloutRequest, RolloutStatus, RolloutWave, DEFAULT_WAVE_SIZE,
    MAX_ROLLOUT_CLIENTS,
};
pub use routing::{
    Balance, DnsRecord, EdgeSnapshot, HostRoute, NodeConfig, NodeView, ProxyRoute, RoutingPlan,
};
pub use sync::{
    ConflictReport, Deployment, DeploymentCreateRequest, DeregistrationPreview, Host,
    HostCreateRequest, Leader, LeaderClaim, MoveRequest, SyncClient, SyncConflict, SyncJob,
    SyncJobReport, SyncKind, SyncStartRequest, SyncStatus, SyncStatusView, MAX_LEASE_SECONDS,
    SYNC_CLIENT_REMEDIATIONS,
};
pub use time::{check_storable, format_timestamp, is_storable_seconds, now};
