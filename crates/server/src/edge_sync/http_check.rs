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
use fleetreg_probe::{NodeCheck, NodeChecker, NodeTarget};
use fleetreg_store::{Store, StoreError};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Most checks in flight at once; a round of more nodes takes a timeout
/// more per this many.
pub const MAX_CONCURRENT_CHECKS: usize = 256;

/// One node's check in a round: whom, what was requested, and whether the
/// node's proxy carries the route of the `Host` sent.
#[derive(Debug, Clone)]
pub struct CheckTarget {
    /// The node.
    pub node: DnsLabel,
    /// The request.
    pub target: NodeTarget,
    /// Whether the node carries `target.host` (else the check reaches a
    /// proxy without that route, or sends no hostname).
    pub carries: bool,
}

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
) -> Vec<CheckTarget> {
    nodes
        .iter()
        .filter(|node| node.kind == NodeKind::Vps)
        .filter_map(|node| {
            let address = match config.address {
                CheckAddress::Public => node.public_address?,
                CheckAddress::Overlay => node.overlay_address,
            };
            let (host, carries) = match hostname_of(&node.name, plan, routings) {
                Some((host, carries)) => (Some(host), carries),
                None => (None, false),
            };
            let target = NodeTarget {
                https: config.scheme == CheckScheme::Https,
                address,
                port: config.port,
                path: config.path.clone(),
                host,
            };
            Some(CheckTarget {
                node: node.name.clone(),
                target,
                carries,
            })
        })
        .collect()
}

/// The hostname `node` carries (`true`), else one it would carry (`false`).
fn hostname_of(
    node: &DnsLabel,
    plan: &RoutingPlan,
    routings: &[Routing],
) -> Option<(String, bool)> {
    let listed_in = |service: &DnsLabel| {
        routings
            .iter()
            .any(|r| &r.service == service && r.nodes.contains(node))
    };
    let carried = plan
        .routes
        .iter()
        .find(|route| route.carriers.contains(node));
    match carried {
        Some(route) => Some((route.hostname.clone(), true)),
        None => plan
            .routes
            .iter()
            .find(|route| listed_in(&route.service))
            .map(|route| (route.hostname.clone(), false)),
    }
}

/// Whether each of a round's checks counts as a pass for its node
/// (`checks[i]` → `result[i]`). A proxy's answer that its upstream failed
/// (`NodeCheck::upstream_failed`: the node itself is up) counts as a
/// failure only when another node carrying the same hostname passed in the
/// same round: the service is reachable, just not through this node. Else
/// the service is down wherever it can be seen from; moving its route would
/// not help, and moved it on and back every few intervals (the backup
/// failed the same way, the node left behind passed without the route).
pub fn verdicts(checks: &[(CheckTarget, NodeCheck)]) -> Vec<bool> {
    let reachable: HashSet<(&DnsLabel, &str)> = checks
        .iter()
        .filter(|(target, check)| target.carries && check.passed())
        .filter_map(|(target, _)| Some((&target.node, target.target.host.as_deref()?)))
        .collect();
    let seen_through_another = |node: &DnsLabel, host: &str| {
        reachable
            .iter()
            .any(|(other, reached)| *other != node && *reached == host)
    };
    checks
        .iter()
        .map(|(target, check)| {
            check.passed()
                || (check.upstream_failed()
                    && !target
                        .target
                        .host
                        .as_deref()
                        .is_some_and(|host| seen_through_another(&target.node, host)))
        })
        .collect()
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
    /// A check over `store` with `config`, through `checker` (its egress
    /// policy and the CAs of `config.ca_file`).
    pub fn new(store: Arc<dyn Store>, config: HttpCheckConfig, checker: NodeChecker) -> HttpCheck {
        HttpCheck {
            store,
            checker,
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
        let passes = verdicts(&checks);
        let checked: HashSet<&DnsLabel> = checks.iter().map(|(target, _)| &target.node).collect();
        self.tally.keep_only(&checked);
        let mut flips = Vec::new();
        // What is no longer checked does not stay down for a check.
        for sync in stored.iter().filter(|s| !s.check_ok) {
            if !checked.contains(&sync.node) {
                flips.push((sync.node.clone(), true, None));
            }
        }
        for ((target, check), passed) in checks.iter().zip(passes) {
            let node = &target.node;
            if passed && !check.passed() {
                tracing::debug!(%node, error = check.error.as_deref().unwrap_or_default(),
                    "edge HTTP check: the upstream failed, and no other node reaches it");
            }
            let stored_ok = stored
                .iter()
                .find(|s| &s.node == node)
                .is_none_or(|s| s.check_ok);
            let needed = self.config.failures;
            if let Some(ok) = self.tally.observe(node, passed, stored_ok, needed) {
                flips.push((node.clone(), ok, check.error.clone().filter(|_| !ok)));
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
    async fn check_all(&self) -> Result<Vec<(CheckTarget, NodeCheck)>, StoreError> {
        let nodes = self.store.list_nodes(Some(NodeKind::Vps)).await?;
        let plan = self.store.routing_plan().await?;
        let routings = self.store.list_routings().await?;
        let timeout = self.config.timeout();
        let checker = &self.checker;
        Ok(
            futures::stream::iter(targets(&nodes, &plan, &routings, &self.config))
                .map(|target| async move {
                    let check = checker.check(&target.target, timeout).await;
                    (target, check)
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
            .map(|c| (c.node.as_str(), c.target.url(), c.target.host.as_deref()))
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
        assert_eq!(checks[0].target.address.to_string(), "192.0.2.1");
        assert_eq!(checks[1].target.address.to_string(), "203.0.113.2");

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
        assert_eq!(checks[1].node, label("vps2"));
        assert!(!checks[1].carries, "the backup carries nothing");
        assert_eq!(
            checks[1].target.url(),
            "https://chat.curiios.com:8080/healthz",
            "{checks:?}"
        );
        assert_eq!(checks[1].target.address.to_string(), "100.64.0.2");

        // Routed nowhere: the address itself.
        let checks = targets(&seed.nodes, &RoutingPlan::default(), &[], &config);
        assert_eq!(checks[0].target.host, None);
        assert_eq!(checks[0].target.url(), "http://192.0.2.1:8080/healthz");
    }

    fn checked(node: &str, host: &str, carries: bool, status: u16) -> (CheckTarget, NodeCheck) {
        let target = CheckTarget {
            node: label(node),
            target: NodeTarget {
                https: false,
                address: "127.0.0.2".parse().unwrap(),
                port: 80,
                path: "/".into(),
                host: Some(host.into()),
            },
            carries,
        };
        let check = NodeCheck {
            status: Some(status),
            error: (status >= 500).then(|| format!("answered HTTP {status}")),
            proxy_alive: true,
        };
        (target, check)
    }

    #[test]
    fn an_upstream_failure_counts_only_when_another_node_reaches_the_service() {
        let refused = |node: &str| {
            let (target, _) = checked(node, "a.example.org", true, 200);
            let check = NodeCheck {
                status: None,
                error: Some("connect: refused".into()),
                proxy_alive: false,
            };
            (target, check)
        };
        let silent = |node: &str| {
            let (target, _) = checked(node, "a.example.org", true, 200);
            let check = NodeCheck {
                status: None,
                error: Some("no answer within 2000 ms".into()),
                proxy_alive: true,
            };
            (target, check)
        };
        // Primary-backup, every upstream down: the primary's proxy answers
        // 502, the backup (without the route) 404. Nobody reaches the
        // service: the primary stays up.
        let all_down = [
            checked("vps1", "a.example.org", true, 502),
            checked("vps2", "a.example.org", false, 404),
        ];
        assert_eq!(verdicts(&all_down), [true, true]);
        // Or it keeps retrying them past the check's timeout.
        let retrying = [silent("vps1"), checked("vps2", "a.example.org", false, 404)];
        assert_eq!(verdicts(&retrying), [true, true]);
        // Round-robin, both carry it: one reaches the service, the other
        // does not; that one fails. 503 and 504 count like 502.
        for status in [502, 503, 504] {
            let one_path_down = [
                checked("vps1", "a.example.org", true, status),
                checked("vps2", "a.example.org", true, 200),
            ];
            assert_eq!(verdicts(&one_path_down), [false, true], "{status}");
        }
        let one_path_silent = [silent("vps1"), checked("vps2", "a.example.org", true, 200)];
        assert_eq!(verdicts(&one_path_silent), [false, true]);
        // Another hostname passing proves nothing about this one.
        let other_host = [
            checked("vps1", "a.example.org", true, 502),
            checked("vps2", "b.example.org", true, 200),
        ];
        assert_eq!(verdicts(&other_host), [true, true]);
        // A proxy that does not answer, or answers 500, always fails.
        let proxy_down = [
            refused("vps1"),
            checked("vps2", "a.example.org", true, 500),
            checked("vps3", "a.example.org", true, 502),
        ];
        assert_eq!(verdicts(&proxy_down), [false, false, true]);
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
