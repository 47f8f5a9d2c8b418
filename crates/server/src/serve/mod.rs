//! The one accept loop, for plain HTTP and HTTPS: hyper's HTTP/1.1
//! connections with a header-read timeout, an idle (keep-alive) timeout, a
//! bound on writes a client does not read, a TLS handshake timeout and a
//! connection limit, and graceful draining at shutdown.
//!
//! At the limit, a new connection closes the connection that has been idle
//! longest; when none is idle it is refused at once (plain HTTP: a 503
//! envelope). A closed connection's descriptor is freed a moment after it
//! stops counting; the headroom below the descriptor limit covers that. An `accept` failure such as running out of file descriptors
//! sheds the oldest idle connection and backs off instead of spinning.

mod connection;
mod rewrite;

use crate::front::MAX_HEAD_BYTES;
use axum::extract::ConnectInfo;
use axum::Router;
use connection::{Closed, ConnState, Guarded, Timeouts, Tracked};
use fleetreg_model::ErrorCode;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::Service;

/// How long open connections may take to finish after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The first and the longest wait after a failed `accept`.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// File descriptors kept free for everything but client connections (the
/// database pool, health checks, Redis, files): a quarter of the limit, at
/// least this many.
const FD_HEADROOM: u64 = 256;

/// The smallest connection limit derived from the file-descriptor limit.
const MIN_CONNECTIONS: u64 = 64;

/// The largest default limit, whatever the file-descriptor limit (containers
/// often allow a million): each connection holds buffers, so memory runs out
/// long before such a number. A larger `http.max_connections` may be set.
const MAX_DEFAULT_CONNECTIONS: u64 = 16_384;

/// The timeouts and limit of the accept loop (`http:` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest time from a connection's start, or from the first byte of a
    /// request, to the end of the request head.
    pub header_read_timeout: Duration,
    /// Longest time a connection may stay open between requests, and a write
    /// may wait for a client that does not read.
    pub idle_timeout: Duration,
    /// Longest TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// The connection limit when none is configured: the soft `RLIMIT_NOFILE`
/// minus headroom (a quarter of it, at least 256), at least 64, at most
/// 16,384.
pub fn default_max_connections() -> usize {
    let soft = soft_fd_limit().min(1 << 24);
    let limit = soft
        .saturating_sub((soft / 4).max(FD_HEADROOM))
        .clamp(MIN_CONNECTIONS, MAX_DEFAULT_CONNECTIONS);
    usize::try_from(limit).unwrap_or(usize::MAX)
}

#[cfg(unix)]
fn soft_fd_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

#[cfg(not(unix))]
fn soft_fd_limit() -> u64 {
    1024
}

/// The open connections, for the limit and for shedding.
struct Registry {
    max: usize,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
}

/// A place in the [`Registry`], given back when dropped.
struct Slot {
    id: u64,
    state: Arc<ConnState>,
    registry: Arc<Registry>,
}

impl Registry {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(Registry {
            max: max.max(1),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Tells the connection idle the longest to close and forgets it (its
    /// descriptor goes a moment later); false when none is idle.
    fn shed_oldest_idle(open: &mut HashMap<u64, Arc<ConnState>>) -> bool {
        let victim = open
            .iter()
            .filter(|(_, c)| c.is_idle())
            .min_by_key(|(_, c)| c.idle_since())
            .map(|(id, _)| *id);
        match victim.and_then(|id| open.remove(&id)) {
            Some(victim) => {
                victim.shed.cancel();
                ::metrics::gauge!(crate::metrics::HTTP_CONNECTIONS).decrement(1.0);
                true
            }
            None => false,
        }
    }

    /// A slot for a new connection, shedding the oldest idle one at the
    /// limit; `None` when the limit is reached and nothing is idle.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= self.max && !Self::shed_oldest_idle(&mut open) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState::new());
        open.insert(id, state.clone());
        ::metrics::gauge!(crate::metrics::HTTP_CONNECTIONS).increment(1.0);
        Some(Slot {
            id,
            state,
            registry: self.clone(),
        })
    }

    /// Sheds the oldest idle connection (after `accept` ran out of descriptors).
    fn relieve(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        Self::shed_oldest_idle(&mut open);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.registry.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.remove(&self.id).is_some() {
            ::metrics::gauge!(crate::metrics::HTTP_CONNECTIONS).decrement(1.0);
        }
    }
}

/// Counts a connection the server closed, by reason.
fn closed(reason: &'static str) {
    ::metrics::counter!(crate::metrics::HTTP_CONNECTIONS_CLOSED, "reason" => reason).increment(1);
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown`,
/// then lets open connections finish (bounded by [`DRAIN_TIMEOUT`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let registry = Registry::new(limits.max_connections);
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    // No hyper timer: with one, hyper applies its own header timeout to idle
    // kept-alive connections too; the watchdog applies ours.
    builder.max_header_size(MAX_HEAD_BYTES).keep_alive(true);
    let builder = Arc::new(builder);
    let mut backoff = ACCEPT_BACKOFF.0;
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff = ACCEPT_BACKOFF.0;
                    accepted
                }
                Err(error) if is_per_connection(&error) => continue,
                Err(error) => {
                    // Out of file descriptors and the like: make room, wait, retry.
                    tracing::warn!(%error, retry_in = ?backoff, "accept failed");
                    registry.relieve();
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = &mut shutdown => break,
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = registry.admit() else {
            refuse(tcp, acceptor.is_none());
            continue;
        };
        let connection = Connection {
            peer,
            slot,
            builder: builder.clone(),
            router: router.clone(),
            watcher: graceful.watcher(),
            timeouts: Timeouts {
                header_read: limits.header_read_timeout,
                idle: limits.idle_timeout,
            },
        };
        let acceptor = acceptor.clone();
        let handshake = limits.tls_handshake_timeout;
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            match acceptor {
                None => connection.serve(tcp).await,
                Some(acceptor) => {
                    let state = connection.slot.state.clone();
                    let accept = tokio::time::timeout(handshake, acceptor.accept(tcp));
                    let tls = tokio::select! {
                        accepted = accept => match accepted {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(error)) => {
                                tracing::debug!(%error, %peer, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                closed("tls_handshake_timeout");
                                return;
                            }
                        },
                        () = state.shed.cancelled() => {
                            closed(Closed::Shed.as_str());
                            return;
                        }
                    };
                    state.restart_head_timer();
                    connection.serve(tls).await;
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
    Ok(())
}

/// `accept` errors about one connection (the next one may work at once).
fn is_per_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}

/// Turns a connection away at the limit: plain HTTP gets a 503 envelope if
/// the socket takes it at once; TLS connections are closed.
fn refuse(tcp: TcpStream, plain: bool) {
    closed("refused");
    if plain {
        let answer = rewrite::envelope_response(
            ErrorCode::ServiceUnavailable,
            crate::error::ApiError::new(
                ErrorCode::ServiceUnavailable,
                "too many open connections; try again later",
            ),
            None,
            &uuid::Uuid::new_v4().to_string(),
        );
        let _ = tcp.try_write(&answer);
    }
}

/// What serving one accepted connection needs.
struct Connection {
    peer: SocketAddr,
    slot: Slot,
    builder: Arc<http1::Builder>,
    router: Router,
    watcher: Watcher,
    timeouts: Timeouts,
}

impl Connection {
    /// Serves HTTP/1.1 on `io` until the client or hyper ends the
    /// connection, the watchdog closes it, or shutdown drains it.
    async fn serve<IO>(self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            peer,
            slot,
            builder,
            router,
            watcher,
            timeouts,
        } = self;
        let state = slot.state.clone();
        let service = {
            let state = state.clone();
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                let busy = state.dispatch();
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                let answer = router.clone().call(request);
                async move {
                    let response = answer.await?;
                    Ok::<_, Infallible>(response.map(|body| Guarded { body, _busy: busy }))
                }
            })
        };
        let connection =
            builder.serve_connection(TokioIo::new(Tracked::new(io, state.clone())), service);
        tokio::select! {
            result = watcher.watch(connection) => {
                if let Err(error) = result {
                    tracing::debug!(%error, %peer, "connection ended");
                }
            }
            reason = state.watchdog(timeouts) => {
                tracing::debug!(%peer, reason = reason.as_str(), "closing connection");
                closed(reason.as_str());
            }
        }
        drop(slot);
    }
}
