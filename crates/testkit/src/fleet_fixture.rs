//! A varied fleet for list and filter tests (API and store alike): cluster `i`
//! of [`seeded`] gets a type, environment, region, labels, state and
//! capabilities from `i`, so every filter and every combination matches some
//! clusters and misses others; [`expect`] counts independently of the code
//! under test.

use fleetreg_model::ClusterState;
use std::collections::BTreeSet;

/// Cluster types, cycled by `i`.
pub const TYPES: [&str; 4] = ["HUB", "SPOKE", "EDGE", "FAR_EDGE"];
/// Environments, cycled by `i / 2`.
pub const ENVS: [&str; 4] = ["PRODUCTION", "STAGING", "DEVELOPMENT", "LAB"];
/// Regions, cycled by `i`.
pub const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-south-1"];
/// Values of the `team` label, cycled by `i / 3`.
pub const TEAMS: [&str; 3] = ["platform", "data", "edge"];
/// States, cycled by `i / 4`.
pub const STATES: [ClusterState; 4] = [
    ClusterState::Unknown,
    ClusterState::Online,
    ClusterState::Degraded,
    ClusterState::Offline,
];

/// What a test writes for one cluster, to count against.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// `alpha-NN`, `beta-NN` or `gamma-NN`.
    pub name: String,
    /// The `cluster_type`.
    pub cluster_type: &'static str,
    /// The `environment`.
    pub environment: &'static str,
    /// The `region`.
    pub region: &'static str,
    /// The `team` label.
    pub team: &'static str,
    /// The `tier` label, on every fifth cluster.
    pub tier: Option<&'static str>,
    /// The state a test records for it.
    pub state: ClusterState,
    /// `has_gpu_nodes` once discovered (`None`: never discovered).
    pub gpu: Option<bool>,
    /// `has_cnf` once discovered (`None`: never discovered).
    pub cnf: Option<bool>,
}

/// Cluster number `i` of the fleet.
pub fn seeded(i: usize) -> Seeded {
    Seeded {
        name: format!("{}-{i:02}", ["alpha", "beta", "gamma"][i % 3]),
        cluster_type: TYPES[i % 4],
        environment: ENVS[(i / 2) % 4],
        region: REGIONS[i % 3],
        team: TEAMS[(i / 3) % 3],
        tier: i.is_multiple_of(5).then_some("gold"),
        state: STATES[(i / 4) % 4],
        gpu: match i % 7 {
            0 | 1 => Some(true),
            2 | 3 => Some(false),
            _ => None,
        },
        cnf: match i % 6 {
            0 => Some(true),
            1 => Some(false),
            _ => None,
        },
    }
}

/// The names of the clusters of `all` that `keep` selects, sorted.
pub fn expect(all: &[Seeded], keep: impl Fn(&Seeded) -> bool) -> BTreeSet<String> {
    all.iter()
        .filter(|s| keep(s))
        .map(|s| s.name.clone())
        .collect()
}

/// A filter as a query string (without `?`) and which clusters it selects.
pub type FilterCase = (&'static str, Box<dyn Fn(&Seeded) -> bool>);

/// Every filter, alone and combined, with the clusters each must select: the
/// API and the store check the same cases, each at its own layer.
pub fn filter_cases() -> Vec<FilterCase> {
    vec![
        ("", Box::new(|_| true)),
        ("name=beta", Box::new(|s| s.name.contains("beta"))),
        ("name=BETA-1", Box::new(|s| s.name.contains("beta-1"))),
        ("name=a-0", Box::new(|s| s.name.contains("a-0"))),
        ("name=zzz", Box::new(|_| false)),
        ("name=%25", Box::new(|_| false)),
        ("name=_", Box::new(|_| false)),
        ("cluster_type=EDGE", Box::new(|s| s.cluster_type == "EDGE")),
        (
            "cluster_type=FAR_EDGE",
            Box::new(|s| s.cluster_type == "FAR_EDGE"),
        ),
        (
            "environment=PRODUCTION",
            Box::new(|s| s.environment == "PRODUCTION"),
        ),
        ("environment=LAB", Box::new(|s| s.environment == "LAB")),
        ("region=eu-west-1", Box::new(|s| s.region == "eu-west-1")),
        ("region=nowhere", Box::new(|_| false)),
        (
            "state=UNKNOWN",
            Box::new(|s| s.state == ClusterState::Unknown),
        ),
        (
            "state=ONLINE",
            Box::new(|s| s.state == ClusterState::Online),
        ),
        (
            "state=DEGRADED",
            Box::new(|s| s.state == ClusterState::Degraded),
        ),
        (
            "state=OFFLINE",
            Box::new(|s| s.state == ClusterState::Offline),
        ),
        ("has_gpu=true", Box::new(|s| s.gpu == Some(true))),
        ("has_gpu=false", Box::new(|s| s.gpu != Some(true))),
        ("has_cnf=true", Box::new(|s| s.cnf == Some(true))),
        ("has_cnf=false", Box::new(|s| s.cnf != Some(true))),
        ("label=team=data", Box::new(|s| s.team == "data")),
        ("label=tier=gold", Box::new(|s| s.tier == Some("gold"))),
        (
            "label=team=data&label=tier=gold",
            Box::new(|s| s.team == "data" && s.tier == Some("gold")),
        ),
        ("label=team=data&label=team=edge", Box::new(|_| false)),
        ("label=team=nobody", Box::new(|_| false)),
        ("label=owner=x", Box::new(|_| false)),
        (
            "environment=PRODUCTION&label=team=platform",
            Box::new(|s| s.environment == "PRODUCTION" && s.team == "platform"),
        ),
        (
            "cluster_type=SPOKE&region=us-east-1&state=ONLINE",
            Box::new(|s| {
                s.cluster_type == "SPOKE"
                    && s.region == "us-east-1"
                    && s.state == ClusterState::Online
            }),
        ),
        (
            "environment=STAGING&has_gpu=true&label=team=platform",
            Box::new(|s| s.environment == "STAGING" && s.gpu == Some(true) && s.team == "platform"),
        ),
        (
            "has_gpu=true&has_cnf=true",
            Box::new(|s| s.gpu == Some(true) && s.cnf == Some(true)),
        ),
        (
            "cluster_type=FAR_EDGE",
            Box::new(|s| s.cluster_type == "FAR_EDGE"),
        ),
        ("label=tier=silver", Box::new(|_| false)),
        (
            "environment=LAB&label=team=platform",
            Box::new(|s| s.environment == "LAB" && s.team == "platform"),
        ),
        (
            "cluster_type=HUB&region=us-east-1&state=DEGRADED",
            Box::new(|s| {
                s.cluster_type == "HUB"
                    && s.region == "us-east-1"
                    && s.state == ClusterState::Degraded
            }),
        ),
        (
            "name=gamma&has_gpu=true&label=team=edge",
            Box::new(|s| s.name.contains("gamma") && s.gpu == Some(true) && s.team == "edge"),
        ),
    ]
}
