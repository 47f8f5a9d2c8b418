//! Health-driven failover by an HTTP check through each VPS node (issue 13
//! item 10, `edge.http_check`). Runs beside the [`super::Controller`] and
//! only while it holds the lease (once per deployment): every interval one
//! `GET` per VPS node, all at once (at most [`MAX_CONCURRENT_CHECKS`]), each
//! within the timeout, `Host` a hostname the node's proxy routes.
//! Consecutive failures are counted in memory; the store is written only
//! when a node's stored outcome flips (`EdgeStore::record_node_check`: down
//! after `failures` failures in a row, up again at the first success), and
//! routes fail over or move back in that write's transaction. A node the
//! round does not check (a laptop, a VPS without the configured address, or
//! every node with the check off) never stays marked as failing.

use crate::settings::{CheckAddress, CheckScheme, HttpCheckConfig};
use fleetreg_model::{DnsLabel, Node, NodeKind, NodeSync, NodeSyncStatus};
use fleetreg_probe::{NodeCheck, NodeChecker, NodeTarget};
use fleetreg_store::{DesiredConfig, Store, StoreError};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Most checks in flight at once; a round of more nodes takes a timeout
/// more per this many.
pub const MAX_CONCURRENT_CHECKS: usize = 256;

/// A VPS node's proxy as the check sees it: the hostnames its desired
/// configuration routes (serving them or standing by), and whether its
/// agent runs that configuration (applied it, not failed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyState {
    /// The hostnames of its routes, in its configuration's order.
    pub hostnames: Vec<String>,
    /// Whether its agent applied the configuration those come from.
    pub applied: bool,
}

impl ProxyState {
    /// What `sync`'s node runs, its desired configuration being `desired`.
    pub fn of(desired: &DesiredConfig, sync: Option<&NodeSync>) -> ProxyState {
        ProxyState {
            hostnames: desired
                .config
                .routes
                .iter()
                .map(|route| route.hostname.clone())
                .collect(),
            applied: sync.is_some_and(|sync| {
                sync.status != NodeSyncStatus::Failed
                    && sync.applied_revision == Some(desired.revision)
            }),
        }
    }
}

/// One node's check in a round: whom, what was requested, and whether its
/// proxy runs the configuration the `Host` sent was taken from.
#[derive(Debug, Clone)]
pub struct CheckTarget {
    /// The node.
    pub node: DnsLabel,
    /// The request: `Host` a hostname the node's proxy routes, if any.
    pub target: NodeTarget,
    /// Whether the node's agent applied that configuration (else a pass
    /// may be a proxy that does not have the route yet).
    pub applied: bool,
}

/// The request of each VPS node `nodes` lists: its configured address, and
/// as `Host` a hostname of its proxy (`proxies`): the first that another
/// checked node's proxy also routes, so that the two can be compared, else
/// its first, else none (the address is sent). Nodes without the configured
/// address are left out.
pub fn targets(
    nodes: &[Node],
    proxies: &HashMap<DnsLabel, ProxyState>,
    config: &HttpCheckConfig,
) -> Vec<CheckTarget> {
    let address_of = |node: &Node| match config.address {
        CheckAddress::Public => node.public_address,
        CheckAddress::Overlay => Some(node.overlay_address),
    };
    let checked: Vec<(&Node, IpAddr, Option<&ProxyState>)> = nodes
        .iter()
        .filter(|node| node.kind == NodeKind::Vps)
        .filter_map(|node| Some((node, address_of(node)?, proxies.get(&node.name))))
        .collect();
    let mut routed_by: HashMap<&str, usize> = HashMap::new();
    for (_, _, proxy) in &checked {
        let hostnames: HashSet<&str> = proxy
            .iter()
            .flat_map(|p| p.hostnames.iter().map(String::as_str))
            .collect();
        for hostname in hostnames {
            *routed_by.entry(hostname).or_default() += 1;
        }
    }
    checked
        .into_iter()
        .map(|(node, address, proxy)| {
            let hostnames = proxy.map(|p| p.hostnames.as_slice()).unwrap_or_default();
            let host = hostnames
                .iter()
                .find(|h| routed_by.get(h.as_str()).is_some_and(|&n| n > 1))
                .or_else(|| hostnames.first())
                .cloned();
            CheckTarget {
                node: node.name.clone(),
                target: NodeTarget {
                    https: config.scheme == CheckScheme::Https,
                    address,
                    port: config.port,
                    path: config.path.clone(),
                    host,
                },
                applied: proxy.is_some_and(|p| p.applied),
            }
        })
        .collect()
}

/// Whether each of a round's checks counts as a pass for its node
/// (`checks[i]` → `result[i]`). A proxy's answer that its upstream failed
/// (`NodeCheck::upstream_failed`: the node itself is up) counts as a
/// failure only when another node whose proxy runs the same hostname
/// (applied) passed in the same round: the service is reachable, just not
/// through this node. Else the service is down wherever it can be seen
/// from; moving its route would not help, and moved it on and back every
/// few intervals. A pass of a node whose agent has not applied its
/// configuration proves nothing: its proxy may answer 404 without the route.
pub fn verdicts(checks: &[(CheckTarget, NodeCheck)]) -> Vec<bool> {
    let reachable: HashSet<(&DnsLabel, &str)> = checks
        .iter()
        .filter(|(target, check)| target.applied && check.passed())
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
            self.check_all(&stored).await?
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
    async fn check_all(
        &self,
        stored: &[NodeSync],
    ) -> Result<Vec<(CheckTarget, NodeCheck)>, StoreError> {
        let nodes = self.store.list_nodes(Some(NodeKind::Vps)).await?;
        let names: Vec<DnsLabel> = nodes.iter().map(|node| node.name.clone()).collect();
        let proxies: HashMap<DnsLabel, ProxyState> = self
            .store
            .desired_configs(&names)
            .await?
            .iter()
            .map(|desired| {
                let node = &desired.config.node;
                let sync = stored.iter().find(|sync| &sync.node == node);
                (node.clone(), ProxyState::of(desired, sync))
            })
            .collect();
        let timeout = self.config.timeout();
        let checker = &self.checker;
        Ok(
            futures::stream::iter(targets(&nodes, &proxies, &self.config))
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
    use fleetreg_model::RoutingPlan;
    use fleetreg_testkit::edge_fixture::{label, seed};

    /// `node`'s sync state with `applied` and `status`.
    fn sync_of(node: &DnsLabel, applied: Option<i64>, status: NodeSyncStatus) -> NodeSync {
        NodeSync {
            node: node.clone(),
            kind: NodeKind::Vps,
            overlay_address: "100.64.0.2".parse().unwrap(),
            status,
            desired_revision: 9,
            applied_revision: applied,
            last_sync_at: None,
            last_heartbeat_at: None,
            push_attempts: 0,
            last_error: None,
            up: true,
            heartbeat_ok: true,
            check_ok: true,
            check_error: None,
            check_changed_at: None,
        }
    }

    /// Every node's proxy under the seed's plan, applied.
    fn seed_proxies(seed: &fleetreg_testkit::edge_fixture::Seed) -> HashMap<DnsLabel, ProxyState> {
        let snapshot = seed.snapshot(&[]);
        let plan = RoutingPlan::compute(&snapshot);
        snapshot
            .nodes
            .iter()
            .map(|view| {
                let desired = DesiredConfig {
                    revision: 7,
                    config: plan.node_config(view),
                };
                let sync = sync_of(&view.name, Some(7), NodeSyncStatus::Active);
                (view.name.clone(), ProxyState::of(&desired, Some(&sync)))
            })
            .collect()
    }

    #[test]
    fn each_vps_is_checked_with_a_hostname_its_proxy_routes() {
        let seed = seed();
        let config = HttpCheckConfig {
            port: 8080,
            path: "/healthz".into(),
            ..HttpCheckConfig::default()
        };
        let proxies = seed_proxies(&seed);
        let checks = targets(&seed.nodes, &proxies, &config);
        let hosts: Vec<(&str, String, Option<&str>, bool)> = checks
            .iter()
            .map(|c| {
                let host = c.target.host.as_deref();
                (c.node.as_str(), c.target.url(), host, c.applied)
            })
            .collect();
        // Both route every hostname (vps2 stands by for chat.curiios.com,
        // primary-backup's), so both are checked with the first.
        let chat = "http://chat.curiios.com:8080/healthz".to_owned();
        assert_eq!(
            hosts,
            [
                ("vps1", chat.clone(), Some("chat.curiios.com"), true),
                ("vps2", chat, Some("chat.curiios.com"), true),
            ],
            "the laptop is never checked"
        );
        assert_eq!(checks[0].target.address.to_string(), "192.0.2.1");
        assert_eq!(checks[1].target.address.to_string(), "203.0.113.2");

        // The overlay address, over https.
        let overlay = HttpCheckConfig {
            address: CheckAddress::Overlay,
            scheme: CheckScheme::Https,
            ..config.clone()
        };
        let checks = targets(&seed.nodes, &proxies, &overlay);
        assert_eq!(checks[1].node, label("vps2"));
        assert_eq!(
            checks[1].target.url(),
            "https://chat.curiios.com:8080/healthz",
            "{checks:?}"
        );
        assert_eq!(checks[1].target.address.to_string(), "100.64.0.2");

        // A hostname another node routes too goes first, so the two compare;
        // a proxy whose agent has not applied its configuration says so.
        let proxies = HashMap::from([
            (
                label("vps1"),
                ProxyState {
                    hostnames: vec!["a.example.org".into(), "b.example.org".into()],
                    applied: true,
                },
            ),
            (
                label("vps2"),
                ProxyState {
                    hostnames: vec!["b.example.org".into()],
                    applied: false,
                },
            ),
        ]);
        let checks = targets(&seed.nodes, &proxies, &config);
        let hosts: Vec<(Option<&str>, bool)> = checks
            .iter()
            .map(|c| (c.target.host.as_deref(), c.applied))
            .collect();
        assert_eq!(
            hosts,
            [
                (Some("b.example.org"), true),
                (Some("b.example.org"), false)
            ]
        );

        // Routed nowhere: the address itself.
        let checks = targets(&seed.nodes, &HashMap::new(), &config);
        assert_eq!(checks[0].target.host, None);
        assert_eq!(checks[0].target.url(), "http://192.0.2.1:8080/healthz");
        assert!(!checks[0].applied);
    }

    #[test]
    fn a_proxy_runs_its_routes_once_its_agent_applied_them() {
        let seed = seed();
        let vps2 = &seed.snapshot(&[]).nodes[1];
        let plan = RoutingPlan::compute(&seed.snapshot(&[]));
        let desired = DesiredConfig {
            revision: 9,
            config: plan.node_config(vps2),
        };
        let mut sync = sync_of(&vps2.name, None, NodeSyncStatus::Active);
        assert!(
            !ProxyState::of(&desired, Some(&sync)).applied,
            "nothing applied"
        );
        sync.applied_revision = Some(8);
        assert!(
            !ProxyState::of(&desired, Some(&sync)).applied,
            "an older one"
        );
        sync.applied_revision = Some(9);
        let state = ProxyState::of(&desired, Some(&sync));
        assert!(state.applied);
        assert_eq!(state.hostnames.len(), desired.config.routes.len());
        sync.status = NodeSyncStatus::Failed;
        assert!(!ProxyState::of(&desired, Some(&sync)).applied, "failed");
        assert!(!ProxyState::of(&desired, None).applied);
    }

    fn checked(node: &str, host: &str, status: u16) -> (CheckTarget, NodeCheck) {
        checked_as(node, host, status, true)
    }

    fn checked_as(node: &str, host: &str, status: u16, applied: bool) -> (CheckTarget, NodeCheck) {
        let target = CheckTarget {
            node: label(node),
            target: NodeTarget {
                https: false,
                address: "127.0.0.2".parse().unwrap(),
                port: 80,
                path: "/".into(),
                host: Some(host.into()),
            },
            applied,
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
            let (target, _) = checked(node, "a.example.org", 200);
            let check = NodeCheck {
                status: None,
                error: Some("connect: refused".into()),
                proxy_alive: false,
            };
            (target, check)
        };
        let silent = |node: &str| {
            let (target, _) = checked(node, "a.example.org", 200);
            let check = NodeCheck {
                status: None,
                error: Some("no answer within 2000 ms".into()),
                proxy_alive: true,
            };
            (target, check)
        };
        // Every upstream down: each proxy carrying the hostname (serving or
        // standing by) answers 502. Nobody reaches the service: nobody fails.
        let all_down = [
            checked("vps1", "a.example.org", 502),
            checked("vps2", "a.example.org", 502),
        ];
        assert_eq!(verdicts(&all_down), [true, true]);
        // Or the serving one keeps retrying them past the check's timeout.
        let retrying = [silent("vps1"), checked("vps2", "a.example.org", 502)];
        assert_eq!(verdicts(&retrying), [true, true]);
        // One node reaches the service, the other does not: that one fails
        // (a primary with a broken path fails over to its standby). 503 and
        // 504 count like 502.
        for status in [502, 503, 504] {
            let one_path_down = [
                checked("vps1", "a.example.org", status),
                checked("vps2", "a.example.org", 200),
            ];
            assert_eq!(verdicts(&one_path_down), [false, true], "{status}");
        }
        // A standby whose agent has not applied the route (its proxy
        // answers 404 without it) proves nothing: the service may be down.
        let not_applied = [
            checked("vps1", "a.example.org", 502),
            checked_as("vps2", "a.example.org", 404, false),
        ];
        assert_eq!(verdicts(&not_applied), [true, true]);
        let one_path_silent = [silent("vps1"), checked("vps2", "a.example.org", 200)];
        assert_eq!(verdicts(&one_path_silent), [false, true]);
        // Another hostname passing proves nothing about this one.
        let other_host = [
            checked("vps1", "a.example.org", 502),
            checked("vps2", "b.example.org", 200),
        ];
        assert_eq!(verdicts(&other_host), [true, true]);
        // A proxy that does not answer, or answers 500, always fails.
        let proxy_down = [
            refused("vps1"),
            checked("vps2", "a.example.org", 500),
            checked("vps3", "a.example.org", 502),
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
