//! [`ClusterLocks`]: at most one probe of a cluster at a time, whoever starts it
//! (the scheduler, `POST /refresh`, discovery after registration).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use uuid::Uuid;

/// One async lock per cluster id, created on demand and dropped when nobody holds
/// or waits for it, so the map only holds clusters being probed. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ClusterLocks {
    locks: Arc<Mutex<HashMap<Uuid, Arc<AsyncMutex<()>>>>>,
}

/// Held while a cluster is probed; releasing it lets the next waiter in.
#[derive(Debug)]
pub struct ClusterGuard {
    id: Uuid,
    guard: Option<OwnedMutexGuard<()>>,
    locks: ClusterLocks,
}

impl ClusterLocks {
    /// Waits until no other probe of `id` runs, then holds the cluster.
    pub async fn lock(&self, id: Uuid) -> ClusterGuard {
        let lock = self.map().entry(id).or_default().clone();
        let guard = lock.lock_owned().await;
        ClusterGuard {
            id,
            guard: Some(guard),
            locks: self.clone(),
        }
    }

    /// How many clusters are being probed or waited for (tests, metrics).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// True when no cluster is being probed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<AsyncMutex<()>>>> {
        // Every update is a single insert or remove: a poisoned map is consistent.
        self.locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map();
        // Only the map still refers to the lock: nobody holds or waits for it.
        if map.get(&self.id).is_some_and(|l| Arc::strong_count(l) == 1) {
            map.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn one_probe_per_cluster_at_a_time() {
        let locks = ClusterLocks::default();
        let id = Uuid::now_v7();
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (locks, inside, most) = (locks.clone(), inside.clone(), most.clone());
                tokio::spawn(async move {
                    let _held = locks.lock(id).await;
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert!(locks.is_empty(), "released locks are forgotten");
    }

    #[tokio::test]
    async fn different_clusters_do_not_wait_for_each_other() {
        let locks = ClusterLocks::default();
        let _a = locks.lock(Uuid::now_v7()).await;
        let b = tokio::time::timeout(Duration::from_secs(1), locks.lock(Uuid::now_v7())).await;
        assert!(b.is_ok());
        assert_eq!(locks.len(), 2);
    }
}
