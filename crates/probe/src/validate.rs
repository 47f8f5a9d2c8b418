//! [`Prober::validate`]: whether a credential works, component by component
//! (seed 4.2 "Upload Credentials", 5.2 `CredentialService.validate`).

use crate::health::{bounded, Failure};
use crate::observability::Observability;
use crate::prober::{join, Prober};
use crate::target::Target;
use fleetreg_model::{Component, CredentialValidation, ValidationOutcome};
use std::time::Duration;
use tokio::time::Instant;

impl Prober {
    /// Tries the target's credential on every component it is for, all
    /// concurrently, the whole bounded by `timeout`:
    ///
    /// - the API server: lists at most one namespace (what checks and
    ///   discovery need); 401 and 403 fail with causes such as
    ///   `HTTP 401 Unauthorized: …`;
    /// - each configured observability endpoint, with its own token (or none):
    ///   Prometheus `GET /api/v1/query?query=up` (a data path that an auth
    ///   proxy never exempts, unlike `/-/ready`), Tempo and Loki `GET /ready`.
    ///
    /// An endpoint not configured is `None` in the result. Every failed
    /// component has a [`Failure`] with its cause (never a secret).
    pub async fn validate(
        &self,
        target: &Target,
        timeout: Duration,
    ) -> (CredentialValidation, Vec<Failure>) {
        let deadline = Instant::now() + timeout;
        let api = bounded(deadline, timeout, self.api_server_ready(target));
        let [prometheus, tempo, loki] = Observability::ALL.map(|endpoint| {
            let url = endpoint
                .base(target)
                .map(|base| join(base, endpoint.validation_path()));
            async move {
                let url = url?;
                let call = self.ready(target, &url, endpoint.token(target));
                Some(bounded(deadline, timeout, call).await)
            }
        });
        let (api, prometheus, tempo, loki) = tokio::join!(api, prometheus, tempo, loki);

        let mut failures = Vec::new();
        let mut outcome = |component: Component, result: Option<Result<(), String>>| {
            result.map(|result| match result {
                Ok(()) => ValidationOutcome::Success,
                Err(cause) => {
                    failures.push(Failure { component, cause });
                    ValidationOutcome::Failed
                }
            })
        };
        let validation = CredentialValidation {
            api_server: outcome(Component::ApiServer, Some(api)),
            prometheus: outcome(Observability::Prometheus.component(), prometheus),
            tempo: outcome(Observability::Tempo.component(), tempo),
            loki: outcome(Observability::Loki.component(), loki),
        };
        (validation, failures)
    }
}
