//! Every `fleetreg_*` metric, recorded through the `metrics` facade and
//! rendered in Prometheus text format at `/metrics`.

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Instant;

/// HTTP requests by method, route template and status. Every label value
/// comes from a closed set: [`method_label`], a route template of the router
/// or `unmatched`, a status code.
pub const HTTP_REQUESTS: &str = "fleetreg_http_requests_total";
/// HTTP latency histogram by method, route template and status (labels as
/// [`HTTP_REQUESTS`]).
pub const HTTP_DURATION: &str = "fleetreg_http_request_duration_seconds";
/// Gauge: open client connections.
pub const HTTP_CONNECTIONS: &str = "fleetreg_http_connections";
/// Counter: client connections the server closed, by `reason`
/// (`header_timeout`, `idle_timeout`, `write_stalled`, `shed`, `refused`,
/// `tls_handshake_timeout`).
pub const HTTP_CONNECTIONS_CLOSED: &str = "fleetreg_http_connections_closed_total";
/// Constant 1, labelled with the store's backend and durability mode.
pub const STORE_INFO: &str = "fleetreg_store_info";
/// Latest change-log revision seen by the event hub.
pub const EVENTS_REVISION: &str = "fleetreg_events_latest_revision";
/// Connected event-stream subscribers.
pub const EVENT_SUBSCRIBERS: &str = "fleetreg_event_stream_subscribers";
/// Events published to Redis.
pub const REDIS_PUBLISHED: &str = "fleetreg_redis_events_published_total";
/// Failed attempts to publish to Redis.
pub const REDIS_FAILURES: &str = "fleetreg_redis_publish_failures_total";
/// Events waiting in the outbox for Redis.
pub const REDIS_BACKLOG: &str = "fleetreg_redis_outbox_backlog";
/// Events removed by retention.
pub const EVENTS_PRUNED: &str = "fleetreg_events_pruned_total";
/// Health checks by result (the state they produced: ONLINE, DEGRADED, OFFLINE).
pub const HEALTH_CHECKS: &str = "fleetreg_health_checks_total";
/// Health check duration histogram (the whole check, all calls).
pub const HEALTH_CHECK_DURATION: &str = "fleetreg_health_check_duration_seconds";
/// Time from a check's due time to its start.
pub const HEALTH_SCHEDULER_LAG: &str = "fleetreg_health_scheduler_lag_seconds";
/// Check intervals missed, as a gap between two checks of a cluster longer
/// than 1.5 intervals counts `round(gap / interval) - 1`: a start half an
/// interval late or more counts one, and every further due time that passed
/// while the check waited or ran counts one more.
pub const HEALTH_MISSED_INTERVALS: &str = "fleetreg_health_missed_intervals_total";
/// Scheduled clusters by their last observed state.
pub const CLUSTERS_BY_STATE: &str = "fleetreg_clusters_by_state";
/// Counter: periodic rediscoveries by the scheduler, by `result` (`ok`, `failed`).
pub const DISCOVERIES: &str = "fleetreg_discoveries_total";
/// Gauge: clusters whose credentials expire within
/// `credentials.rotation_warning_days` and have not expired (computed at scrape).
pub const CREDENTIALS_EXPIRING: &str = "fleetreg_credentials_expiring";
/// Gauge: clusters whose credentials have expired (computed at scrape).
pub const CREDENTIALS_EXPIRED: &str = "fleetreg_credentials_expired";

/// Counter: automatic credential rotations by `result` (`success`, `failure`,
/// `superseded`: another write came first).
pub const CREDENTIAL_ROTATIONS: &str = "fleetreg_credentials_rotations_total";

/// Gauge: deployed clients by the live health state the periodic checks last
/// recorded (`state`: HEALTHY, DEGRADED, DOWN, NOT_CHECKED), set after each round.
pub const CLIENTS_BY_HEALTH: &str = "fleetreg_clients_by_health_state";
/// Counter: periodic client health checks recorded, by the `state` they found.
pub const CLIENT_HEALTH_CHECKS: &str = "fleetreg_client_health_checks_total";
/// Counter: client URLs fetched (periodic and on demand), by `outcome` (OK,
/// HTTP_STATUS, TIMEOUT, TLS_ERROR, REFUSED, CONNECTION_ERROR).
pub const CLIENT_URL_CHECKS: &str = "fleetreg_client_url_checks_total";

/// The credential expiry gauges in Prometheus text format.
///
/// They are computed on each scrape from two counts over the store's
/// `expires_at` index rather than by a worker through the process-wide
/// recorder: always current, no task to run, and each server (several share a
/// process in tests) reports its own store.
pub fn credential_expiry_text(expiring: u64, expired: u64) -> String {
    format!(
        "# HELP {CREDENTIALS_EXPIRING} Clusters whose credentials expire within the rotation warning window.\n\
         # TYPE {CREDENTIALS_EXPIRING} gauge\n\
         {CREDENTIALS_EXPIRING} {expiring}\n\
         # HELP {CREDENTIALS_EXPIRED} Clusters whose credentials have expired.\n\
         # TYPE {CREDENTIALS_EXPIRED} gauge\n\
         {CREDENTIALS_EXPIRED} {expired}\n"
    )
}

/// Gauge: hosts without a heartbeat for longer than `sync.orphan_after_seconds`
/// (computed at scrape, like the credential gauges).
pub const ORPHANED_HOSTS: &str = "fleetreg_orphaned_hosts";

/// The orphaned-hosts gauge in Prometheus text format.
pub fn orphaned_hosts_text(count: u64) -> String {
    format!(
        "# HELP {ORPHANED_HOSTS} Hosts whose heartbeat is older than the orphan threshold.\n\
         # TYPE {ORPHANED_HOSTS} gauge\n\
         {ORPHANED_HOSTS} {count}\n"
    )
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .map(PrometheusBuilder::build_recorder);
            match recorder {
                Ok(recorder) => {
                    let handle = recorder.handle();
                    if metrics::set_global_recorder(recorder).is_err() {
                        tracing::warn!(
                            "a metrics recorder was already installed; /metrics may be empty"
                        );
                    }
                    handle
                }
                Err(error) => {
                    tracing::warn!(%error, "could not configure histogram buckets; using defaults");
                    let recorder = PrometheusBuilder::new().build_recorder();
                    let handle = recorder.handle();
                    let _ = metrics::set_global_recorder(recorder);
                    handle
                }
            }
        })
        .clone()
}

/// The `method` label: a standard method's name, else `other` (a client
/// may send any token as a method).
pub fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN
        .iter()
        .find(|known| *known == *method)
        .map_or("other", Method::as_str)
}

/// The `route` label of a request no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Middleware counting requests and timing them by route template.
pub async fn track(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("method", method.to_owned()),
        ("route", route),
        ("status", status),
    ];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_DURATION, &labels).record(start.elapsed().as_secs_f64());
    response
}

/// Counts a request hyper refused before it reached the router (`status`
/// 400, 414 or 431), as method `other` on the unmatched route.
pub fn record_unparsed(status: u16) {
    let labels = [
        ("method", "other".to_owned()),
        ("route", UNMATCHED_ROUTE.to_owned()),
        ("status", status.to_string()),
    ];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
}
