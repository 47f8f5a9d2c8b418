//! The one accept loop, for plain HTTP and HTTPS: hyper's HTTP/1.1 and
//! HTTP/2 connections ([`protocol`]) with a header-read timeout, an idle
//! (keep-alive) timeout, a bound on writes a client does not read, a TLS
//! handshake timeout and a connection limit, and graceful draining at
//! shutdown.
//!
//! At the limit, a new connection closes the connection that has been idle
//! longest; when none is idle it is refused at once (plain HTTP: a 503
//! envelope). A closed connection's descriptor is freed a moment after it
//! stops counting; the headroom below the descriptor limit covers that. An `accept` failure such as running out of file descriptors
//! sheds the oldest idle connection and backs off instead of spinning.

mod connection;
mod protocol;
mod rewrite;

use axum::extract::ConnectInfo;
use axum::Router;
use connection::{Closed, ConnState, Guarded, Timeouts, Tracked};
use fleetreg_model::ErrorCode;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use protocol::{Protocol, Protocols};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::Service;

/// How long open connections may take to finish after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The first and the longest wait after a failed `accept`.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// File descriptors kept free for everything but client connections (the
/// database pool, health checks, Redis, files): a quarter of the limit, at
/// least this many.
const FD_HEADROOM: u64 = 256;

/// The listen backlog asked for (the kernel caps it at `net.core.somaxconn`,
/// 4,096 on current Linux): a fleet of agents reconnecting at once (a
/// restart, a network blip) must not overflow the accept queue, where each
/// dropped SYN costs its client a second. `TcpListener::bind` asks for 128.
pub const LISTEN_BACKLOG: u32 = 4096;

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

/// Binds `addr` for [`serve`]: `SO_REUSEADDR` on Unix (as
/// `TcpListener::bind` sets it: a restarted server rebinds at once) and a
/// [`LISTEN_BACKLOG`] accept queue.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
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
    // Connections not yet past `protocol::sniff` are not watched yet.
    let stopping = CancellationToken::new();
    let protocols = Arc::new(Protocols::new());
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
            protocols: protocols.clone(),
            router: router.clone(),
            watcher: graceful.watcher(),
            stopping: stopping.clone(),
            timeouts: Timeouts {
                header_read: limits.header_read_timeout,
                idle: limits.idle_timeout,
            },
        };
        let _ = tcp.set_nodelay(true);
        let tls = acceptor
            .clone()
            .map(|acceptor| (acceptor, limits.tls_handshake_timeout));
        tokio::spawn(connection_task(connection, tcp, tls));
    }
    drop(listener);
    stopping.cancel();
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
    Ok(())
}

/// What serves one accepted connection, over TLS when `tls` (its acceptor
/// and handshake time limit) is given. Its size is what the connection costs
/// for its whole life: a plain connection's is ~1.6 KB, where one future
/// that could also run a TLS handshake was ~10 KB (docs/BENCHMARKS.md).
fn connection_task(
    connection: Connection,
    tcp: TcpStream,
    tls: Option<(TlsAcceptor, Duration)>,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    match tls {
        None => Box::pin(connection.serve(tcp)),
        Some((acceptor, handshake)) => Box::pin(connection.serve_tls(tcp, acceptor, handshake)),
    }
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
    protocols: Arc<Protocols>,
    router: Router,
    watcher: Watcher,
    stopping: CancellationToken,
    timeouts: Timeouts,
}

impl Connection {
    /// Completes the TLS handshake within `handshake` (or until the
    /// connection is shed), then serves the connection as [`Self::serve`].
    async fn serve_tls(self, tcp: TcpStream, acceptor: TlsAcceptor, handshake: Duration) {
        let state = self.slot.state.clone();
        let peer = self.peer;
        // On the heap: freed once done, not kept in the task for the
        // connection's life.
        let accept = Box::pin(tokio::time::timeout(handshake, acceptor.accept(tcp)));
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
        self.serve(tls).await;
    }

    /// Serves HTTP/1.1 or HTTP/2 on `io` until the client or hyper ends the
    /// connection, the watchdog closes it, or shutdown drains it.
    async fn serve<IO>(self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            peer,
            slot,
            protocols,
            router,
            watcher,
            stopping,
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
        let connection = async {
            let sniffed = tokio::select! {
                sniffed = protocol::sniff(Tracked::new(io, state.clone())) => sniffed?,
                // Not watched yet: shutdown would wait for the header timeout.
                () = stopping.cancelled() => return Ok(()),
            };
            // Each protocol's connection on the heap, so that the task's
            // future is not as large as the larger of the two.
            match sniffed {
                (Protocol::Http1, io) => {
                    let connection = protocols.http1.serve_connection(TokioIo::new(io), service);
                    Box::pin(watcher.watch(connection)).await
                }
                (Protocol::Http2, mut io) => {
                    io.get_mut().http2();
                    let connection = protocols.http2.serve_connection(TokioIo::new(io), service);
                    Box::pin(watcher.watch(connection)).await
                }
            }
            .map_err(std::io::Error::other)
        };
        tokio::select! {
            result = connection => {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's task is as large as its future for the connection's
    /// whole life (a thousand idle agents hold a thousand of them).
    #[tokio::test]
    async fn a_plain_connections_task_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let connection = Connection {
            peer: tcp.local_addr().unwrap(),
            slot: Registry::new(1).admit().unwrap(),
            protocols: Arc::new(Protocols::new()),
            router: Router::new(),
            watcher: GracefulShutdown::new().watcher(),
            stopping: CancellationToken::new(),
            timeouts: Timeouts {
                header_read: Duration::from_secs(1),
                idle: Duration::from_secs(1),
            },
        };
        let task = connection_task(connection, tcp, None);
        let size = std::mem::size_of_val(&*task);
        eprintln!("a plain connection's future: {size} bytes");
        // 10 KB when the task could also run a TLS handshake (release build).
        assert!(size <= 4096, "{size} bytes");
    }
}
