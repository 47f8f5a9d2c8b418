//! The rollout driver: every `rollouts.check_seconds` it feeds each running
//! rollout what the registry says of its current wave's clients — their
//! version of the app, when they last changed, their last URL health check —
//! and the store moves the rollout (`Rollout::observe`). Rollouts live in
//! the database, so a restart resumes them where they were.

use fleetreg_model::{ClientHealthState, ClientStatus, Rollout, RolloutObservation, RolloutStatus};
use fleetreg_store::{Store, StoreError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most running rollouts looked at per pass.
const PER_PASS: u32 = 100;

/// The driver; `tick()` does one pass so tests can drive it.
#[derive(Clone)]
pub struct RolloutDriver {
    store: Arc<dyn Store>,
}

impl RolloutDriver {
    /// A driver over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        RolloutDriver { store }
    }

    /// What the registry says of `rollout`'s watched clients.
    async fn observe(
        &self,
        rollout: &Rollout,
    ) -> Result<BTreeMap<String, RolloutObservation>, StoreError> {
        let mut seen = BTreeMap::new();
        for name in rollout.watched() {
            let client = match self.store.get_client(&name).await {
                Ok(client) => client,
                Err(StoreError::ClientNotFound(_)) => {
                    let gone = RolloutObservation {
                        deployed: false,
                        version: None,
                        changed_at: rollout.updated_at,
                        health: None,
                    };
                    seen.insert(name, gone);
                    continue;
                }
                Err(error) => return Err(error),
            };
            // A client without URLs has nothing to check: its version report
            // is the whole gate.
            let health = if client.spec.urls.is_empty() {
                Some((client.updated_at, ClientHealthState::NotChecked))
            } else {
                self.store
                    .client_health(&name)
                    .await?
                    .map(|h| (h.checked_at, h.state))
            };
            seen.insert(
                name,
                RolloutObservation {
                    deployed: client.spec.status == ClientStatus::Deployed,
                    version: client.spec.versions.get(&rollout.app).cloned(),
                    changed_at: client.updated_at,
                    health,
                },
            );
        }
        Ok(seen)
    }

    /// One pass over the running rollouts; how many moved.
    pub async fn tick(&self) -> Result<usize, StoreError> {
        let running = self
            .store
            .list_rollouts(Some(RolloutStatus::Running), PER_PASS)
            .await?;
        let mut moved = 0;
        for rollout in running {
            let seen = self.observe(&rollout).await?;
            let after = self
                .store
                .observe_rollout(rollout.id, rollout.current_wave, seen)
                .await?;
            if after != rollout {
                moved += 1;
                tracing::info!(rollout = %after.id, app = %after.app, version = %after.version,
                    status = after.status.as_str(), wave = after.current_wave, "rollout moved");
            }
        }
        Ok(moved)
    }

    /// Runs every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {
                    if let Err(error) = self.tick().await {
                        tracing::warn!(%error, "rollout pass failed");
                    }
                }
            }
        }
    }
}
