//! [`Coalesced`]: concurrent requests for one expensive, fleet-wide aggregate
//! share a computation instead of each running their own.
//!
//! Freshness is not traded away: a caller is answered only by a computation that
//! *started after the caller arrived*, so it sees every write acknowledged before
//! its request, exactly as if it had computed alone. Computations run one at a
//! time; callers that arrive while one runs wait for it to end and are then all
//! served by the next one. Under N concurrent callers the database does at most
//! one aggregate at a time instead of N, and a caller waits for at most two. A
//! failed computation fails every caller it was serving (each of them would
//! otherwise try again in turn, one timeout after another).

use std::future::Future;
use std::sync::Arc;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// One shared computation of a `T` at a time, reused by every caller that
/// arrived before it started. Cheap to clone.
#[derive(Debug)]
pub struct Coalesced<T> {
    last: Arc<Mutex<Option<Computed<T>>>>,
}

impl<T> Clone for Coalesced<T> {
    fn clone(&self) -> Self {
        Coalesced {
            last: self.last.clone(),
        }
    }
}

impl<T> Default for Coalesced<T> {
    fn default() -> Self {
        Coalesced {
            last: Arc::default(),
        }
    }
}

#[derive(Debug)]
struct Computed<T> {
    started: Instant,
    /// `None` when the computation failed.
    value: Option<Arc<T>>,
}

/// Why [`Coalesced::get`] has no value.
#[derive(Debug, thiserror::Error)]
pub enum CoalescedError<E> {
    /// This caller's own computation failed.
    #[error(transparent)]
    Failed(E),
    /// The computation serving this caller, started by another caller, failed
    /// (that caller got the error itself).
    #[error("the shared computation serving this request failed")]
    SharedFailed,
}

impl<T> Coalesced<T> {
    /// The value computed by `compute`, or by another caller's computation that
    /// started after this call began. The caller whose computation failed gets
    /// its error; the others it was serving get [`CoalescedError::SharedFailed`].
    pub async fn get<E, F, Fut>(&self, compute: F) -> Result<Arc<T>, CoalescedError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let arrived = Instant::now();
        let mut last = self.last.lock().await;
        if let Some(done) = last.as_ref() {
            if done.started >= arrived {
                return done.value.clone().ok_or(CoalescedError::SharedFailed);
            }
        }
        let started = Instant::now();
        let result = compute().await.map(Arc::new);
        *last = Some(Computed {
            started,
            value: result.as_ref().ok().cloned(),
        });
        result.map_err(CoalescedError::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn a_caller_never_gets_a_value_computed_before_it_arrived() {
        let shared = Coalesced::<u32>::default();
        let counter = AtomicU32::new(0);
        let compute = || async { Ok::<_, ()>(counter.fetch_add(1, Ordering::SeqCst)) };
        assert_eq!(*shared.get(compute).await.unwrap(), 0);
        // Sequential callers each compute afresh.
        assert_eq!(*shared.get(compute).await.unwrap(), 1);
        assert_eq!(counter.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_callers_share_the_next_computation() {
        let shared = Coalesced::<u32>::default();
        let computations = Arc::new(AtomicU32::new(0));
        let slow = |computations: Arc<AtomicU32>| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, ()>(computations.fetch_add(1, Ordering::SeqCst))
        };
        // The first caller starts a computation; 20 arrive while it runs.
        let first = tokio::spawn({
            let shared = shared.clone();
            let computations = computations.clone();
            async move { *shared.get(|| slow(computations)).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let waiters: Vec<_> = (0..20)
            .map(|_| {
                let shared = shared.clone();
                let computations = computations.clone();
                tokio::spawn(async move { *shared.get(|| slow(computations)).await.unwrap() })
            })
            .collect();
        assert_eq!(first.await.unwrap(), 0);
        for waiter in waiters {
            // Not the first computation (it started before they arrived), and
            // all of them served by the single second one.
            assert_eq!(waiter.await.unwrap(), 1);
        }
        assert_eq!(computations.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failure_fails_the_callers_it_served_but_not_later_ones() {
        let shared = Coalesced::<u32>::default();
        let attempts = Arc::new(AtomicU32::new(0));
        let failing = |attempts: Arc<AtomicU32>| async move {
            attempts.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err::<u32, _>(std::fmt::Error)
        };
        let first = tokio::spawn({
            let (shared, attempts) = (shared.clone(), attempts.clone());
            async move { shared.get(|| failing(attempts)).await.map(|v| *v) }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let (shared, attempts) = (shared.clone(), attempts.clone());
                tokio::spawn(async move { shared.get(|| failing(attempts)).await.map(|v| *v) })
            })
            .collect();
        assert!(matches!(
            first.await.unwrap(),
            Err(CoalescedError::Failed(_))
        ));
        let mut own = 0;
        for waiter in waiters {
            match waiter.await.unwrap() {
                Err(CoalescedError::Failed(_)) => own += 1,
                Err(CoalescedError::SharedFailed) => {}
                Ok(value) => panic!("a failing computation gave {value}"),
            }
        }
        // One waiter ran the second computation; the other four shared its failure.
        assert_eq!(own, 1);
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        // A later caller computes afresh.
        assert_eq!(*shared.get(|| async { Ok::<_, ()>(7) }).await.unwrap(), 7);
    }
}
