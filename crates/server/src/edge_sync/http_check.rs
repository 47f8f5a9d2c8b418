//! Health-driven failover by an HTTP check through each VPS node (issue 13
//! item 10, `edge.http_check`). Runs beside the [`super::Controller`] and
//! only while it holds the lease (once per deployment): every interval one
//! `GET` per VPS node, all at once (at most [`MAX_CONCURRENT_CHECKS`]), each
//! within the timeout, `Host` a hostname the node carries (or would carry).
//! Consecutive failures are counted in memory; the store is written only
//! when a node's stored outcome flips (`EdgeStore::record_node_check`: down
//! after `failures` failures in a row, up again at the first success), and
//! routes fail over or move back in that write's transaction. A node the
//! round does not check (a laptop, a VPS without the configured address, or
//! every node with the check off) never stays marked as failing.

use crate::settings::{CheckAddress, CheckScheme, HttpCheckConfig};
use fleetreg_model::{DnsLabel, Node, NodeKind, Routing, RoutingPlan};
use fleetreg_probe::{EgressPolicy, NodeCheck, NodeChecker, NodeTarget};
use fleetreg_store::{Store, StoreError};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Most checks in flight at once; a round of more nodes takes a timeout
/// more per this many.
pub const MAX_CONCURRENT_CHECKS: usize = 256;

/// The request of each VPS node `nodes` lists: its configured address, and
/// as `Host` the first hostname it carries under `plan` (what its desired
/// configuration holds), else the first hostname of a routing that lists it
/// (what it would carry on a failover), else none (the address is sent).
/// Nodes without the configured address are left out.
pub fn targets(
    nodes: &[Node],
    plan: &RoutingPlan,
    routings: &[Routing],
    config: &HttpCheckConfig,
) -> Vec<(DnsLabel, NodeTarget)> {
    nodes
        .iter()
        .filter(|node| node.kind == NodeKind::Vps)
        .filter_map(|node| {
            let address = match config.address {
                CheckAddress::Public => node.public_address?,
                CheckAddress::Overlay => node.overlay_address,
            };
            let target = NodeTarget {
                https: config.scheme == CheckScheme::Https,
                address,
                port: config.port,
                path: config.path.clone(),
                host: hostname_of(&node.name, plan, routings),
            };
            Some((node.name.clone(), target))
        })
        .collect()
}

/// The hostname `node` carries, else one it would carry.
fn hostname_of(node: &DnsLabel, plan: &RoutingPlan, routings: &[Routing]) -> Option<String> {
    let listed_in = |service: &DnsLabel| {
        routings
            .iter()
            .any(|r| &r.service == service && r.nodes.contains(node))
    };
    plan.routes
        .iter()
        .find(|route| route.carriers.contains(node))
        .or_else(|| plan.routes.iter().find(|route| listed_in(&route.service)))
        .map(|route| route.hostname.clone())
}

/// Consecutive failures per node, and the rule for when a stored outcome
/// flips.
#[derive(Debug, Default)]
pub struct Tally {
    failures: HashMap<DnsLabel, u32>,
}

impl Tally {
    /// Counts one check of `node` whose stored outcome is `stored_ok`: the
    /// outcome to store when it flips (`Some(false)` at the `needed`-th
    /// failure in a row, `Some(true)` at the first success), else `None`.
    pub fn observe(
        &mut self,
        node: &DnsLabel,
        passed: bool,
        stored_ok: bool,
        needed: u32,
    ) -> Option<bool> {
        if passed {
            self.failures.remove(node);
            return (!stored_ok).then_some(true);
        }
        let count = self.failures.entry(node.clone()).or_insert(0);
        *count = count.saturating_add(1);
        (stored_ok && *count >= needed).then_some(false)
    }

    /// Forgets the nodes not in `checked` (removed, or no longer checked).
    pub fn keep_only(&mut self, checked: &HashSet<&DnsLabel>) {
        self.failures.retain(|node, _| checked.contains(node));
    }

    /// Forgets everything (the lease was lost: another replica counts).
    pub fn clear(&mut self) {
        self.failures.clear();
    }
}

/// The check task's state.
pub struct HttpCheck {
    store: Arc<dyn Store>,
    checker: NodeChecker,
    config: HttpCheckConfig,
    tally: Tally,
}

impl HttpCheck {
    /// A check over `store` with `config`. Node addresses are IP literals an
    /// operator registered, so the egress policy is the default one (never
    /// link-local or cloud metadata addresses; loopback and private ranges
    /// allowed), not `health_check.allowed_networks`, which is about clusters.
    pub fn new(store: Arc<dyn Store>, config: HttpCheckConfig) -> HttpCheck {
        HttpCheck {
            store,
            checker: NodeChecker::new(EgressPolicy::default()),
            config,
            tally: Tally::default(),
        }
    }

    /// Runs a round every interval while `leading` (the controller's lease)
    /// holds, until `shutdown`; a failing round is logged and retried.
    pub async fn run(mut self, mut leading: watch::Receiver<bool>, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(self.config.interval());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if !*leading.borrow_and_update() {
                self.tally.clear();
                continue;
            }
            if let Err(error) = self.round().await {
                tracing::warn!(%error, "edge HTTP check round failed; retrying");
            }
        }
    }

    /// One round: checks every VPS node (none when the check is off) and
    /// stores the outcomes that flipped; returns them, by node.
    pub async fn round(&mut self) -> Result<Vec<(DnsLabel, bool)>, StoreError> {
        let stored = self.store.list_node_sync().await?;
        let checks = if self.config.enabled {
            self.check_all().await?
        } else {
            Vec::new()
        };
        let checked: HashSet<&DnsLabel> = checks.iter().map(|(node, _)| node).collect();
        self.tally.keep_only(&checked);
        let mut flips = Vec::new();
        // What is no longer checked does not stay down for a check.
        for sync in stored.iter().filter(|s| !s.check_ok) {
            if !checked.contains(&sync.node) {
                flips.push((sync.node.clone(), true, None));
            }
        }
        for (node, check) in &checks {
            let stored_ok = stored
                .iter()
                .find(|s| &s.node == node)
                .is_none_or(|s| s.check_ok);
            let needed = self.config.failures;
            if let Some(ok) = self.tally.observe(node, check.passed(), stored_ok, needed) {
                flips.push((node.clone(), ok, check.error.clone()));
            }
        }
        let mut stored_flips = Vec::with_capacity(flips.len());
        for (node, ok, error) in flips {
            match self.store.record_node_check(&node, ok, error.clone()).await {
                Ok(_) => {}
                // Deleted since the round began.
                Err(StoreError::NodeNotFound(_)) => continue,
                Err(other) => return Err(other),
            }
            if ok {
                tracing::info!(%node, "edge HTTP check passes: node up for routing");
            } else {
                let error = error.unwrap_or_default();
                tracing::warn!(%node, %error, failures = self.config.failures,
                    "edge HTTP check failed: node down for routing");
            }
            stored_flips.push((node, ok));
        }
        Ok(stored_flips)
    }

    /// Checks every VPS node at once (bounded), each within the timeout.
    async fn check_all(&self) -> Result<Vec<(DnsLabel, NodeCheck)>, StoreError> {
        let nodes = self.store.list_nodes(Some(NodeKind::Vps)).await?;
        let plan = self.store.routing_plan().await?;
        let routings = self.store.list_routings().await?;
        let timeout = self.config.timeout();
        let checker = &self.checker;
        Ok(
            futures::stream::iter(targets(&nodes, &plan, &routings, &self.config))
                .map(|(node, target)| async move {
                    let check = checker.check(&target, timeout).await;
                    (node, check)
                })
                .buffer_unordered(MAX_CONCURRENT_CHECKS)
                .collect()
                .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetreg_testkit::edge_fixture::{label, seed};

    #[test]
    fn each_vps_is_checked_with_a_hostname_it_carries_or_would_carry() {
        let seed = seed();
        let config = HttpCheckConfig {
            port: 8080,
            path: "/healthz".into(),
            ..HttpCheckConfig::default()
        };
        let plan = RoutingPlan::compute(&seed.snapshot(&[]));
        let checks = targets(&seed.nodes, &plan, &seed.routings, &config);
        let hosts: Vec<(&str, String, Option<&str>)> = checks
            .iter()
            .map(|(n, t)| (n.as_str(), t.url(), t.host.as_deref()))
            .collect();
        // vps1 carries chat.curiios.com first (primary-backup's primary);
        // vps2 carries photos.* (round-robin) and grafana.vinaysachdeva.com.
        assert_eq!(
            hosts,
            [
                (
                    "vps1",
                    "http://chat.curiios.com:8080/healthz".to_owned(),
                    Some("chat.curiios.com")
                ),
                (
                    "vps2",
                    "http://grafana.vinaysachdeva.com:8080/healthz".to_owned(),
                    Some("grafana.vinaysachdeva.com")
                ),
            ],
            "the laptop is never checked"
        );
        assert_eq!(checks[0].1.address.to_string(), "192.0.2.1");
        assert_eq!(checks[1].1.address.to_string(), "203.0.113.2");

        // Only a primary-backup routing: the backup carries nothing and is
        // checked with the hostname it would carry.
        let routings: Vec<Routing> = seed
            .routings
            .iter()
            .filter(|r| r.service.as_str() == "open-webui")
            .cloned()
            .collect();
        let only_chat = fleetreg_testkit::edge_fixture::Seed {
            routings: routings.clone(),
            ..seed.clone()
        };
        let plan = RoutingPlan::compute(&only_chat.snapshot(&[]));
        let overlay = HttpCheckConfig {
            address: CheckAddress::Overlay,
            scheme: CheckScheme::Https,
            ..config.clone()
        };
        let checks = targets(&seed.nodes, &plan, &routings, &overlay);
        assert_eq!(checks[1].0, label("vps2"));
        assert_eq!(
            checks[1].1.url(),
            "https://chat.curiios.com:8080/healthz",
            "{checks:?}"
        );
        assert_eq!(checks[1].1.address.to_string(), "100.64.0.2");

        // Routed nowhere: the address itself.
        let checks = targets(&seed.nodes, &RoutingPlan::default(), &[], &config);
        assert_eq!(checks[0].1.host, None);
        assert_eq!(checks[0].1.url(), "http://192.0.2.1:8080/healthz");
    }

    #[test]
    fn down_after_the_failures_in_a_row_up_at_the_first_success() {
        let mut tally = Tally::default();
        let node = label("vps1");
        // Stored as passing: two failures are nothing yet, the third flips.
        assert_eq!(tally.observe(&node, false, true, 3), None);
        assert_eq!(tally.observe(&node, false, true, 3), None);
        // A success in between starts the count again.
        assert_eq!(tally.observe(&node, true, true, 3), None);
        assert_eq!(tally.observe(&node, false, true, 3), None);
        assert_eq!(tally.observe(&node, false, true, 3), None);
        assert_eq!(tally.observe(&node, false, true, 3), Some(false));
        // Stored as failing: more failures write nothing, a success flips.
        assert_eq!(tally.observe(&node, false, false, 3), None);
        assert_eq!(tally.observe(&node, true, false, 3), Some(true));
        // A new leader (empty tally) counts from the stored outcome.
        tally.clear();
        assert_eq!(tally.observe(&node, true, false, 3), Some(true));
        assert_eq!(tally.observe(&node, false, true, 1), Some(false));
        tally.keep_only(&HashSet::new());
        assert!(tally.failures.is_empty());
    }
}
