//! [`NodeChecker`]: one HTTP request through an edge node's proxy, the sync
//! controller's health check of a VPS (issue 13 item 10, `edge.http_check`).
//!
//! The request goes to the node's registered IP address, never to a name: a
//! hostname the node carries is sent as `Host` and, for
//! https, as SNI, but it is pinned to that address (reqwest's `resolve`
//! override), so nothing is looked up in DNS. The address is checked against
//! the [`EgressPolicy`] first; the caller picks the policy (the server uses
//! the default one: the always-blocked link-local and cloud metadata ranges,
//! everything else allowed, loopback included, because node addresses are
//! IP literals an operator registered, not names read from a cluster).
//! https servers are verified against the web PKI roots and an optional CA
//! bundle. No proxy is used,
//! redirects are not followed (a 3xx is an answer), the body is never read,
//! and each check opens its own connection.

use crate::egress::EgressPolicy;
use crate::Error;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Where one check goes: `scheme://host:port/path` sent to `address:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTarget {
    /// https (verified against the web PKI roots) instead of http.
    pub https: bool,
    /// The node's address: the only one connected to.
    pub address: IpAddr,
    /// The port.
    pub port: u16,
    /// The request path, starting with `/`.
    pub path: String,
    /// The hostname sent as `Host` (and SNI), pinned to `address`; `None`
    /// sends the address itself.
    pub host: Option<String>,
}

impl NodeTarget {
    /// The URL requested: the host name (or the address) with the port.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let host = match (&self.host, self.address) {
            (Some(host), _) => host.clone(),
            (None, IpAddr::V4(v4)) => v4.to_string(),
            (None, IpAddr::V6(v6)) => format!("[{v6}]"),
        };
        format!("{scheme}://{host}:{}{}", self.port, self.path)
    }
}

/// What one check found: passed (any answer below 500) or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCheck {
    /// The answer's status, when there was one.
    pub status: Option<u16>,
    /// Why the check failed (escaped, bounded); `None` when it passed.
    pub error: Option<String>,
    /// Whether the node's proxy is alive: it answered, or, when the request
    /// went unanswered in time, it answered one without the hostname (no
    /// route: the proxy's own answer) or spoke TLS. `false` when it refused,
    /// reset or failed the connection or the TLS handshake, or was silent.
    pub proxy_alive: bool,
}

impl NodeCheck {
    /// Whether the node answered with a status below 500.
    pub fn passed(&self) -> bool {
        self.error.is_none()
    }

    /// Whether the proxy is alive and what stands behind it failed the
    /// request: an answer 502 (bad gateway), 503 (unavailable) or 504
    /// (gateway timeout), or no answer in time from a proxy that answers
    /// without the hostname (a proxy retries a dead upstream for a while,
    /// Caddy 5 s as fleetreg renders it). The node is up; the service it
    /// forwarded the check to is not answering.
    pub fn upstream_failed(&self) -> bool {
        self.proxy_alive && matches!(self.status, None | Some(502..=504))
    }

    fn failed(error: String) -> NodeCheck {
        NodeCheck {
            status: None,
            error: Some(error),
            proxy_alive: false,
        }
    }
}

/// Checks edge nodes under an egress policy. Cheap to clone.
#[derive(Clone)]
pub struct NodeChecker {
    policy: Arc<EgressPolicy>,
    extra_roots: Arc<[reqwest::Certificate]>,
}

impl std::fmt::Debug for NodeChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeChecker")
            .field("policy", &self.policy)
            .field("extra_roots", &self.extra_roots.len())
            .finish()
    }
}

impl NodeChecker {
    /// A checker connecting only to addresses `policy` allows, verifying
    /// https nodes against the web PKI roots and the certificates of
    /// `extra_ca_pem` (PEM text, e.g. the CA of the nodes' internal
    /// certificates; `None` for the roots alone).
    pub fn new(policy: EgressPolicy, extra_ca_pem: Option<&str>) -> Result<NodeChecker, Error> {
        let extra_roots = match extra_ca_pem {
            Some(pem) => crate::pki::reqwest_roots(pem)?,
            None => Vec::new(),
        };
        Ok(NodeChecker {
            policy: Arc::new(policy),
            extra_roots: extra_roots.into(),
        })
    }

    /// `GET target`, answered within `timeout` (connecting and the TLS
    /// handshake included). Passes on any status below 500; a refused
    /// address, a transport error, no answer in time or a 5xx fails it. When
    /// a request with a hostname goes unanswered, a second one without it
    /// (that no route matches, so the proxy answers it itself) tells a
    /// proxy that is waiting on its upstream from one that hangs
    /// ([`NodeCheck::proxy_alive`]); the check then takes up to twice
    /// `timeout`.
    pub async fn check(&self, target: &NodeTarget, timeout: Duration) -> NodeCheck {
        if let Err(blocked) = self.policy.check(None, target.address) {
            return NodeCheck::failed(format!(
                "not connecting to {}: {}",
                blocked.address, blocked.reason
            ));
        }
        let socket = SocketAddr::new(target.address, target.port);
        match self.request(target, socket, timeout).await {
            Ok(status) => NodeCheck {
                status: Some(status),
                error: (status >= 500).then(|| format!("{socket} answered HTTP {status}")),
                proxy_alive: true,
            },
            Err(Unanswered::Error { description, .. }) => NodeCheck::failed(description),
            Err(Unanswered::Late) => {
                let bare = NodeTarget {
                    host: None,
                    ..target.clone()
                };
                let proxy_alive = target.host.is_some()
                    && match self.request(&bare, socket, timeout).await {
                        Ok(_) => true,
                        // The proxy spoke TLS (an alert, or a certificate
                        // not valid for the address).
                        Err(Unanswered::Error { tls, .. }) => tls,
                        Err(Unanswered::Late) => false,
                    };
                let also = if !proxy_alive && target.host.is_some() {
                    ", nor without the hostname"
                } else {
                    ""
                };
                NodeCheck {
                    proxy_alive,
                    ..NodeCheck::failed(format!(
                        "no answer from {socket} within {} ms{also}",
                        timeout.as_millis()
                    ))
                }
            }
        }
    }

    /// `GET target` on its own connection to `socket`: the answer's status.
    async fn request(
        &self,
        target: &NodeTarget,
        socket: SocketAddr,
        timeout: Duration,
    ) -> Result<u16, Unanswered> {
        // One client per check: the hostname is pinned to this node's
        // address, and another node may carry the same hostname.
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .user_agent(concat!("fleetreg-edge-check/", env!("CARGO_PKG_VERSION")));
        if let Some(host) = &target.host {
            builder = builder.resolve(host, socket);
        }
        for root in self.extra_roots.iter() {
            builder = builder.add_root_certificate(root.clone());
        }
        let client = builder.build().map_err(|error| Unanswered::Error {
            description: format!("setup: {}", innermost(&error)),
            tls: false,
        })?;
        match tokio::time::timeout(timeout, client.get(target.url()).send()).await {
            Err(_) => Err(Unanswered::Late),
            Ok(Err(error)) => Err(Unanswered::Error {
                description: describe(&error, socket),
                tls: crate::url_check::is_tls(&error),
            }),
            Ok(Ok(response)) => Ok(response.status().as_u16()),
        }
    }
}

/// Why a request got no status.
enum Unanswered {
    /// No answer within the timeout.
    Late,
    /// A transport error: described ([`describe`]), and whether it was
    /// the TLS handshake's (the peer spoke TLS).
    Error { description: String, tls: bool },
}

/// A failed request in a few words: what failed (connecting, TLS, the
/// exchange) and the innermost cause, e.g. `connect to 127.0.0.2:80:
/// Connection refused (os error 111)`.
fn describe(error: &reqwest::Error, socket: SocketAddr) -> String {
    let what = if crate::url_check::is_tls(error) {
        "TLS with"
    } else if error.is_connect() {
        "connect to"
    } else if error.is_timeout() {
        "timed out on"
    } else {
        "request to"
    };
    format!("{what} {socket}: {}", innermost(error))
}

/// The innermost cause of `error`, escaped and bounded
/// ([`crate::escape_remote`]: a protocol error may quote the peer).
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(inner) = current.source() {
        current = inner;
    }
    crate::escape_remote(&current.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A one-connection-at-a-time HTTP server on `address` answering `answer`
    /// to everything, handing each request head to `heads`.
    fn server(address: &str, answer: &'static str) -> (u16, std::sync::mpsc::Receiver<String>) {
        let listener = std::net::TcpListener::bind((address, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buffer = [0u8; 4096];
                let n = stream.read(&mut buffer).unwrap_or(0);
                let _ = tx.send(String::from_utf8_lossy(&buffer[..n]).into_owned());
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        (port, rx)
    }

    fn target(address: &str, port: u16, host: Option<&str>) -> NodeTarget {
        NodeTarget {
            https: false,
            address: address.parse().unwrap(),
            port,
            path: "/healthz".into(),
            host: host.map(str::to_owned),
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn any_answer_below_500_passes_with_the_hostname_pinned() {
        let (port, heads) = server(
            "127.0.0.2",
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let checker = NodeChecker::new(EgressPolicy::default(), None).unwrap();
        // The name resolves nowhere: only the pin reaches 127.0.0.2.
        let check = checker
            .check(
                &target("127.0.0.2", port, Some("photos.example.invalid")),
                SECOND,
            )
            .await;
        assert!(check.passed(), "{check:?}");
        assert_eq!(check.status, Some(404));
        let head = heads.recv().unwrap();
        assert!(head.starts_with("GET /healthz HTTP/1.1\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("host: photos.example.invalid:{port}\r\n")),
            "{head}"
        );
        let by_address = checker
            .check(&target("127.0.0.2", port, None), SECOND)
            .await;
        assert!(by_address.passed(), "{by_address:?}");
        let head = heads.recv().unwrap();
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("host: 127.0.0.2:{port}\r\n")),
            "{head}"
        );
    }

    #[tokio::test]
    async fn a_5xx_a_refusal_and_silence_fail() {
        let (port, _heads) = server(
            "127.0.0.1",
            "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let checker = NodeChecker::new(EgressPolicy::default(), None).unwrap();
        let bad = checker
            .check(&target("127.0.0.1", port, None), SECOND)
            .await;
        assert_eq!(bad.status, Some(502));
        assert!(bad.upstream_failed(), "a gateway's answer: {bad:?}");
        assert_eq!(
            bad.error.as_deref(),
            Some(format!("127.0.0.1:{port} answered HTTP 502").as_str())
        );

        let closed = fleetreg_free_port();
        let refused = checker
            .check(&target("127.0.0.1", closed, None), SECOND)
            .await;
        assert!(!refused.upstream_failed(), "{refused:?}");
        let error = refused.error.unwrap();
        assert!(
            error.starts_with(&format!("connect to 127.0.0.1:{closed}: "))
                && error.to_lowercase().contains("refused"),
            "{error}"
        );

        // Accepts, never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let slow = checker
            .check(&target("127.0.0.1", port, None), Duration::from_millis(200))
            .await;
        assert_eq!(
            slow.error.as_deref(),
            Some(format!("no answer from 127.0.0.1:{port} within 200 ms").as_str())
        );
        assert!(!slow.upstream_failed(), "silent: {slow:?}");
        let slow = checker
            .check(
                &target("127.0.0.1", port, Some("photos.example.invalid")),
                Duration::from_millis(200),
            )
            .await;
        assert_eq!(
            slow.error.as_deref(),
            Some(
                format!("no answer from 127.0.0.1:{port} within 200 ms, nor without the hostname")
                    .as_str()
            )
        );
        assert!(!slow.upstream_failed(), "silent twice: {slow:?}");
    }

    #[tokio::test]
    async fn silence_on_a_route_from_a_proxy_that_answers_otherwise_is_the_upstreams() {
        // A proxy retrying a dead upstream: the routed hostname waits, any
        // other request is answered at once.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buffer = [0u8; 4096];
                let n = stream.read(&mut buffer).unwrap_or(0);
                let head = String::from_utf8_lossy(&buffer[..n]).to_ascii_lowercase();
                if head.contains("host: photos.example.invalid") {
                    held.push(stream);
                } else {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            }
        });
        let checker = NodeChecker::new(EgressPolicy::default(), None).unwrap();
        let retrying = checker
            .check(
                &target("127.0.0.1", port, Some("photos.example.invalid")),
                Duration::from_millis(200),
            )
            .await;
        assert_eq!(
            retrying.error.as_deref(),
            Some(format!("no answer from 127.0.0.1:{port} within 200 ms").as_str())
        );
        assert!(retrying.upstream_failed(), "{retrying:?}");
    }

    #[tokio::test]
    async fn blocked_addresses_are_never_connected_to() {
        let checker = NodeChecker::new(EgressPolicy::default(), None).unwrap();
        let metadata = checker
            .check(
                &target("169.254.169.254", 80, Some("a.example.com")),
                SECOND,
            )
            .await;
        assert_eq!(
            metadata.error.as_deref(),
            Some("not connecting to 169.254.169.254: link-local/cloud metadata")
        );
        let only_two = EgressPolicy::parse(&["127.0.0.2/32".into()]).unwrap();
        let refused = NodeChecker::new(only_two, None)
            .unwrap()
            .check(&target("127.0.0.1", 9, None), SECOND)
            .await;
        assert_eq!(
            refused.error.as_deref(),
            Some("not connecting to 127.0.0.1: not in an allowed network")
        );
    }

    #[test]
    fn urls_bracket_ipv6_addresses() {
        let mut target = target("::1", 8443, None);
        target.https = true;
        assert_eq!(target.url(), "https://[::1]:8443/healthz");
        target.host = Some("photos.curiios.com".into());
        assert_eq!(target.url(), "https://photos.curiios.com:8443/healthz");
    }

    /// A loopback port nothing listens on a moment ago.
    fn fleetreg_free_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }
}
