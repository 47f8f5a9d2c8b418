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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://fleetreg.db".into(),
            redis_url: None,
            events_retention: Duration::from_secs(7 * 24 * 3600),
            history_retention: Duration::from_secs(7 * 24 * 3600),
            retention_interval: Duration::from_secs(300),
            health_check: HealthCheckConfig::default(),
            discovery: DiscoveryConfig::default(),
            credentials: CredentialsConfig::default(),
            request_timeout: Duration::from_secs(30),
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
}

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
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialsConfig {
    /// Namespace of the Kubernetes Secrets backend.
    pub secret_namespace: String,
    /// Warn this many days before credentials expire.
    pub rotation_warning_days: u64,
}

impl Default for CredentialsConfig {
    fn default() -> Self {
        CredentialsConfig {
            secret_namespace: "aiops-nextgen".into(),
            rotation_warning_days: 7,
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
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig { retention_days: 7 }
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
        let defaults = Settings::default();
        Ok(Settings {
            listen: c.listen.unwrap_or(defaults.listen),
            database_url: c.database_url.unwrap_or(defaults.database_url),
            redis_url: c.redis_url,
            events_retention: Duration::from_secs(c.events.retention_hours * 3600),
            history_retention: Duration::from_secs(
                c.history.retention_days.saturating_mul(24 * 3600),
            ),
            health_check: c.health_check,
            discovery: c.discovery,
            credentials: c.credentials,
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
    fn rejects_unknown_keys() {
        let err = Settings::from_yaml("cluster_registry:\n  health_check:\n    intervall: 5\n")
            .unwrap_err();
        assert!(err.contains("intervall"), "{err}");
        let err = Settings::from_yaml("cluster_registry: {}\nother: 1\n").unwrap_err();
        assert!(err.contains("other"), "{err}");
    }
}
