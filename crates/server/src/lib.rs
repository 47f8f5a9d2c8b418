//! The fleetreg HTTP API server: routes, error envelope, event hub and stream,
//! Redis outbox publisher, retention worker, metrics and OpenAPI document.
//!
//! Invariant: business rules live in `fleetreg-model` and persistence in
//! `fleetreg-store`; this crate translates between HTTP and those, and owns
//! the background workers.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod retention;
pub mod settings;
pub mod state;

use crate::error::{ApiError, InternalCause};
use crate::events::EventHub;
use crate::health::{HealthContext, HealthScheduler};
use crate::retention::Retention;
use crate::settings::Settings;
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, StatusCode};
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
use tower_http::timeout::TimeoutLayer;
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
    /// The prober's HTTP clients could not be set up.
    #[error("cannot set up health checks: {0}")]
    Probe(#[from] fleetreg_probe::Error),
}

/// A built server: store opened, workers started, listener bound.
pub struct Application {
    listener: TcpListener,
    router: Router,
    store: Arc<dyn Store>,
    retention: Retention,
    health_scheduler: Option<HealthScheduler>,
    shutdown: CancellationToken,
    workers: Vec<JoinHandle<()>>,
}

impl Application {
    /// Opens the store, starts the workers and binds the listener.
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        let metrics = metrics::install();
        let store = fleetreg_store::connect(&settings.database_url).await?;
        tracing::info!(
            backend = store.backend().as_str(),
            durability = store.durability(),
            database = %fleetreg_store::redact_url(&settings.database_url),
            "store opened; writes are acknowledged after a durable commit"
        );
        ::metrics::gauge!(metrics::STORE_INFO, "backend" => store.backend().as_str(), "durability" => store.durability().to_owned()).set(1.0);
        let shutdown = CancellationToken::new();
        let mut workers = Vec::new();
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
        let health = HealthContext {
            prober: fleetreg_probe::Prober::new()?,
            config: settings.health_check.clone(),
            discovery: settings.discovery.clone(),
        };
        let health_scheduler = if settings.health_check.enabled {
            let scheduler = HealthScheduler::new(store.clone(), health.clone());
            workers.push(tokio::spawn(scheduler.clone().run(shutdown.clone())));
            tracing::info!("health scheduler started");
            Some(scheduler)
        } else {
            tracing::info!("health checks disabled");
            None
        };
        let state = AppState {
            store: store.clone(),
            hub,
            metrics,
            shutdown: shutdown.clone(),
            health,
        };
        let router = router(state, &settings);
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        Ok(Application {
            listener,
            router,
            store,
            retention,
            health_scheduler,
            shutdown,
            workers,
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

    /// The retention worker, for tests that drive it.
    pub fn retention(&self) -> Retention {
        self.retention.clone()
    }

    /// The health scheduler (when `health_check.enabled`), for tests that drive
    /// it with `tick_at`.
    pub fn health_scheduler(&self) -> Option<HealthScheduler> {
        self.health_scheduler.clone()
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
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let result = axum::serve(self.listener, service)
            .with_graceful_shutdown(graceful)
            .await;
        self.shutdown.cancel();
        for worker in self.workers {
            let _ = worker.await;
        }
        self.store.close().await;
        tracing::info!("stopped");
        result
    }
}

fn router(state: AppState, settings: &Settings) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
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
    api::router()
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
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            settings.request_timeout,
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(trace)
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// Logs the hidden cause of every 5xx inside the request's span.
async fn log_internal_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(InternalCause(cause)) = response.extensions().get::<InternalCause>() {
        tracing::error!(%cause, status = response.status().as_u16(), "request failed");
    }
    response
}
