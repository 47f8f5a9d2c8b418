//! [`FilteringResolver`]: name resolution that drops every address the
//! [`EgressPolicy`] refuses.
//!
//! Both HTTP clients connect only to addresses their resolver returned, so a name
//! is judged by what it resolved to at the moment of connecting (a DNS answer that
//! changes between a check and the connection cannot slip through). IP literals
//! never reach a resolver; the prober checks those before sending.

use crate::egress::{Blocked, EgressPolicy};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Resolving = Pin<Box<dyn Future<Output = Result<Vec<SocketAddr>, BoxError>> + Send>>;

/// Resolves names with the system resolver (`getaddrinfo`) and keeps only the
/// addresses the policy allows; when none is left the error is the first
/// [`Blocked`].
#[derive(Clone, Debug)]
pub(crate) struct FilteringResolver {
    policy: Arc<EgressPolicy>,
}

/// A name resolved to no address at all.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolved to no address")]
struct NoAddress(String);

impl FilteringResolver {
    /// A resolver applying `policy`.
    pub(crate) fn new(policy: Arc<EgressPolicy>) -> FilteringResolver {
        FilteringResolver { policy }
    }

    fn resolving(&self, name: &str) -> Resolving {
        let policy = self.policy.clone();
        let name = name.to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            filter(&policy, &name, found)
        })
    }
}

/// The allowed subset of `found`, or why nothing is.
fn filter(
    policy: &EgressPolicy,
    name: &str,
    found: impl IntoIterator<Item = SocketAddr>,
) -> Result<Vec<SocketAddr>, BoxError> {
    let mut allowed = Vec::new();
    let mut refused: Option<Blocked> = None;
    for addr in found {
        match policy.check(Some(name), addr.ip()) {
            Ok(()) => allowed.push(addr),
            Err(blocked) => {
                tracing::debug!(%blocked, "resolved address dropped");
                refused.get_or_insert(blocked);
            }
        }
    }
    match refused {
        Some(blocked) if allowed.is_empty() => Err(Box::new(blocked)),
        _ if allowed.is_empty() => Err(Box::new(NoAddress(name.to_owned()))),
        _ => Ok(allowed),
    }
}

impl reqwest::dns::Resolve for FilteringResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolving = self.resolving(name.as_str());
        Box::pin(async move {
            let addrs = resolving.await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl tower::Service<hyper_util::client::legacy::connect::dns::Name> for FilteringResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let resolving = self.resolving(name.as_str());
        Box::pin(async move { Ok(resolving.await?.into_iter()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::BlockReason;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn keeps_only_allowed_addresses() {
        let policy = EgressPolicy::parse(&["127.0.0.2/32".into()]).unwrap();
        let kept = filter(
            &policy,
            "example.test",
            [addr("127.0.0.1:0"), addr("127.0.0.2:0"), addr("[::1]:0")],
        )
        .unwrap();
        assert_eq!(kept, vec![addr("127.0.0.2:0")]);
    }

    #[test]
    fn nothing_allowed_is_the_first_block() {
        let policy = EgressPolicy::default();
        let error = filter(
            &policy,
            "metadata.test",
            [addr("169.254.169.254:0"), addr("[fe80::1]:0")],
        )
        .unwrap_err();
        let blocked = error.downcast_ref::<Blocked>().unwrap();
        assert_eq!(blocked.address.to_string(), "169.254.169.254");
        assert_eq!(blocked.host.as_deref(), Some("metadata.test"));
        assert_eq!(
            blocked.reason,
            BlockReason::AlwaysBlocked("link-local/cloud metadata")
        );
        let none = filter(&policy, "empty.test", []).unwrap_err();
        assert!(none.to_string().contains("no address"), "{none}");
    }

    #[tokio::test]
    async fn resolves_names_through_the_policy() {
        let only_two = Arc::new(EgressPolicy::parse(&["127.0.0.2/32".into()]).unwrap());
        let error = FilteringResolver::new(only_two)
            .resolving("localhost")
            .await
            .unwrap_err();
        assert!(error.downcast_ref::<Blocked>().is_some(), "{error}");
        let open = FilteringResolver::new(Arc::new(EgressPolicy::default()));
        let found = open.resolving("localhost").await.unwrap();
        assert!(found.iter().all(|a| a.ip().is_loopback()), "{found:?}");
    }
}
