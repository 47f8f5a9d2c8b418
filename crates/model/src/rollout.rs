//! Canary-first rollouts (seed client-registry.md, "Canary Deployment
//! Workflow"): a plan whose first wave is every canary client running the
//! app, then the production clients in waves; a wave completes when its
//! clients report the new version and their URL health checks pass after it.
//! Production never starts before the canary wave is done; a failed client
//! halts the rollout. Pure state machine: the server feeds it observations.

use crate::client::Client;
use crate::client_health::ClientHealthState;
use crate::enums::{ClientRole, ClientStatus};
use crate::Error;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

/// Most client names a rollout request may list.
pub const MAX_ROLLOUT_CLIENTS: usize = 1000;

/// Default production wave size.
pub const DEFAULT_WAVE_SIZE: u32 = 5;

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    /// The current wave is updating.
    Running,
    /// The canary wave is done; production waits for `promote`.
    AwaitingPromotion,
    /// Stopped by an operator; `resume` continues.
    Paused,
    /// Every wave is done.
    Completed,
    /// A client failed its health check after updating; nothing more starts.
    Halted,
    /// Stopped for good by an operator.
    Aborted,
}

impl RolloutStatus {
    /// The wire and database form.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutStatus::Running => "running",
            RolloutStatus::AwaitingPromotion => "awaiting_promotion",
            RolloutStatus::Paused => "paused",
            RolloutStatus::Completed => "completed",
            RolloutStatus::Halted => "halted",
            RolloutStatus::Aborted => "aborted",
        }
    }

    /// Parses the wire form.
    pub fn parse(value: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(value.to_owned())).ok()
    }

    /// Whether nothing can happen to the rollout any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RolloutStatus::Completed | RolloutStatus::Halted | RolloutStatus::Aborted
        )
    }
}

/// Where one client of a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutClientState {
    /// Its wave has not started.
    Pending,
    /// Its wave started; waiting for the new version and a passing health check.
    Updating,
    /// Runs the new version and passed its health check after updating.
    Done,
    /// Failed its health check after updating (or left `deployed`).
    Failed,
}

/// One client in a wave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RolloutClient {
    /// The client's name.
    pub name: String,
    /// Its state in the rollout.
    pub state: RolloutClientState,
    /// The version of the app it last reported.
    pub reported_version: Option<String>,
    /// Its last health state seen after it updated.
    pub health: Option<ClientHealthState>,
    /// Why it failed.
    pub reason: Option<String>,
}

/// One wave of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RolloutWave {
    /// Whether this is the canary wave (always the first).
    pub canary: bool,
    /// Its clients, by name.
    pub clients: Vec<RolloutClient>,
}

/// `POST /api/v1/rollouts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    /// The app to update (clients with it in `apps`).
    pub app: String,
    /// The version to reach (`versions.APP`).
    pub version: String,
    /// Production clients per wave (1 to 1000, default 5).
    #[serde(default)]
    pub wave_size: Option<u32>,
    /// Only clients at this location.
    #[serde(default)]
    pub location: Option<String>,
    /// Only these clients (by name).
    #[serde(default)]
    pub clients: Option<Vec<String>>,
    /// Wait for `promote` after the canary wave (default true).
    #[serde(default = "yes")]
    pub require_promotion: bool,
}

fn yes() -> bool {
    true
}

/// A rollout and its plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rollout {
    /// Server-assigned id.
    pub id: Uuid,
    /// The app.
    pub app: String,
    /// The target version.
    pub version: String,
    /// Where it is.
    pub status: RolloutStatus,
    /// Index of the wave in progress (or last done).
    pub current_wave: usize,
    /// Wait for `promote` after the canary wave.
    pub require_promotion: bool,
    /// The waves: canaries first, then production.
    pub waves: Vec<RolloutWave>,
    /// Why it halted.
    pub halted_reason: Option<String>,
    /// When it was started.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// What the server saw of one client: its version of the app, when the
/// client last changed, and its last health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutObservation {
    /// Whether the client is still registered and `deployed`.
    pub deployed: bool,
    /// `versions.APP`.
    pub version: Option<String>,
    /// The client's `updated_at` (a version report changes it).
    pub changed_at: DateTime<Utc>,
    /// The last health check: when, and its state.
    pub health: Option<(DateTime<Utc>, ClientHealthState)>,
}

/// An operator's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutCommand {
    /// Start production after the canary wave.
    Promote,
    /// Stop advancing.
    Pause,
    /// Continue a paused rollout.
    Resume,
    /// Stop for good.
    Abort,
}

impl RolloutCommand {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutCommand::Promote => "promote",
            RolloutCommand::Pause => "pause",
            RolloutCommand::Resume => "resume",
            RolloutCommand::Abort => "abort",
        }
    }

    /// The audit action (`rollout.promote`, …).
    pub fn audit_action(self) -> &'static str {
        match self {
            RolloutCommand::Promote => "rollout.promote",
            RolloutCommand::Pause => "rollout.pause",
            RolloutCommand::Resume => "rollout.resume",
            RolloutCommand::Abort => "rollout.abort",
        }
    }
}

/// A command the rollout's status does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} a rollout that is {}", command.as_str(), status.as_str())]
pub struct RolloutConflict {
    /// The command.
    pub command: RolloutCommand,
    /// The status it met.
    pub status: RolloutStatus,
}

/// What a `ROLLOUT_CHANGED` event carries: where the rollout is, not its
/// whole plan (which grows with the fleet); `GET /api/v1/rollouts/{id}` has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RolloutEvent {
    /// The rollout.
    pub id: Uuid,
    /// The app.
    pub app: String,
    /// The target version.
    pub version: String,
    /// Where it is.
    pub status: RolloutStatus,
    /// The wave in progress (or last done).
    pub current_wave: usize,
    /// How many waves there are.
    pub waves: usize,
    /// Why it halted.
    pub halted_reason: Option<String>,
}

impl Rollout {
    /// The event payload of this rollout's state.
    pub fn event(&self) -> RolloutEvent {
        RolloutEvent {
            id: self.id,
            app: self.app.clone(),
            version: self.version.clone(),
            status: self.status,
            current_wave: self.current_wave,
            waves: self.waves.len(),
            halted_reason: self.halted_reason.clone(),
        }
    }

    /// Plans a rollout over `clients`: every `deployed` client with the app
    /// (and matching the request's selectors); canaries first (one wave),
    /// production in waves of `wave_size`, each sorted by name. Refused when
    /// no canary or no client at all qualifies: the workflow is canary first.
    pub fn plan(
        request: &RolloutRequest,
        clients: &[Client],
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Rollout, Error> {
        crate::cluster::validate_text("app", &request.app, 63)?;
        crate::cluster::validate_text("version", &request.version, 64)?;
        if request.app.is_empty() || request.version.is_empty() {
            return Err(Error::invalid("app", "app and version must not be empty"));
        }
        if request
            .clients
            .as_ref()
            .is_some_and(|c| c.len() > MAX_ROLLOUT_CLIENTS)
        {
            return Err(Error::invalid(
                "clients",
                format!("at most {MAX_ROLLOUT_CLIENTS} names"),
            ));
        }
        let named: Option<std::collections::HashSet<&str>> = request
            .clients
            .as_ref()
            .map(|names| names.iter().map(String::as_str).collect());
        let wave_size = request.wave_size.unwrap_or(DEFAULT_WAVE_SIZE);
        if !(1..=1000).contains(&wave_size) {
            return Err(Error::invalid("wave_size", "must be 1 to 1000"));
        }
        let chosen = |c: &&Client| {
            c.spec.status == ClientStatus::Deployed
                && c.spec.apps.contains(&request.app)
                && request
                    .location
                    .as_ref()
                    .is_none_or(|l| c.spec.server.location.as_ref() == Some(l))
                && named
                    .as_ref()
                    .is_none_or(|names| names.contains(c.name.as_str()))
        };
        let mut canaries: Vec<&Client> = Vec::new();
        let mut production: Vec<&Client> = Vec::new();
        for client in clients.iter().filter(chosen) {
            match client.spec.role {
                ClientRole::Canary => canaries.push(client),
                ClientRole::Production => production.push(client),
            }
        }
        if canaries.is_empty() {
            return Err(Error::invalid(
                "app",
                format!(
                    "no deployed canary client runs {}: a rollout starts with the canary wave",
                    request.app
                ),
            ));
        }
        canaries.sort_by(|a, b| a.name.cmp(&b.name));
        production.sort_by(|a, b| a.name.cmp(&b.name));
        let wave = |canary: bool, members: &[&Client]| RolloutWave {
            canary,
            clients: members
                .iter()
                .map(|c| RolloutClient {
                    name: c.name.to_string(),
                    state: RolloutClientState::Pending,
                    reported_version: c.spec.versions.get(&request.app).cloned(),
                    health: None,
                    reason: None,
                })
                .collect(),
        };
        let mut waves = vec![wave(true, &canaries)];
        waves.extend(
            production
                .chunks(wave_size as usize)
                .map(|chunk| wave(false, chunk)),
        );
        let mut rollout = Rollout {
            id,
            app: request.app.clone(),
            version: request.version.clone(),
            status: RolloutStatus::Running,
            current_wave: 0,
            require_promotion: request.require_promotion,
            waves,
            halted_reason: None,
            created_at: now,
            updated_at: now,
        };
        rollout.start_wave(0);
        Ok(rollout)
    }

    fn start_wave(&mut self, index: usize) {
        self.current_wave = index;
        if let Some(wave) = self.waves.get_mut(index) {
            for client in &mut wave.clients {
                if client.state == RolloutClientState::Pending {
                    client.state = RolloutClientState::Updating;
                }
            }
        }
    }

    /// The names of the current wave's clients still updating.
    pub fn watched(&self) -> Vec<String> {
        self.waves
            .get(self.current_wave)
            .map(|wave| {
                wave.clients
                    .iter()
                    .filter(|c| c.state == RolloutClientState::Updating)
                    .map(|c| c.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Feeds what the server saw of wave `wave`'s clients (by name; a name
    /// not in `seen` was not looked at; a client that is gone is seen as not
    /// `deployed`): clients move to done or failed, and the rollout to the
    /// next wave, to awaiting promotion, to completed or to halted. Only a
    /// running rollout at that wave moves: observations made for an earlier
    /// wave (another replica's, or from before a promotion) change nothing.
    /// True when anything changed.
    pub fn observe(
        &mut self,
        wave: usize,
        seen: &BTreeMap<String, RolloutObservation>,
        now: DateTime<Utc>,
    ) -> bool {
        if self.status != RolloutStatus::Running || wave != self.current_wave {
            return false;
        }
        let version = self.version.clone();
        let mut changed = false;
        let Some(wave) = self.waves.get_mut(self.current_wave) else {
            return false;
        };
        for client in &mut wave.clients {
            if client.state != RolloutClientState::Updating {
                continue;
            }
            let before = client.clone();
            let Some(o) = seen.get(&client.name) else {
                continue;
            };
            match o {
                o if o.deployed => {
                    client.reported_version.clone_from(&o.version);
                    if o.version.as_deref() == Some(version.as_str()) {
                        // Only a check after the version was reported counts.
                        match o.health {
                            Some((at, state)) if at >= o.changed_at => {
                                client.health = Some(state);
                                match state {
                                    ClientHealthState::Healthy | ClientHealthState::NotChecked => {
                                        client.state = RolloutClientState::Done
                                    }
                                    ClientHealthState::Degraded | ClientHealthState::Down => {
                                        client.state = RolloutClientState::Failed;
                                        client.reason = Some(format!(
                                            "health check {state:?} after updating to {version}"
                                        ));
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {
                    client.state = RolloutClientState::Failed;
                    client.reason = Some("no longer a deployed client".into());
                }
            }
            changed |= *client != before;
        }
        let failed = wave
            .clients
            .iter()
            .find(|c| c.state == RolloutClientState::Failed)
            .map(|c| (c.name.clone(), c.reason.clone().unwrap_or_default()));
        let done = wave
            .clients
            .iter()
            .all(|c| c.state == RolloutClientState::Done);
        let canary = wave.canary;
        if let Some((name, reason)) = failed {
            self.status = RolloutStatus::Halted;
            let which = if canary { "canary" } else { "client" };
            self.halted_reason = Some(format!("{which} {name} failed: {reason}"));
            changed = true;
        } else if done {
            changed = true;
            if canary && self.require_promotion && self.waves.len() > 1 {
                self.status = RolloutStatus::AwaitingPromotion;
            } else {
                self.next_wave();
            }
        }
        if changed {
            self.updated_at = now;
        }
        changed
    }

    fn next_wave(&mut self) {
        let next = self.current_wave + 1;
        if next >= self.waves.len() {
            self.status = RolloutStatus::Completed;
        } else {
            self.status = RolloutStatus::Running;
            self.start_wave(next);
        }
    }

    /// Applies an operator's command.
    pub fn command(
        &mut self,
        command: RolloutCommand,
        now: DateTime<Utc>,
    ) -> Result<(), RolloutConflict> {
        use RolloutStatus as S;
        let refuse = || RolloutConflict {
            command,
            status: self.status,
        };
        match (command, self.status) {
            (RolloutCommand::Promote, S::AwaitingPromotion) => self.next_wave(),
            (RolloutCommand::Pause, S::Running | S::AwaitingPromotion) => self.status = S::Paused,
            (RolloutCommand::Resume, S::Paused) => {
                let wave_done = self.waves.get(self.current_wave).is_some_and(|w| {
                    w.clients
                        .iter()
                        .all(|c| c.state == RolloutClientState::Done)
                });
                let canary = self.waves.get(self.current_wave).is_some_and(|w| w.canary);
                self.status = if wave_done && canary && self.require_promotion {
                    S::AwaitingPromotion
                } else {
                    S::Running
                };
            }
            (RolloutCommand::Abort, status) if !status.is_final() => self.status = S::Aborted,
            _ => return Err(refuse()),
        }
        self.updated_at = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientName, ClientSpec};

    fn client(name: &str, role: ClientRole, version: &str) -> Client {
        let mut spec = ClientSpec {
            status: ClientStatus::Deployed,
            role,
            apps: vec!["nextcloud".into()],
            ..ClientSpec::default()
        };
        spec.versions.insert("nextcloud".into(), version.into());
        Client {
            id: Uuid::now_v7(),
            name: ClientName::parse(name).unwrap(),
            spec,
            revision: 1,
            created_at: t(0),
            updated_at: t(0),
        }
    }

    fn t(minutes: i64) -> DateTime<Utc> {
        "2026-03-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
            + chrono::Duration::minutes(minutes)
    }

    fn request() -> RolloutRequest {
        RolloutRequest {
            app: "nextcloud".into(),
            version: "31.0.2".into(),
            wave_size: Some(2),
            location: None,
            clients: None,
            require_promotion: true,
        }
    }

    fn fleet() -> Vec<Client> {
        vec![
            client("dev", ClientRole::Canary, "30"),
            client("a", ClientRole::Production, "30"),
            client("b", ClientRole::Production, "30"),
            client("c", ClientRole::Production, "30"),
        ]
    }

    fn seen(
        names: &[&str],
        version: &str,
        health: ClientHealthState,
    ) -> BTreeMap<String, RolloutObservation> {
        names
            .iter()
            .map(|n| {
                let o = RolloutObservation {
                    deployed: true,
                    version: Some(version.into()),
                    changed_at: t(1),
                    health: Some((t(2), health)),
                };
                ((*n).to_owned(), o)
            })
            .collect()
    }

    #[test]
    fn canaries_first_then_production_in_waves() {
        let rollout = Rollout::plan(&request(), &fleet(), Uuid::nil(), t(0)).unwrap();
        let names: Vec<Vec<&str>> = rollout
            .waves
            .iter()
            .map(|w| w.clients.iter().map(|c| c.name.as_str()).collect())
            .collect();
        assert_eq!(names, [vec!["dev"], vec!["a", "b"], vec!["c"]]);
        assert_eq!(rollout.watched(), ["dev"]);
        let no_canary: Vec<Client> = fleet().into_iter().skip(1).collect();
        assert!(Rollout::plan(&request(), &no_canary, Uuid::nil(), t(0)).is_err());
    }

    #[test]
    fn production_waits_for_a_healthy_canary_and_promotion() {
        let mut rollout = Rollout::plan(&request(), &fleet(), Uuid::nil(), t(0)).unwrap();
        // Not updated yet: nothing moves.
        assert!(!rollout.observe(
            rollout.current_wave,
            &seen(&["dev"], "30", ClientHealthState::Healthy),
            t(3)
        ));
        // Updated but the check predates the update: still waiting.
        let mut stale = seen(&["dev"], "31.0.2", ClientHealthState::Healthy);
        stale.get_mut("dev").unwrap().health = Some((t(0), ClientHealthState::Healthy));
        rollout.observe(rollout.current_wave, &stale, t(3));
        assert_eq!(rollout.status, RolloutStatus::Running);
        assert_eq!(rollout.current_wave, 0);
        rollout.observe(
            rollout.current_wave,
            &seen(&["dev"], "31.0.2", ClientHealthState::Healthy),
            t(3),
        );
        assert_eq!(rollout.status, RolloutStatus::AwaitingPromotion);
        assert!(rollout.watched().is_empty(), "production has not started");
        rollout.command(RolloutCommand::Promote, t(4)).unwrap();
        assert_eq!(rollout.watched(), ["a", "b"]);
        // A late observation made for the canary wave changes nothing now.
        assert!(!rollout.observe(0, &seen(&["dev"], "31.0.2", ClientHealthState::Down), t(4)));
        assert!(
            !rollout.observe(1, &BTreeMap::new(), t(4)),
            "not looked at is not gone"
        );
        rollout.observe(
            1,
            &seen(&["a", "b"], "31.0.2", ClientHealthState::NotChecked),
            t(5),
        );
        assert_eq!(rollout.watched(), ["c"]);
        rollout.observe(
            rollout.current_wave,
            &seen(&["c"], "31.0.2", ClientHealthState::Healthy),
            t(6),
        );
        assert_eq!(rollout.status, RolloutStatus::Completed);
        assert!(rollout.command(RolloutCommand::Abort, t(7)).is_err());
    }

    #[test]
    fn a_failing_canary_halts_before_production() {
        let mut rollout = Rollout::plan(&request(), &fleet(), Uuid::nil(), t(0)).unwrap();
        rollout.observe(
            rollout.current_wave,
            &seen(&["dev"], "31.0.2", ClientHealthState::Down),
            t(3),
        );
        assert_eq!(rollout.status, RolloutStatus::Halted);
        assert!(rollout
            .halted_reason
            .as_deref()
            .unwrap()
            .contains("canary dev"));
        assert!(rollout.waves[1]
            .clients
            .iter()
            .all(|c| c.state == RolloutClientState::Pending));
        assert!(rollout.command(RolloutCommand::Promote, t(4)).is_err());
    }

    #[test]
    fn pause_resume_abort() {
        let mut rollout = Rollout::plan(&request(), &fleet(), Uuid::nil(), t(0)).unwrap();
        rollout.command(RolloutCommand::Pause, t(1)).unwrap();
        assert!(!rollout.observe(
            0,
            &seen(&["dev"], "31.0.2", ClientHealthState::Healthy),
            t(2)
        ));
        rollout.command(RolloutCommand::Resume, t(3)).unwrap();
        assert_eq!(rollout.status, RolloutStatus::Running);
        rollout.command(RolloutCommand::Abort, t(4)).unwrap();
        assert!(rollout.command(RolloutCommand::Resume, t(5)).is_err());
    }
}
