//! Live health of clients (issue 12): every URL of a deployed client fetched
//! at once ([`ClientHealthChecker::check`]), for `GET
//! /api/v1/clients/{name}/health` and for the periodic [`ClientHealthMonitor`],
//! which records each client's state through
//! `ClientStore::record_client_health`.
//!
//! Invariant: the fetches go through the probe's `UrlChecker`, under the same
//! egress policy (`health_check.allowed_networks`) and filtering resolver as
//! every cluster check; an on-demand check records nothing.

mod monitor;

pub use monitor::{ClientHealthMonitor, ClientRound, MAX_CONCURRENT_CLIENT_CHECKS};

use crate::ca_file::{with_ca_file, CaFileError};
use crate::metrics;
use crate::settings::ClientHealthConfig;
use fleetreg_model::{tls_days_left, Client, ClientHealth, ClientUrlHealth, Clock, UrlOutcome};
use fleetreg_probe::{EgressPolicy, UrlChecker};
use std::time::Duration;

/// Checks clients' URLs: the probe's checker, the per-URL timeout and the
/// clock checks are dated by. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ClientHealthChecker {
    checker: UrlChecker,
    timeout: Duration,
    clock: Clock,
}

impl ClientHealthChecker {
    /// A checker for `config` connecting only where `policy` allows, dating
    /// checks by `clock`. Reads `config.ca_file` now.
    pub fn new(
        config: &ClientHealthConfig,
        policy: EgressPolicy,
        clock: Clock,
    ) -> Result<ClientHealthChecker, CaFileError> {
        let checker = with_ca_file("client_health.ca_file", config.ca_file.as_deref(), |pem| {
            UrlChecker::new(policy, pem)
        })?;
        Ok(ClientHealthChecker {
            checker,
            timeout: config.timeout(),
            clock,
        })
    }

    /// How long one URL may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The clock checks are dated by.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Checks every URL of `client` at once, each within the timeout, so the
    /// whole check takes about one timeout at most. A client that is not
    /// `deployed`, or has no URLs, is `NOT_CHECKED` (nothing is fetched).
    pub async fn check(&self, client: &Client) -> ClientHealth {
        let checked_at = self.clock.now();
        if let Some(reason) = ClientHealth::skip_reason(client) {
            return ClientHealth::new(client, checked_at, Vec::new(), Some(reason));
        }
        let fetches = client.spec.urls.iter().map(|(app, url)| async move {
            let found = self.checker.check(url, self.timeout).await;
            ::metrics::counter!(metrics::CLIENT_URL_CHECKS, "outcome" => found.outcome.as_str())
                .increment(1);
            ClientUrlHealth {
                app: app.clone(),
                url: url.clone(),
                healthy: found.outcome == UrlOutcome::Ok,
                outcome: found.outcome,
                status_code: found.status_code,
                latency_ms: found
                    .latency
                    .map(|l| u64::try_from(l.as_millis()).unwrap_or(u64::MAX)),
                tls_not_after: found.tls_not_after,
                tls_days_left: found.tls_not_after.map(|at| tls_days_left(at, checked_at)),
                error: found.error,
            }
        });
        let urls = futures::future::join_all(fetches).await;
        ClientHealth::new(client, checked_at, urls, None)
    }
}
