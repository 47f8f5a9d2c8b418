//! The fleetreg HTTP API server: routes, error envelope, event hub and stream,
//! Redis outbox publisher, retention worker, metrics and OpenAPI document.
//!
//! Invariant: business rules live in `fleetreg-model` and persistence in
//! `fleetreg-store`; this crate translates between HTTP and those, and owns
//! the background workers.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod audit;
pub mod auth;
pub mod ca_file;
pub mod client_health;
pub mod coalesce;
pub mod credentials;
pub mod edge_sync;
pub mod error;
pub mod events;
pub mod extract;
pub mod front;
pub mod health;
pub mod memory;
pub mod metrics;
pub mod openapi;
pub mod orphans;
pub mod outbox;
pub mod query;
pub mod retention;
pub mod rollouts;
pub mod serve;
pub mod service_discovery;
pub mod settings;
pub mod state;
pub mod tls;

use crate::error::{ApiError, InternalCause};
use crate::events::EventHub;
use crate::health::{ClusterLocks, HealthContext, HealthScheduler};
use crate::retention::Retention;
use crate::settings::Settings;
use crate::state::AppState;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use fleetreg_model::ErrorCode;
use fleetreg_store::{Store, StoreError};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use settings::{Settings as ServerSettings, SettingsError};

/// Starting the server failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened or migrated.
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The Redis URL is invalid.
    #[error("invalid redis URL: {0}")]
    Redis(#[from] outbox::OutboxError),
    /// The master key is missing, unreadable or not the one the stored
    /// credentials were sealed with.
    #[error("cannot open the credential vault: {0}")]
    Vault(#[from] credentials::KeyError),
    /// `credentials.backend: kubernetes` without a usable hub (no `api_url`,
    /// no token, or the hub unreachable or refusing the token).
    #[error("credentials backend: {0}")]
    CredentialsBackend(#[from] credentials::SecretsError),
    /// The TLS certificate or key is unusable.
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// A non-loopback address without TLS (tokens would cross the network in
    /// the clear) and without `--allow-insecure-listen`.
    #[error(
        "refusing to listen on {0} without TLS: give --tls-cert and --tls-key, or \
         --allow-insecure-listen behind a TLS-terminating proxy"
    )]
    InsecureListen(SocketAddr),
    /// The bootstrap admin token could not be set up.
    #[error("cannot set up the admin token: {0}")]
    Auth(#[from] auth::BootstrapError),
    /// The prober's HTTP clients could not be set up.
    #[error("cannot set up health checks: {0}")]
    Probe(#[from] fleetreg_probe::Error),
    /// The audit log no longer reaches its head file (or the file is unreadable).
    #[error("audit log: {0}")]
    Audit(#[from] audit::AuditError),
    /// An outgoing check's CA bundle could not be used
    /// (`client_health.ca_file`, `edge.http_check.ca_file`).
    #[error("cannot set up outgoing checks: {0}")]
    CaFile(#[from] ca_file::CaFileError),
}

/// A built server: store opened, workers started, listener bound.
pub struct Application {
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    connections: serve::ConnectionLimits,
    router: Router,
    store: Arc<dyn Store>,
    retention: Retention,
    health_scheduler: Option<HealthScheduler>,
    client_health: Option<client_health::ClientHealthMonitor>,
    credential_rotation: Option<credentials::auto_rotate::AutoRotation>,
    shutdown: CancellationToken,
    workers: Vec<JoinHandle<()>>,
    /// Checks requests started and did not wait for.
    background: health::Background,
    audit_head: audit::HeadWriter,
}

impl Application {
    /// Checks the configuration and binds the listener, then opens the store
    /// and starts the workers. Nothing is created or written (database, key
    /// file, token file, audit head) before the whole configuration checks out
    /// and the port is bound; a token file of another database is never replaced.
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        // Configuration first: the listen policy, TLS files, admin token,
        // egress policy and credentials backend settings, then the port.
        let tls = match &settings.tls {
            Some(files) => Some(tls::server_config(files)?),
            None if !settings.listen.ip().is_loopback() && !settings.allow_insecure_listen => {
                return Err(StartError::InsecureListen(settings.listen));
            }
            None => None,
        };
        auth::check_preset(settings.auth.admin_token.as_deref())?;
        let prober = fleetreg_probe::Prober::new(
            fleetreg_probe::EgressPolicy::parse(&settings.health_check.allowed_networks)
                .map_err(fleetreg_probe::Error::from)?,
        )?
        .with_plain_http_tokens(settings.credentials.allow_plain_http)
        .with_max_response_bytes(settings.health_check.max_response_bytes);
        // The same egress policy binds the client URL checks.
        let client_checker = client_health::ClientHealthChecker::new(
            &settings.client_health,
            fleetreg_probe::EgressPolicy::parse(&settings.health_check.allowed_networks)
                .map_err(fleetreg_probe::Error::from)?,
            settings.clock.clone(),
        )?;
        // Node addresses are IP literals an operator registered, so the edge
        // check takes the default policy (never link-local or cloud metadata
        // addresses; loopback and private ranges allowed), not
        // `health_check.allowed_networks`, which is about clusters.
        let node_checker = ca_file::with_ca_file(
            "edge.http_check.ca_file",
            settings.edge.http_check.ca_file.as_deref(),
            |pem| fleetreg_probe::NodeChecker::new(fleetreg_probe::EgressPolicy::default(), pem),
        )?;
        let hub = credentials::hub_config(&settings.credentials)?;
        // The port too: a server that cannot listen writes nothing.
        let listener = serve::bind(settings.listen).map_err(|source| StartError::Bind {
            addr: settings.listen,
            source,
        })?;
        let metrics = metrics::install();
        // The keyring next (it may create the key file): the store seals audit
        // entries, and tokens are stored, with keys derived from it.
        let keyring = credentials::load_keyring(
            settings.credentials.master_key.as_deref(),
            &settings.credentials.master_key_file,
        )?;
        let tokens = auth::TokenHasher::new(&keyring);
        // The hub of the Kubernetes Secrets backend must answer before anything starts.
        let secrets = match hub {
            Some(hub) => Some(credentials::SecretsBackend::connect(&hub).await?),
            None => None,
        };
        let store = fleetreg_store::connect_with(
            &settings.database_url,
            fleetreg_store::StoreOptions {
                history_sample: settings.history_sample,
                audit_keys: Some(Arc::new(audit::audit_keys(&keyring))),
                clock: settings.clock.clone(),
            },
        )
        .await?;
        let head_file = audit::HeadFile::new(settings.audit_head_file())
            .for_database(store.database_id().await?);
        audit::check_head(store.as_ref(), &head_file).await?;
        // A token file of another database is refused before the token file or
        // any audit entry is written (the database itself exists by now).
        if let Err(error) = auth::check_token_file(
            store.as_ref(),
            &tokens,
            settings.auth.admin_token.as_deref(),
            &settings.auth.admin_token_file,
        )
        .await
        {
            store.close().await;
            return Err(error.into());
        }
        tracing::info!(
            backend = store.backend().as_str(),
            durability = store.durability(),
            database = %fleetreg_store::redact_url(&settings.database_url),
            "store opened; writes are acknowledged after a durable commit"
        );
        ::metrics::gauge!(metrics::STORE_INFO, "backend" => store.backend().as_str(), "durability" => store.durability().to_owned()).set(1.0);
        // Before any write, so that the head writer sees them.
        let audit_head = audit::HeadWriter::new(head_file, store.as_ref());
        // The master key must open the stored data before anything is written
        // under it (a token stored under a key that is then refused would
        // outlive the refusal).
        let opened = match credentials::Credentials::open(store.clone(), keyring).await {
            Ok(opened) => opened,
            Err(error) => {
                store.close().await;
                return Err(error.into());
            }
        };
        // Tokens before any worker starts: a refusal leaves nothing running.
        let admin = async {
            auth::rekey_stored_tokens(store.as_ref(), &tokens).await?;
            auth::ensure_admin_token(
                store.as_ref(),
                &tokens,
                settings.auth.admin_token.as_deref(),
                &settings.auth.admin_token_file,
            )
            .await
        };
        if let Err(error) = admin.await {
            store.close().await;
            audit_head.flush().await;
            return Err(error.into());
        }
        let shutdown = CancellationToken::new();
        let mut workers = Vec::new();
        workers.push(tokio::spawn(audit_head.clone().run(shutdown.clone())));
        let (hub, hub_task) = EventHub::start(store.clone(), shutdown.clone()).await?;
        workers.push(hub_task);
        if let Some(redis_url) = &settings.redis_url {
            let outbox = outbox::Outbox::new(store.clone(), redis_url)?;
            workers.push(tokio::spawn(outbox.run(shutdown.clone())));
            tracing::info!(channel = outbox::CHANNEL, "publishing events to Redis");
        }
        let retention = Retention::new(
            store.clone(),
            settings.events_retention,
            settings.redis_url.is_some(),
        )
        .with_history_retention(settings.history_retention);
        workers.push(tokio::spawn(
            retention
                .clone()
                .run(settings.retention_interval, shutdown.clone()),
        ));
        let driver = rollouts::RolloutDriver::new(store.clone());
        workers.push(tokio::spawn(driver.run(
            std::time::Duration::from_secs(settings.sync.rollout_check_seconds.max(1)),
            shutdown.clone(),
        )));
        let signals = edge_sync::NodeSignals::start(&hub, shutdown.clone());
        let edge = edge_sync::ControllerHandle::new(std::time::Duration::from_secs(
            settings.edge.reconcile_seconds,
        ));
        let controller = edge_sync::Controller::new(
            store.clone(),
            settings.edge.clone(),
            format!("replica-{}", uuid::Uuid::now_v7()),
            &edge,
        );
        workers.push(tokio::spawn(controller.run(shutdown.clone())));
        // Also with the check off: it then clears what an earlier run marked.
        let http_check = edge_sync::HttpCheck::new(
            store.clone(),
            settings.edge.http_check.clone(),
            node_checker,
        );
        workers.push(tokio::spawn(
            http_check.run(edge.leadership(), shutdown.clone()),
        ));
        let orphans = orphans::OrphanWatch::new(store.clone(), &settings.sync);
        workers.push(tokio::spawn(orphans.run(
            std::time::Duration::from_secs(settings.sync.orphan_check_seconds.max(1)),
            shutdown.clone(),
        )));
        let mut credentials = opened
            .with_rotation_warning_days(settings.credentials.rotation_warning_days)
            .with_secrets(secrets)
            .with_auto_rotation(settings.credentials.auto_rotation.enabled);
        if settings.credentials.master_key.is_none() {
            // Picks up `fleetreg vault rotate-master-key` while running.
            credentials = credentials.with_key_file(settings.credentials.master_key_file.clone());
        }
        let health = HealthContext {
            prober,
            config: settings.health_check.clone(),
            discovery: settings.discovery.clone(),
            locks: ClusterLocks::default(),
            credentials,
            background: health::Background::default(),
        };
        let background = health.background.clone();
        if settings.edge.service_sync_seconds > 0 {
            let services = service_discovery::ServiceSync::new(store.clone(), health.clone());
            workers.push(tokio::spawn(services.run(
                std::time::Duration::from_secs(settings.edge.service_sync_seconds),
                shutdown.clone(),
            )));
        }
        let health_scheduler = if settings.health_check.enabled {
            let scheduler = HealthScheduler::new(store.clone(), health.clone(), hub.clone());
            workers.push(tokio::spawn(scheduler.clone().run(shutdown.clone())));
            tracing::info!("health scheduler started");
            Some(scheduler)
        } else {
            tracing::info!("health checks disabled");
            None
        };
        let client_health = settings.client_health.interval().map(|interval| {
            let monitor = client_health::ClientHealthMonitor::new(
                store.clone(),
                client_checker.clone(),
                interval,
            );
            workers.push(tokio::spawn(monitor.clone().run(shutdown.clone())));
            tracing::info!(
                interval_seconds = interval.as_secs(),
                "client health checks started"
            );
            monitor
        });
        let credential_rotation = if settings.credentials.auto_rotation.enabled {
            let rotation = credentials::auto_rotate::AutoRotation::new(
                store.clone(),
                health.clone(),
                settings.credentials.auto_rotation.settings(),
            );
            workers.push(tokio::spawn(rotation.clone().run(shutdown.clone())));
            tracing::info!("automatic credential rotation started");
            Some(rotation)
        } else {
            tracing::info!("automatic credential rotation disabled");
            None
        };
        let state = AppState::new(state::Shared {
            auth: auth::AuthState::new(store.clone(), tokens, settings.auth.metrics_open),
            store: store.clone(),
            hub,
            metrics,
            shutdown: shutdown.clone(),
            health,
            client_health: client_checker,
            fleet: api::fleet::SharedAggregates::default(),
            clock: store.clock().clone(),
            signals,
            config_reads: edge_sync::ConfigReads::new(store.clone()),
            edge,
        });
        let router = router(state, &settings);
        Ok(Application {
            listener,
            tls,
            connections: settings.http.connection_limits(),
            router,
            store,
            retention,
            health_scheduler,
            client_health,
            credential_rotation,
            shutdown,
            workers,
            background,
            audit_head,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The store, for tests that write observations directly.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The clock the store and the server read the time from (the settings'
    /// `clock`), for tests that set it.
    pub fn clock(&self) -> fleetreg_model::Clock {
        self.store.clock().clone()
    }

    /// The retention worker, for tests that drive it.
    pub fn retention(&self) -> Retention {
        self.retention.clone()
    }

    /// The health scheduler (when `health_check.enabled`), for tests that drive
    /// it with `tick_at`.
    pub fn health_scheduler(&self) -> Option<HealthScheduler> {
        self.health_scheduler.clone()
    }

    /// The periodic client health checks (when
    /// `client_health.interval_seconds` is not 0), for tests that drive them
    /// with `tick_at`.
    pub fn client_health_monitor(&self) -> Option<client_health::ClientHealthMonitor> {
        self.client_health.clone()
    }

    /// The automatic credential rotation worker (when
    /// `credentials.auto_rotation.enabled`), for tests that drive it with `tick_at`.
    pub fn credential_rotation(&self) -> Option<credentials::auto_rotate::AutoRotation> {
        self.credential_rotation.clone()
    }

    /// Serves until `signal` completes, then drains requests, ends streams,
    /// stops the workers and closes the store.
    pub async fn run_until_stopped(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let shutdown = self.shutdown.clone();
        let graceful = async move {
            signal.await;
            tracing::info!("shutting down: draining requests");
            shutdown.cancel();
        };
        let result = serve::serve(
            self.listener,
            self.router,
            self.tls,
            self.connections,
            graceful,
        )
        .await;
        self.shutdown.cancel();
        self.background.stop().await;
        for worker in self.workers {
            let _ = worker.await;
        }
        self.store.close().await;
        // The store's last head, in case a worker wrote after the head writer stopped.
        self.audit_head.flush().await;
        tracing::info!("stopped");
        result
    }
}

fn router(state: AppState, settings: &Settings) -> Router {
    let request_id = front::REQUEST_ID;
    let trace = TraceLayer::new_for_http().make_span_with(|request: &Request| {
        let request_id = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let route = request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map_or(request.uri().path(), |p| p.as_str());
        tracing::info_span!("request", %request_id, method = %request.method(), route)
    });
    let authorize = middleware::from_fn_with_state(state.auth.clone(), auth::authorize);
    let declared = std::sync::Arc::new(query::DeclaredParameters::from_openapi(
        &<openapi::ApiDoc as utoipa::OpenApi>::openapi(),
    ));
    let query_rule = middleware::from_fn_with_state(declared, query::enforce);
    api::router()
        .route_layer(query_rule)
        .route_layer(authorize)
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this endpoint",
            )
        })
        .with_state(state)
        .layer(middleware::from_fn(metrics::track))
        .layer(middleware::from_fn(log_internal_errors))
        .layer(middleware::from_fn_with_state(
            settings.request_timeout,
            front::time_limit,
        ))
        .layer(middleware::from_fn(front::limit_uri))
        .layer(middleware::from_fn(front::limit_head))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(trace)
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(middleware::from_fn(front::sanitize_request_id))
        .layer(middleware::from_fn(front::unindexed_headers))
}

/// Logs the hidden cause of every 5xx inside the request's span.
async fn log_internal_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(InternalCause(cause)) = response.extensions().get::<InternalCause>() {
        tracing::error!(%cause, status = response.status().as_u16(), "request failed");
    }
    response
}
