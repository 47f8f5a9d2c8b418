//! [`ConfigReads`]: the agent streams woken by one change read their nodes'
//! desired configurations together, with one statement, instead of one
//! round trip each.
//!
//! A routing change rewrites every node's configuration, and its events wake
//! every open agent stream at once. Each stream asks for its own node; the
//! asks that arrive while no read runs start one, the asks that arrive while
//! a read runs wait for it to end and are all served by the next. A read is
//! never older than the ask it answers: every ask it serves came before it
//! started, so a stream sees every change committed before it was woken.
//! On PostgreSQL 1,000 woken streams cost a handful of statements instead of
//! 1,000 (docs/BENCHMARKS.md, "Edge push"). A read that fails on one node's
//! undecodable row is read again node by node, so that one bad row does not
//! fail every stream woken with it.

use fleetreg_model::DnsLabel;
use fleetreg_store::{DesiredConfig, Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// What an ask gets: the node's configuration, `None` when the node is gone,
/// or the read's error (shared by every ask it served).
pub type ConfigRead = Result<Option<DesiredConfig>, Arc<StoreError>>;

/// Most nodes read by one statement.
const MAX_NODES_PER_READ: usize = 1024;

/// Longest a read may take: a read that hangs (a stuck database connection)
/// fails its asks instead of holding every woken stream of the replica.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Shared reads of nodes' desired configurations. Cheap to clone.
#[derive(Clone)]
pub struct ConfigReads {
    store: Arc<dyn Store>,
    queue: Arc<Mutex<Queue>>,
}

#[derive(Default)]
struct Queue {
    asks: Vec<(DnsLabel, oneshot::Sender<ConfigRead>)>,
    reading: bool,
}

impl ConfigReads {
    /// Reads from `store`.
    pub fn new(store: Arc<dyn Store>) -> ConfigReads {
        ConfigReads {
            store,
            queue: Arc::default(),
        }
    }

    /// `node`'s desired configuration as committed when this was called (or
    /// later), read together with the other streams' asks.
    pub async fn read(&self, node: &DnsLabel) -> ConfigRead {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queue = self.lock();
            queue.asks.push((node.clone(), answer));
            !std::mem::replace(&mut queue.reading, true)
        };
        if start {
            // Its own task: a stream that goes away while its read runs does
            // not take the read from the others. The guard is made before
            // the task, so a task dropped before it ever runs (the runtime
            // shutting down) still releases the queue.
            let early_end = EarlyEnd(Some(self.queue.clone()));
            tokio::spawn(self.clone().serve_asks(early_end));
        }
        answered
            .await
            .unwrap_or_else(|_| Err(Arc::new(StoreError::Closed)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads for the waiting asks until none are left.
    async fn serve_asks(self, mut early_end: EarlyEnd) {
        loop {
            let asks = {
                let mut queue = self.lock();
                if queue.asks.is_empty() {
                    // Under the lock: an ask that comes after this starts
                    // a new task.
                    queue.reading = false;
                    early_end.0 = None;
                    return;
                }
                let take = queue.asks.len().min(MAX_NODES_PER_READ);
                queue.asks.drain(..take).collect::<Vec<_>>()
            };
            let mut names: Vec<DnsLabel> = asks.iter().map(|(node, _)| node.clone()).collect();
            names.sort();
            names.dedup();
            let what = format!("{} nodes' configurations", names.len());
            match within_time_limit(self.store.desired_configs(&names), &what).await {
                Ok(configs) => {
                    let by_node: HashMap<&DnsLabel, &DesiredConfig> = configs
                        .iter()
                        .map(|desired| (&desired.config.node, desired))
                        .collect();
                    for (node, answer) in asks {
                        let _ = answer.send(Ok(by_node.get(&node).map(|&d| d.clone())));
                    }
                }
                // One node's row that does not decode fails the statement:
                // each node alone, so that only its own stream goes without.
                Err(StoreError::Corrupt(_)) if names.len() > 1 => {
                    for (node, answer) in asks {
                        let _ = answer.send(self.read_alone(&node).await);
                    }
                }
                Err(error) => {
                    let error = Arc::new(error);
                    for (_, answer) in asks {
                        let _ = answer.send(Err(error.clone()));
                    }
                }
            }
        }
    }

    /// `node`'s configuration read by itself.
    async fn read_alone(&self, node: &DnsLabel) -> ConfigRead {
        let what = format!("node {node}'s configuration");
        match within_time_limit(self.store.desired_config(node), &what).await {
            Ok(desired) => Ok(Some(desired)),
            Err(StoreError::NodeNotFound(_)) => Ok(None),
            Err(error) => Err(Arc::new(error)),
        }
    }
}

/// `read` within [`READ_TIMEOUT`] (`Unavailable` naming `what` after it).
async fn within_time_limit<T>(
    read: impl std::future::Future<Output = Result<T, StoreError>>,
    what: &str,
) -> Result<T, StoreError> {
    tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "reading {what} took over {READ_TIMEOUT:?}"
            )))
        })
}

/// Should the task serving asks end before the queue is empty (a panic, the
/// runtime shutting down), its waiting asks fail (`Closed`) and the next ask
/// starts a new task instead of waiting for ever.
struct EarlyEnd(Option<Arc<Mutex<Queue>>>);

impl Drop for EarlyEnd {
    fn drop(&mut self) {
        if let Some(queue) = self.0.take() {
            let mut queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.reading = false;
            queue.asks.clear();
        }
    }
}
