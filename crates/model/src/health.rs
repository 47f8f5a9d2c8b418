//! Health of a cluster (seed 8): the score, the state machine and the per-type
//! check timing, as pure functions of one check's results.
//!
//! The probe crate produces [`CheckResults`]; the server's scheduler feeds them
//! here and stores the [`ClusterStatus`] that [`cluster_status`] builds.

use crate::enums::{ClusterState, ClusterType, Connectivity};
use crate::ClusterStatus;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The outcome of one health check (seed 8.1).
///
/// `None` means the endpoint is not configured: it is not checked and costs no
/// points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckResults {
    /// Whether listing namespaces on the API server succeeded.
    pub api_server: bool,
    /// Whether Prometheus `/-/ready` answered 2xx; `None` when not configured.
    pub prometheus: Option<bool>,
    /// Whether Tempo `/ready` answered 2xx; `None` when not configured.
    pub tempo: Option<bool>,
    /// Whether Loki `/ready` answered 2xx; `None` when not configured.
    pub loki: Option<bool>,
}

impl CheckResults {
    /// Every configured check passed (the API server is always configured).
    pub fn all_pass(&self) -> bool {
        self.failed().next().is_none()
    }

    /// The components whose check failed, in the order of seed 8.1.
    pub fn failed(&self) -> impl Iterator<Item = Component> + '_ {
        Component::ALL
            .iter()
            .copied()
            .filter(|component| self.result(*component) == Some(false))
    }

    /// The result for one component; `None` when it is not configured.
    pub fn result(&self, component: Component) -> Option<bool> {
        match component {
            Component::ApiServer => Some(self.api_server),
            Component::Prometheus => self.prometheus,
            Component::Tempo => self.tempo,
            Component::Loki => self.loki,
        }
    }
}

/// What a health check looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// The Kubernetes API server.
    ApiServer,
    /// Prometheus (or a Thanos querier).
    Prometheus,
    /// Tempo.
    Tempo,
    /// Loki.
    Loki,
}

impl Component {
    /// Every component, in the order of seed 8.1.
    pub const ALL: [Component; 4] = [
        Component::ApiServer,
        Component::Prometheus,
        Component::Tempo,
        Component::Loki,
    ];

    /// Points taken off the score of 100 when this component's check fails.
    pub fn deduction(self) -> i32 {
        match self {
            Component::ApiServer => 50,
            Component::Prometheus => 20,
            Component::Tempo => 15,
            Component::Loki => 15,
        }
    }

    /// The name used in reasons and logs.
    pub fn name(self) -> &'static str {
        match self {
            Component::ApiServer => "API server",
            Component::Prometheus => "Prometheus",
            Component::Tempo => "Tempo",
            Component::Loki => "Loki",
        }
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The health score of seed 8.1: 100, minus 50 when the API server is down, 20 for
/// Prometheus, 15 for Tempo, 15 for Loki; never below 0. Unconfigured endpoints
/// cost nothing.
pub fn health_score(results: &CheckResults) -> i32 {
    let lost: i32 = results.failed().map(Component::deduction).sum();
    (100 - lost).max(0)
}

/// The state after a check (seed 8.2).
///
/// - API server unreachable → `OFFLINE`, from any state.
/// - API server up and every configured check passing → `ONLINE`.
/// - API server up and some configured check failing → `DEGRADED`.
///
/// The seed's diagram draws only `UNKNOWN → ONLINE | OFFLINE` for a first check;
/// a first check with partial failures is `DEGRADED` here, the state every other
/// state reaches on the same results, so that the state always describes the
/// latest check. No check ever leads back to `UNKNOWN`. `current` is part of the
/// signature so callers state the transition they make; the result does not depend
/// on it today.
pub fn next_state(current: ClusterState, results: &CheckResults) -> ClusterState {
    let _ = current;
    if !results.api_server {
        ClusterState::Offline
    } else if results.all_pass() {
        ClusterState::Online
    } else {
        ClusterState::Degraded
    }
}

/// The status to store after a check: state, score, connectivity, the per-check
/// results, the time and a reason in words (see [`describe`]).
pub fn cluster_status(
    current: ClusterState,
    results: &CheckResults,
    checked_at: DateTime<Utc>,
) -> ClusterStatus {
    ClusterStatus {
        state: next_state(current, results),
        health_score: health_score(results),
        connectivity: if results.api_server {
            Connectivity::Connected
        } else {
            Connectivity::Disconnected
        },
        api_server_healthy: Some(results.api_server),
        prometheus_healthy: results.prometheus,
        tempo_healthy: results.tempo,
        loki_healthy: results.loki,
        checked_at: Some(checked_at),
        reason: Some(describe(results)),
    }
}

/// A one-line human explanation of a check's results, e.g.
/// `"API server reachable; Prometheus, Loki not ready"`.
pub fn describe(results: &CheckResults) -> String {
    if !results.api_server {
        let others: Vec<&str> = results
            .failed()
            .filter(|c| *c != Component::ApiServer)
            .map(Component::name)
            .collect();
        return if others.is_empty() {
            "API server unreachable".to_owned()
        } else {
            format!("API server unreachable; {} not ready", others.join(", "))
        };
    }
    let failed: Vec<&str> = results.failed().map(Component::name).collect();
    if failed.is_empty() {
        "all checks passed".to_owned()
    } else {
        format!("API server reachable; {} not ready", failed.join(", "))
    }
}

/// How often a cluster is checked and how long one whole check may take (seed 8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckTiming {
    /// Time between the starts of two checks.
    pub interval: Duration,
    /// Bound on one whole check (all its calls run concurrently within it).
    pub timeout: Duration,
}

impl CheckTiming {
    /// The defaults of seed 8.3: HUB 15 s / 5 s, SPOKE 30 s / 10 s, EDGE 60 s / 15 s,
    /// FAR_EDGE 120 s / 30 s.
    pub fn default_for(cluster_type: ClusterType) -> CheckTiming {
        let (interval, timeout) = match cluster_type {
            ClusterType::Hub => (15, 5),
            ClusterType::Spoke => (30, 10),
            ClusterType::Edge => (60, 15),
            ClusterType::FarEdge => (120, 30),
        };
        CheckTiming {
            interval: Duration::from_secs(interval),
            timeout: Duration::from_secs(timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL_UP: CheckResults = CheckResults {
        api_server: true,
        prometheus: Some(true),
        tempo: Some(true),
        loki: Some(true),
    };

    #[test]
    fn each_deduction_matches_the_seed() {
        assert_eq!(health_score(&ALL_UP), 100);
        let cases = [
            (
                CheckResults {
                    api_server: false,
                    ..ALL_UP
                },
                50,
            ),
            (
                CheckResults {
                    prometheus: Some(false),
                    ..ALL_UP
                },
                80,
            ),
            (
                CheckResults {
                    tempo: Some(false),
                    ..ALL_UP
                },
                85,
            ),
            (
                CheckResults {
                    loki: Some(false),
                    ..ALL_UP
                },
                85,
            ),
        ];
        for (results, score) in cases {
            assert_eq!(health_score(&results), score, "{results:?}");
        }
        let all_down = CheckResults {
            api_server: false,
            prometheus: Some(false),
            tempo: Some(false),
            loki: Some(false),
        };
        assert_eq!(health_score(&all_down), 0);
    }

    #[test]
    fn unconfigured_endpoints_cost_nothing() {
        let api_only = CheckResults {
            api_server: true,
            prometheus: None,
            tempo: None,
            loki: None,
        };
        assert_eq!(health_score(&api_only), 100);
        assert_eq!(
            next_state(ClusterState::Unknown, &api_only),
            ClusterState::Online
        );
        let api_down = CheckResults {
            api_server: false,
            ..api_only
        };
        assert_eq!(health_score(&api_down), 50);
    }

    #[test]
    fn transitions_of_the_seed_diagram() {
        let degraded = CheckResults {
            tempo: Some(false),
            ..ALL_UP
        };
        let offline = CheckResults {
            api_server: false,
            ..ALL_UP
        };
        use ClusterState::*;
        let cases = [
            (Unknown, ALL_UP, Online),
            (Unknown, offline, Offline),
            (Online, degraded, Degraded),
            (Online, offline, Offline),
            (Degraded, ALL_UP, Online),
            (Degraded, offline, Offline),
            (Offline, ALL_UP, Online),
            (Offline, degraded, Degraded),
            (Unknown, degraded, Degraded),
            (Online, ALL_UP, Online),
        ];
        for (from, results, to) in cases {
            assert_eq!(next_state(from, &results), to, "{from} with {results:?}");
        }
    }

    #[test]
    fn status_carries_results_and_reason() {
        let at = crate::now();
        let results = CheckResults {
            api_server: true,
            prometheus: Some(false),
            tempo: None,
            loki: Some(false),
        };
        let status = cluster_status(ClusterState::Online, &results, at);
        assert_eq!(status.state, ClusterState::Degraded);
        assert_eq!(status.health_score, 65);
        assert_eq!(status.connectivity, Connectivity::Connected);
        assert_eq!(status.api_server_healthy, Some(true));
        assert_eq!(status.prometheus_healthy, Some(false));
        assert_eq!(status.tempo_healthy, None);
        assert_eq!(status.loki_healthy, Some(false));
        assert_eq!(status.checked_at, Some(at));
        assert_eq!(
            status.reason.as_deref(),
            Some("API server reachable; Prometheus, Loki not ready")
        );

        let down = cluster_status(
            ClusterState::Online,
            &CheckResults {
                api_server: false,
                ..results
            },
            at,
        );
        assert_eq!(down.connectivity, Connectivity::Disconnected);
        assert_eq!(
            down.reason.as_deref(),
            Some("API server unreachable; Prometheus, Loki not ready")
        );
        assert_eq!(
            cluster_status(ClusterState::Offline, &ALL_UP, at)
                .reason
                .as_deref(),
            Some("all checks passed")
        );
    }

    #[test]
    fn timing_defaults_of_seed_8_3() {
        let secs = |t: ClusterType| {
            let timing = CheckTiming::default_for(t);
            (timing.interval.as_secs(), timing.timeout.as_secs())
        };
        assert_eq!(secs(ClusterType::Hub), (15, 5));
        assert_eq!(secs(ClusterType::Spoke), (30, 10));
        assert_eq!(secs(ClusterType::Edge), (60, 15));
        assert_eq!(secs(ClusterType::FarEdge), (120, 30));
        for t in ClusterType::ALL {
            let timing = CheckTiming::default_for(*t);
            assert!(timing.timeout < timing.interval);
        }
    }

    fn results() -> impl Strategy<Value = CheckResults> {
        (
            any::<bool>(),
            any::<Option<bool>>(),
            any::<Option<bool>>(),
            any::<Option<bool>>(),
        )
            .prop_map(|(api_server, prometheus, tempo, loki)| CheckResults {
                api_server,
                prometheus,
                tempo,
                loki,
            })
    }

    fn state() -> impl Strategy<Value = ClusterState> {
        prop::sample::select(ClusterState::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn score_is_bounded_and_monotone(r in results()) {
            let score = health_score(&r);
            prop_assert!((0..=100).contains(&score));
            // Fixing any one failing check never lowers the score.
            for c in r.failed() {
                let mut fixed = r;
                match c {
                    Component::ApiServer => fixed.api_server = true,
                    Component::Prometheus => fixed.prometheus = Some(true),
                    Component::Tempo => fixed.tempo = Some(true),
                    Component::Loki => fixed.loki = Some(true),
                }
                prop_assert_eq!(health_score(&fixed), score + c.deduction());
            }
        }

        #[test]
        fn state_follows_the_results(from in state(), r in results()) {
            let to = next_state(from, &r);
            prop_assert_ne!(to, ClusterState::Unknown);
            prop_assert_eq!(to == ClusterState::Offline, !r.api_server);
            prop_assert_eq!(to == ClusterState::Online, r.all_pass());
            prop_assert_eq!(to == ClusterState::Online, health_score(&r) == 100);
            let status = cluster_status(from, &r, crate::now());
            prop_assert_eq!(status.state, to);
            prop_assert_eq!(status.connectivity == Connectivity::Connected, r.api_server);
        }
    }
}
