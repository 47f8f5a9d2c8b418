//! Configuration: the seed's `cluster_registry:` YAML block (section 11) plus
//! fleetreg's own keys. Flags and environment variables override the file.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Everything `serve` needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on (`127.0.0.1:8080`; port 0 picks one).
    pub listen: SocketAddr,
    /// `sqlite://fleetreg.db` or `postgres://…`.
    pub database_url: String,
    /// Redis to publish events to, if any.
    pub redis_url: Option<String>,
    /// How long change-log events are kept.
    pub events_retention: Duration,
    /// How long health history samples are kept.
    pub history_retention: Duration,
    /// At most one history sample per cluster per this period without a state
    /// change (`history.sample_minutes`).
    pub history_sample: Duration,
    /// How often the retention worker runs.
    pub retention_interval: Duration,
    /// The file's `health_check` block (used by the health scheduler).
    pub health_check: HealthCheckConfig,
    /// The file's `discovery` block.
    pub discovery: DiscoveryConfig,
    /// The file's `credentials` block.
    pub credentials: CredentialsConfig,
    /// Longest a request may take before it is answered 503.
    pub request_timeout: Duration,
    /// The `auth:` block.
    pub auth: AuthConfig,
    /// The `audit:` block.
    pub audit: AuditConfig,
    /// Serve HTTPS with this certificate and key (`--tls-cert`, `--tls-key`).
    pub tls: Option<crate::tls::TlsFiles>,
    /// Allow plain HTTP on a non-loopback address (behind a TLS proxy).
    pub allow_insecure_listen: bool,
    /// The `client_health:` block: live checks of deployed clients' URLs.
    pub client_health: ClientHealthConfig,
    /// The `http:` block: connection timeouts and limit.
    pub http: HttpConfig,
    /// The `sync:` block: when a silent host counts as orphaned.
    pub sync: SyncConfig,
    /// The `edge:` block: push-sync to edge nodes and service discovery.
    pub edge: EdgeConfig,
    /// Where the store and the server read the current time: the system
    /// clock (never from the file); tests give a manual one to set the time
    /// instead of sleeping.
    pub clock: fleetreg_model::Clock,
}

/// `sync:` (fleetreg's own): hosts and their heartbeats, and how often
/// rollouts move.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// A host without a heartbeat for this many seconds is orphaned
    /// (`HOST_ORPHANED`, `fleetreg host orphaned`); the seed's 5 minutes.
    pub orphan_after_seconds: u64,
    /// How often hosts are checked for that.
    pub orphan_check_seconds: u64,
    /// How often running rollouts look at their current wave's clients.
    pub rollout_check_seconds: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            orphan_after_seconds: 300,
            orphan_check_seconds: 30,
            rollout_check_seconds: 5,
        }
    }
}

/// `edge:` (fleetreg's own): the sync controller that pushes each edge
/// node's configuration, node liveness, and services read from clusters.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// A node whose agent sent no heartbeat for this many seconds is
    /// `offline` and, for routing, down (primary-backup and geo routes fail
    /// over). Agents send one every 10 s by default.
    pub offline_after_seconds: u64,
    /// The first retry of an unacknowledged push waits this long; each next
    /// one twice as long (3 retries, then the node is `failed`).
    pub push_retry_base_ms: u64,
    /// Every node is sent its full configuration this often (the seed's
    /// hourly reconciliation; 0: only on request) unless `fleetreg sync
    /// reconcile --every` stored another interval, which every replica then
    /// uses, also after a restart.
    pub reconcile_seconds: u64,
    /// How often the controller looks at liveness and due retries.
    pub controller_tick_ms: u64,
    /// How often services are read from registered clusters (annotated
    /// Kubernetes `Service`s); 0 turns it off.
    pub service_sync_seconds: u64,
    /// The HTTP check through each VPS node (health-driven failover).
    pub http_check: HttpCheckConfig,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            offline_after_seconds: 30,
            push_retry_base_ms: 2000,
            reconcile_seconds: 3600,
            controller_tick_ms: 500,
            service_sync_seconds: 60,
            http_check: HttpCheckConfig::default(),
        }
    }
}

impl EdgeConfig {
    fn validate(&self) -> Result<(), String> {
        self.http_check.validate()
    }
}

/// `edge.http_check:` health-driven failover (issue 13 item 10). The sync
/// controller's leader sends one `GET scheme://address:port/path` through
/// each VPS node per interval, `Host` a hostname the node carries (or would
/// carry); any answer below 500 passes. After `failures` consecutive
/// failures the node is down for routing (as when its agent is silent), up
/// again after the first success.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpCheckConfig {
    /// Check VPS nodes at all (laptops never are).
    pub enabled: bool,
    /// Seconds from one round of checks to the next, 1 to 3600.
    pub interval_seconds: u64,
    /// Milliseconds one check may take (connecting included), 100 to 60000
    /// and below the interval.
    pub timeout_ms: u64,
    /// Consecutive failures before a node is down, 1 to 100.
    pub failures: u32,
    /// The port checked on each node.
    pub port: u16,
    /// The request path: starts with `/`, printable ASCII without spaces.
    pub path: String,
    /// `http` or `https` (verified against the web PKI roots and `ca_file`).
    pub scheme: CheckScheme,
    /// Which of a node's addresses is checked.
    pub address: CheckAddress,
    /// A CA bundle (PEM) https nodes' certificates may also chain to,
    /// besides the web PKI roots; read at start-up.
    pub ca_file: Option<std::path::PathBuf>,
}

/// `edge.http_check.scheme`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CheckScheme {
    /// Plain HTTP.
    Http,
    /// HTTPS, the hostname as SNI.
    Https,
}

/// `edge.http_check.address`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CheckAddress {
    /// The node's public address (what clients reach).
    Public,
    /// Its overlay address (e.g. Tailscale).
    Overlay,
}

/// The longest `edge.http_check.path`.
const MAX_CHECK_PATH: usize = 1024;

impl Default for HttpCheckConfig {
    fn default() -> Self {
        HttpCheckConfig {
            enabled: true,
            interval_seconds: 10,
            timeout_ms: 2000,
            failures: 3,
            port: 80,
            path: "/".into(),
            scheme: CheckScheme::Http,
            address: CheckAddress::Public,
            ca_file: None,
        }
    }
}

impl HttpCheckConfig {
    /// Time between two rounds.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_seconds.max(1))
    }

    /// Time one check may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    fn validate(&self) -> Result<(), String> {
        let key = "edge.http_check";
        if !(1..=3600).contains(&self.interval_seconds) {
            return Err(format!(
                "{key}.interval_seconds ({}) must be 1 to 3600",
                self.interval_seconds
            ));
        }
        if !(100..=60_000).contains(&self.timeout_ms)
            || self.timeout_ms >= self.interval_seconds.saturating_mul(1000)
        {
            return Err(format!(
                "{key}.timeout_ms ({}) must be 100 to 60000 and shorter than \
                 interval_seconds ({} s)",
                self.timeout_ms, self.interval_seconds
            ));
        }
        if !(1..=100).contains(&self.failures) {
            return Err(format!(
                "{key}.failures ({}) must be 1 to 100",
                self.failures
            ));
        }
        if self.port == 0 {
            return Err(format!("{key}.port must be 1 to 65535"));
        }
        let printable = self.path.bytes().all(|b| b.is_ascii_graphic());
        if !self.path.starts_with('/')
            || !printable
            || self.path.contains('#')
            || self.path.len() > MAX_CHECK_PATH
        {
            return Err(format!(
                "{key}.path ({:?}) must start with /, be at most {MAX_CHECK_PATH} printable \
                 ASCII characters and hold no space or #",
                self.path
            ));
        }
        Ok(())
    }
}

/// `http:` (fleetreg's own): how long clients may take and how many
/// connections may be open at once.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Seconds from a connection's start, or from the first byte of a
    /// request, to the end of the request head; slower clients are cut off.
    pub header_read_timeout_seconds: u64,
    /// Seconds a connection may stay open between requests, and a response
    /// may wait for a client that reads nothing.
    pub idle_timeout_seconds: u64,
    /// Seconds a TLS handshake may take.
    pub tls_handshake_timeout_seconds: u64,
    /// Most client connections open at once; when absent, the soft
    /// `RLIMIT_NOFILE` minus headroom (a quarter, at least 256).
    pub max_connections: Option<usize>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout_seconds: 10,
            idle_timeout_seconds: 60,
            tls_handshake_timeout_seconds: 10,
            max_connections: None,
        }
    }
}

impl HttpConfig {
    /// The accept loop's limits (timeouts at least one second, at least one
    /// connection).
    pub fn connection_limits(&self) -> crate::serve::ConnectionLimits {
        let seconds = |s: u64| Duration::from_secs(s.max(1));
        crate::serve::ConnectionLimits {
            header_read_timeout: seconds(self.header_read_timeout_seconds),
            idle_timeout: seconds(self.idle_timeout_seconds),
            tls_handshake_timeout: seconds(self.tls_handshake_timeout_seconds),
            max_connections: self
                .max_connections
                .unwrap_or_else(crate::serve::default_max_connections)
                .max(1),
        }
    }
}

/// `client_health:` (fleetreg's own; issue 12): live checks of the URLs of
/// deployed clients, on demand (`GET /api/v1/clients/{name}/health`) and
/// periodically. They connect only where `health_check.allowed_networks`
/// allows.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientHealthConfig {
    /// Seconds between two periodic checks of a deployed client (the
    /// clients' checks spread over it); 0 turns periodic checks off.
    pub interval_seconds: u64,
    /// Seconds one URL may take to answer (resolving, connecting and the TLS
    /// handshake included), 1 to [`MAX_CLIENT_HEALTH_TIMEOUT`].
    pub timeout_seconds: u64,
    /// A CA bundle (PEM) whose certificates https URLs may also chain to,
    /// besides the web PKI roots.
    pub ca_file: Option<std::path::PathBuf>,
}

/// The longest `client_health.timeout_seconds`: a live check must answer
/// well within the request time limit (30 s).
pub const MAX_CLIENT_HEALTH_TIMEOUT: u64 = 20;

impl Default for ClientHealthConfig {
    fn default() -> Self {
        ClientHealthConfig {
            interval_seconds: 60,
            timeout_seconds: 5,
            ca_file: None,
        }
    }
}

impl ClientHealthConfig {
    /// The period of the periodic checks; `None` when they are off.
    pub fn interval(&self) -> Option<Duration> {
        (self.interval_seconds > 0).then(|| Duration::from_secs(self.interval_seconds))
    }

    /// The time one URL may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.clamp(1, MAX_CLIENT_HEALTH_TIMEOUT))
    }

    fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_CLIENT_HEALTH_TIMEOUT).contains(&self.timeout_seconds) {
            return Err(format!(
                "client_health.timeout_seconds ({}) must be 1 to {MAX_CLIENT_HEALTH_TIMEOUT}",
                self.timeout_seconds
            ));
        }
        Ok(())
    }
}

/// `audit:` (fleetreg's own).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Where the audit chain's head (last id and MAC) is written after each
    /// commit; default `fleetreg-audit.head` next to the master key file.
    pub head_file: Option<std::path::PathBuf>,
}

/// The audit head file's name when `audit.head_file` is not set.
pub const DEFAULT_AUDIT_HEAD_FILE: &str = "fleetreg-audit.head";

/// `audit.head_file`, else [`DEFAULT_AUDIT_HEAD_FILE`] in the directory of
/// `master_key_file`.
pub fn audit_head_file(head_file: Option<&Path>, master_key_file: &Path) -> std::path::PathBuf {
    match head_file {
        Some(path) => path.to_path_buf(),
        None => master_key_file
            .parent()
            .unwrap_or_else(|| Path::new(""))
            .join(DEFAULT_AUDIT_HEAD_FILE),
    }
}

impl Settings {
    /// The audit head file in force (see [`audit_head_file`]).
    pub fn audit_head_file(&self) -> std::path::PathBuf {
        audit_head_file(
            self.audit.head_file.as_deref(),
            &self.credentials.master_key_file,
        )
    }
}

/// `auth:` (fleetreg's own).
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Where `serve` writes the bootstrap admin token (mode 0600) when it
    /// creates one.
    pub admin_token_file: std::path::PathBuf,
    /// The bootstrap admin token itself, from `FLEETREG_ADMIN_TOKEN`; never
    /// read from the file.
    #[serde(skip)]
    pub admin_token: Option<String>,
    /// Serve `/metrics` without a token (the default, for scrapers); when false
    /// it needs a viewer, operator or admin token.
    pub metrics_open: bool,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("admin_token_file", &self.admin_token_file)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("metrics_open", &self.metrics_open)
            .finish()
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            admin_token_file: "fleetreg-admin.token".into(),
            admin_token: None,
            metrics_open: true,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://fleetreg.db".into(),
            redis_url: None,
            events_retention: Duration::from_secs(7 * 24 * 3600),
            history_retention: Duration::from_secs(7 * 24 * 3600),
            history_sample: Duration::from_secs(300),
            retention_interval: Duration::from_secs(300),
            health_check: HealthCheckConfig::default(),
            discovery: DiscoveryConfig::default(),
            credentials: CredentialsConfig::default(),
            request_timeout: Duration::from_secs(30),
            auth: AuthConfig::default(),
            audit: AuditConfig::default(),
            tls: None,
            allow_insecure_listen: false,
            client_health: ClientHealthConfig::default(),
            http: HttpConfig::default(),
            sync: SyncConfig::default(),
            edge: EdgeConfig::default(),
            clock: fleetreg_model::Clock::system(),
        }
    }
}

/// The top of the configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    cluster_registry: RegistryConfig,
}

/// The `cluster_registry:` block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryConfig {
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    redis_url: Option<String>,
    #[serde(default)]
    health_check: HealthCheckConfig,
    #[serde(default)]
    discovery: DiscoveryConfig,
    #[serde(default)]
    credentials: CredentialsConfig,
    #[serde(default)]
    events: EventsConfig,
    #[serde(default)]
    history: HistoryConfig,
    #[serde(default)]
    auth: AuthConfig,
    #[serde(default)]
    audit: AuditConfig,
    #[serde(default)]
    client_health: ClientHealthConfig,
    #[serde(default)]
    http: HttpConfig,
    #[serde(default)]
    sync: SyncConfig,
    #[serde(default)]
    edge: EdgeConfig,
}

/// The smallest `health_check.max_response_bytes` accepted (an API server's
/// `/version` or a list of one namespace is well under it).
const MIN_RESPONSE_BYTES: u64 = 16 * 1024;

/// `health_check:` (seed 11).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// Whether the scheduler runs.
    pub enabled: bool,
    /// HUB interval.
    pub hub_interval_seconds: u64,
    /// SPOKE interval.
    pub spoke_interval_seconds: u64,
    /// EDGE interval.
    pub edge_interval_seconds: u64,
    /// FAR_EDGE interval.
    pub far_edge_interval_seconds: u64,
    /// One timeout for every type; when absent each type uses seed 8.3's.
    pub timeout_seconds: Option<u64>,
    /// Where health checks and discovery may connect: CIDRs, IP addresses and
    /// host patterns (`*.example.com`); empty allows everything but link-local,
    /// cloud metadata and unspecified addresses (see `fleetreg_probe::EgressPolicy`).
    pub allowed_networks: Vec<String>,
    /// The most bytes of one response body read from a cluster (API server,
    /// Prometheus, Tempo, Loki, TokenRequest); a longer answer fails its call
    /// with a clear cause, unread. Default 4 MiB.
    pub max_response_bytes: u64,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            enabled: true,
            hub_interval_seconds: 15,
            spoke_interval_seconds: 30,
            edge_interval_seconds: 60,
            far_edge_interval_seconds: 120,
            timeout_seconds: None,
            allowed_networks: Vec::new(),
            max_response_bytes: fleetreg_probe::DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// `discovery:` (seed 11).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// Discover capabilities when a cluster is registered.
    pub on_registration: bool,
    /// Rediscover every this many hours.
    pub periodic_refresh_hours: u64,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            on_registration: true,
            periodic_refresh_hours: 24,
        }
    }
}

/// `credentials:` (seed 11).
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialsConfig {
    /// Namespace of the Kubernetes Secrets backend.
    pub secret_namespace: String,
    /// Warn this many days before credentials expire.
    pub rotation_warning_days: u64,
    /// The master key file (base64 keys, one per line, first active; mode 0600),
    /// created on first start when missing.
    pub master_key_file: std::path::PathBuf,
    /// The master key(s) themselves (base64), from `FLEETREG_MASTER_KEY`; when
    /// set, the file is not used. Never read from the config file.
    #[serde(skip)]
    pub master_key: Option<String>,
    /// `auto_rotation:` automatic rotation of service account tokens.
    pub auto_rotation: AutoRotationConfig,
    /// Where the sealed envelopes live: `database` (the row) or `kubernetes`
    /// (a Secret per cluster on the hub, seed 7.2).
    pub backend: CredentialsBackendKind,
    /// `kubernetes:` the hub of the Kubernetes Secrets backend.
    pub kubernetes: KubernetesBackendConfig,
    /// Send cluster bearer tokens over plain `http://` to hosts that are not
    /// loopback addresses (fleetreg's own; off: such a request is refused
    /// before connecting, and loopback or `https://` only get tokens).
    pub allow_plain_http: bool,
}

/// `credentials.backend` (fleetreg's own).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CredentialsBackendKind {
    /// Envelopes in the database row (the default).
    #[default]
    Database,
    /// Envelopes in the Secret `cluster-creds-{id}` of `secret_namespace` on the hub.
    Kubernetes,
}

/// `credentials.kubernetes:` how to reach the hub's API server (fleetreg's own).
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesBackendConfig {
    /// The hub's API server URL.
    pub api_url: Option<String>,
    /// File holding the bearer token of the registry's service account on the hub.
    pub token_file: Option<std::path::PathBuf>,
    /// The token itself, from `FLEETREG_HUB_TOKEN` (preferred over the file).
    /// Never read from the config file.
    #[serde(skip)]
    pub token: Option<String>,
    /// CA bundle (PEM) to trust for the hub.
    pub ca_cert_file: Option<std::path::PathBuf>,
    /// Do not verify the hub's certificate (logged as a warning).
    pub insecure_skip_tls_verify: bool,
}

impl KubernetesBackendConfig {
    /// Takes the hub token from `FLEETREG_HUB_TOKEN` when it is set and not
    /// empty (the only way besides `token_file`; never a flag or the file).
    pub fn token_from_env(&mut self) {
        let name = crate::credentials::HUB_TOKEN_ENV;
        if let Some(token) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
            self.token = Some(token);
        }
    }
}

impl std::fmt::Debug for KubernetesBackendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesBackendConfig")
            .field("api_url", &self.api_url)
            .field("token_file", &self.token_file)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_cert_file", &self.ca_cert_file)
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .finish()
    }
}

/// `credentials.auto_rotation:` (fleetreg's own; seed 13.3).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AutoRotationConfig {
    /// Whether service account tokens are rotated automatically.
    pub enabled: bool,
    /// Seconds between rounds looking for credentials to rotate.
    pub check_interval_seconds: u64,
    /// Lifetime asked of the TokenRequest API for a new token, in hours; must
    /// exceed `rotation_warning_days`.
    pub token_ttl_hours: u64,
    /// Longest wait before retrying after failures (the wait starts at 60 s
    /// and doubles per failure).
    pub max_backoff_seconds: u64,
}

impl Default for AutoRotationConfig {
    fn default() -> Self {
        AutoRotationConfig {
            enabled: true,
            check_interval_seconds: 300,
            token_ttl_hours: 720,
            max_backoff_seconds: 3600,
        }
    }
}

impl AutoRotationConfig {
    /// The worker's settings (intervals at least one second, TTL at least an hour).
    pub fn settings(&self) -> crate::credentials::auto_rotate::AutoRotationSettings {
        crate::credentials::auto_rotate::AutoRotationSettings {
            enabled: self.enabled,
            check_interval: Duration::from_secs(self.check_interval_seconds.max(1)),
            token_ttl: Duration::from_secs(self.token_ttl_hours.max(1).saturating_mul(3600)),
            max_backoff: Duration::from_secs(self.max_backoff_seconds.max(1)),
        }
    }
}

impl std::fmt::Debug for CredentialsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsConfig")
            .field("secret_namespace", &self.secret_namespace)
            .field("rotation_warning_days", &self.rotation_warning_days)
            .field("master_key_file", &self.master_key_file)
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| "<redacted>"),
            )
            .field("auto_rotation", &self.auto_rotation)
            .field("backend", &self.backend)
            .field("kubernetes", &self.kubernetes)
            .field("allow_plain_http", &self.allow_plain_http)
            .finish()
    }
}

impl Default for CredentialsConfig {
    fn default() -> Self {
        CredentialsConfig {
            secret_namespace: "aiops-nextgen".into(),
            rotation_warning_days: 7,
            master_key_file: "fleetreg-master.key".into(),
            master_key: None,
            auto_rotation: AutoRotationConfig::default(),
            backend: CredentialsBackendKind::Database,
            kubernetes: KubernetesBackendConfig::default(),
            allow_plain_http: false,
        }
    }
}

/// `events:` (fleetreg's own).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct EventsConfig {
    retention_hours: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            retention_hours: 168,
        }
    }
}

/// `history:` (fleetreg's own).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct HistoryConfig {
    retention_days: u64,
    sample_minutes: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            retention_days: 7,
            sample_minutes: 5,
        }
    }
}

/// Reading the configuration file failed.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid, e.g. has an unknown key.
    #[error("invalid config file {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the key's location.
        message: String,
    },
}

impl Settings {
    /// Settings from a YAML file in the seed's format; unknown keys are rejected.
    pub fn from_file(path: &Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Settings::from_yaml(&text).map_err(|message| SettingsError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Settings from YAML text.
    pub fn from_yaml(text: &str) -> Result<Settings, String> {
        let file: ConfigFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let c = file.cluster_registry;
        fleetreg_probe::EgressPolicy::parse(&c.health_check.allowed_networks)
            .map_err(|e| e.to_string())?;
        if c.health_check.max_response_bytes < MIN_RESPONSE_BYTES {
            return Err(format!(
                "health_check.max_response_bytes ({}) must be at least {MIN_RESPONSE_BYTES}",
                c.health_check.max_response_bytes
            ));
        }
        let rotation = &c.credentials.auto_rotation;
        if rotation.enabled
            && rotation.token_ttl_hours <= c.credentials.rotation_warning_days.saturating_mul(24)
        {
            return Err(format!(
                "credentials.auto_rotation.token_ttl_hours ({}) must be longer than \
                 credentials.rotation_warning_days ({} days), or every round would rotate again",
                rotation.token_ttl_hours, c.credentials.rotation_warning_days
            ));
        }
        c.client_health.validate()?;
        c.edge.validate()?;
        let defaults = Settings::default();
        Ok(Settings {
            listen: c.listen.unwrap_or(defaults.listen),
            database_url: c.database_url.unwrap_or(defaults.database_url),
            redis_url: c.redis_url,
            events_retention: Duration::from_secs(c.events.retention_hours * 3600),
            history_retention: Duration::from_secs(
                c.history.retention_days.saturating_mul(24 * 3600),
            ),
            history_sample: Duration::from_secs(c.history.sample_minutes.saturating_mul(60)),
            health_check: c.health_check,
            discovery: c.discovery,
            credentials: c.credentials,
            auth: c.auth,
            audit: c.audit,
            client_health: c.client_health,
            http: c.http,
            sync: c.sync,
            edge: c.edge,
            ..defaults
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_seed_block() {
        let s = Settings::from_yaml(
            r#"
cluster_registry:
  database_url: "postgresql://user:pass@postgres:5432/aiops"
  redis_url: "redis://redis:6379/0"
  health_check:
    enabled: true
    hub_interval_seconds: 15
    spoke_interval_seconds: 30
    edge_interval_seconds: 60
    far_edge_interval_seconds: 120
    timeout_seconds: 10
  discovery:
    on_registration: true
    periodic_refresh_hours: 24
  credentials:
    secret_namespace: "aiops-nextgen"
    rotation_warning_days: 7
"#,
        )
        .unwrap();
        assert_eq!(s.redis_url.as_deref(), Some("redis://redis:6379/0"));
        assert_eq!(s.health_check.timeout_seconds, Some(10));
    }

    #[test]
    fn reads_and_validates_allowed_networks() {
        let s = Settings::from_yaml(
            "cluster_registry:\n  health_check:\n    allowed_networks: [\"10.0.0.0/8\", \"fd00::/8\", \"192.0.2.7\", \"*.example.com\"]\n",
        )
        .unwrap();
        assert_eq!(
            s.health_check.allowed_networks,
            ["10.0.0.0/8", "fd00::/8", "192.0.2.7", "*.example.com"]
        );
        assert!(Settings::from_yaml("cluster_registry: {}\n")
            .unwrap()
            .health_check
            .allowed_networks
            .is_empty());
        let err = Settings::from_yaml(
            "cluster_registry:\n  health_check:\n    allowed_networks: [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n",
        )
        .unwrap_err();
        assert!(err.contains("health_check.allowed_networks"), "{err}");
        assert!(err.contains("\"10.0.0.0/33\""), "{err}");
    }

    #[test]
    fn reads_max_response_bytes() {
        let default = Settings::from_yaml("cluster_registry: {}\n").unwrap();
        assert_eq!(default.health_check.max_response_bytes, 4 * 1024 * 1024);
        let set = Settings::from_yaml(
            "cluster_registry:\n  health_check:\n    max_response_bytes: 1048576\n",
        )
        .unwrap();
        assert_eq!(set.health_check.max_response_bytes, 1024 * 1024);
        let error =
            Settings::from_yaml("cluster_registry:\n  health_check:\n    max_response_bytes: 0\n")
                .unwrap_err();
        assert!(error.contains("health_check.max_response_bytes"), "{error}");
    }

    #[test]
    fn audit_head_file_defaults_next_to_the_key_file() {
        let mut s = Settings::from_yaml("cluster_registry: {}\n").unwrap();
        assert_eq!(s.audit_head_file(), Path::new("fleetreg-audit.head"));
        s.credentials.master_key_file = "/etc/fleetreg/master.key".into();
        assert_eq!(
            s.audit_head_file(),
            Path::new("/etc/fleetreg/fleetreg-audit.head")
        );
        let s = Settings::from_yaml("cluster_registry:\n  audit:\n    head_file: /var/lib/h\n")
            .unwrap();
        assert_eq!(s.audit_head_file(), Path::new("/var/lib/h"));
        assert!(Settings::from_yaml("cluster_registry:\n  audit:\n    head: x\n").is_err());
    }

    #[test]
    fn reads_auto_rotation() {
        let s = Settings::from_yaml("cluster_registry: {}\n").unwrap();
        assert_eq!(s.credentials.auto_rotation, AutoRotationConfig::default());
        assert!(s.credentials.auto_rotation.enabled);
        let s = Settings::from_yaml(
            "cluster_registry:\n  credentials:\n    auto_rotation:\n      enabled: false\n      check_interval_seconds: 60\n      token_ttl_hours: 48\n      max_backoff_seconds: 600\n",
        )
        .unwrap();
        let r = s.credentials.auto_rotation.settings();
        assert!(!r.enabled);
        assert_eq!(r.check_interval, Duration::from_secs(60));
        assert_eq!(r.token_ttl, Duration::from_secs(48 * 3600));
        assert_eq!(r.max_backoff, Duration::from_secs(600));
        let err = Settings::from_yaml(
            "cluster_registry:\n  credentials:\n    auto_rotation:\n      token_ttl_hours: 100\n",
        )
        .unwrap_err();
        assert!(err.contains("token_ttl_hours"), "{err}");
        assert!(Settings::from_yaml(
            "cluster_registry:\n  credentials:\n    auto_rotation:\n      every: 1\n"
        )
        .is_err());
    }

    #[test]
    fn reads_the_kubernetes_backend() {
        let s = Settings::from_yaml("cluster_registry: {}\n").unwrap();
        assert_eq!(s.credentials.backend, CredentialsBackendKind::Database);
        let s = Settings::from_yaml(
            "cluster_registry:\n  credentials:\n    backend: kubernetes\n    kubernetes:\n      api_url: https://hub:6443\n      token_file: /run/token\n      insecure_skip_tls_verify: true\n",
        )
        .unwrap();
        assert_eq!(s.credentials.backend, CredentialsBackendKind::Kubernetes);
        let k = &s.credentials.kubernetes;
        assert_eq!(k.api_url.as_deref(), Some("https://hub:6443"));
        assert!(k.insecure_skip_tls_verify);
        assert!(
            Settings::from_yaml("cluster_registry:\n  credentials:\n    backend: vault\n").is_err()
        );
        assert!(Settings::from_yaml(
            "cluster_registry:\n  credentials:\n    kubernetes:\n      token: x\n"
        )
        .is_err());
    }

    #[test]
    fn reads_http_limits() {
        let s = Settings::from_yaml("cluster_registry: {}\n").unwrap();
        assert_eq!(s.http, HttpConfig::default());
        let limits = s.http.connection_limits();
        assert_eq!(limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(limits.idle_timeout, Duration::from_secs(60));
        assert!(limits.max_connections >= 64, "{limits:?}");
        let s = Settings::from_yaml(
            "cluster_registry:\n  http:\n    header_read_timeout_seconds: 2\n    idle_timeout_seconds: 0\n    max_connections: 500\n",
        )
        .unwrap();
        let limits = s.http.connection_limits();
        assert_eq!(limits.header_read_timeout, Duration::from_secs(2));
        assert_eq!(limits.idle_timeout, Duration::from_secs(1));
        assert_eq!(limits.max_connections, 500);
        assert!(Settings::from_yaml("cluster_registry:\n  http:\n    timeout: 1\n").is_err());
    }

    #[test]
    fn reads_client_health() {
        let s = Settings::from_yaml("cluster_registry: {}\n").unwrap();
        assert_eq!(s.client_health, ClientHealthConfig::default());
        assert_eq!(s.client_health.interval(), Some(Duration::from_secs(60)));
        assert_eq!(s.client_health.timeout(), Duration::from_secs(5));
        let s = Settings::from_yaml(
            "cluster_registry:\n  client_health:\n    interval_seconds: 0\n    timeout_seconds: 2\n    ca_file: /etc/ca.pem\n",
        )
        .unwrap();
        assert_eq!(s.client_health.interval(), None);
        assert_eq!(s.client_health.timeout(), Duration::from_secs(2));
        assert_eq!(
            s.client_health.ca_file.as_deref(),
            Some(Path::new("/etc/ca.pem"))
        );
        for bad in ["timeout_seconds: 0", "timeout_seconds: 21", "every: 5"] {
            let yaml = format!("cluster_registry:\n  client_health:\n    {bad}\n");
            assert!(Settings::from_yaml(&yaml).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_the_edge_http_check() {
        let s = Settings::from_yaml("cluster_registry: {}\n").unwrap();
        assert_eq!(s.edge.http_check, HttpCheckConfig::default());
        assert!(s.edge.http_check.enabled);
        assert_eq!(s.edge.http_check.interval(), Duration::from_secs(10));
        assert_eq!(s.edge.http_check.timeout(), Duration::from_millis(2000));
        let s = Settings::from_yaml(
            "cluster_registry:\n  edge:\n    http_check:\n      interval_seconds: 1\n      \
             timeout_ms: 500\n      failures: 2\n      port: 8080\n      path: /healthz?x=1\n      \
             scheme: https\n      address: overlay\n      ca_file: /etc/fleetreg/edge-ca.pem\n",
        )
        .unwrap();
        let check = &s.edge.http_check;
        assert_eq!(
            check.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/fleetreg/edge-ca.pem"))
        );
        assert_eq!(
            (check.failures, check.port, check.path.as_str()),
            (2, 8080, "/healthz?x=1")
        );
        assert_eq!(
            (check.scheme, check.address),
            (CheckScheme::Https, CheckAddress::Overlay)
        );
        for (bad, named) in [
            ("interval_seconds: 0", "interval_seconds"),
            ("timeout_ms: 50", "timeout_ms"),
            ("timeout_ms: 10000", "timeout_ms"),
            ("failures: 0", "failures"),
            ("port: 0", "port"),
            ("port: 70000", "port"),
            ("path: healthz", "path"),
            ("path: '/a b'", "path"),
            ("scheme: ftp", "scheme"),
            ("address: private", "address"),
            ("every: 5", "every"),
        ] {
            let yaml = format!("cluster_registry:\n  edge:\n    http_check:\n      {bad}\n");
            let err = Settings::from_yaml(&yaml).unwrap_err();
            assert!(err.contains(named), "{bad}: {err}");
        }
    }

    #[test]
    fn rejects_unknown_keys() {
        let err = Settings::from_yaml("cluster_registry:\n  health_check:\n    intervall: 5\n")
            .unwrap_err();
        assert!(err.contains("intervall"), "{err}");
        let err = Settings::from_yaml("cluster_registry: {}\nother: 1\n").unwrap_err();
        assert!(err.contains("other"), "{err}");
    }
}
