//! One connection as the accept loop sees it: whether a request is in
//! progress, since when it has been idle or reading a request head, whether
//! writes are stalled; the watchdog that closes it when a timeout passes; and
//! the IO wrapper ([`Tracked`]) and response body ([`Guarded`]) that keep that
//! state current.

use super::rewrite;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Milliseconds on a process-wide monotonic clock; never 0 (0 means "unset").
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let elapsed = START.get_or_init(Instant::now).elapsed().as_millis();
    u64::try_from(elapsed).unwrap_or(u64::MAX - 1) + 1
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX / 2)
}

/// The timeouts the watchdog applies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// From the first byte of a request head (or the connection's start) to
    /// the complete head.
    pub header_read: Duration,
    /// Between requests on a kept-alive connection, and the longest a write
    /// may stay blocked on a client that does not read.
    pub idle: Duration,
}

/// Why the server closed a connection (the `reason` label of
/// `fleetreg_http_connections_closed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// No complete request head within `header_read_timeout_seconds`.
    HeaderTimeout,
    /// Idle longer than `idle_timeout_seconds`.
    IdleTimeout,
    /// The client read nothing of an answer for `idle_timeout_seconds`.
    WriteStalled,
    /// Closed to make room for a new connection at the limit.
    Shed,
}

impl Closed {
    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::WriteStalled => "write_stalled",
            Closed::Shed => "shed",
        }
    }
}

/// The shared state of one connection.
#[derive(Debug)]
pub(crate) struct ConnState {
    /// Requests handed to the router whose answer is not completely written.
    busy: AtomicU32,
    /// When the connection last became idle (accepted, or its last answer done).
    idle_since: AtomicU64,
    /// When the first byte of a request head not yet dispatched arrived, or
    /// when the connection started waiting for its first request (0: none).
    head_started: AtomicU64,
    /// Since when a write has been waiting for the client to read (0: none).
    write_blocked_since: AtomicU64,
    /// Wakes the watchdog when a deadline may have moved closer.
    changed: Notify,
    /// Cancelled to close the connection at once (shedding).
    pub(crate) shed: CancellationToken,
}

impl ConnState {
    /// A connection accepted now, waiting for its first request head.
    pub(crate) fn new() -> Self {
        let now = now_ms();
        ConnState {
            busy: AtomicU32::new(0),
            idle_since: AtomicU64::new(now),
            head_started: AtomicU64::new(now),
            write_blocked_since: AtomicU64::new(0),
            changed: Notify::new(),
            shed: CancellationToken::new(),
        }
    }

    /// Whether no request is in progress (reading a head counts as idle).
    pub(crate) fn is_idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }

    /// Since when the connection has been idle (for shedding the oldest).
    pub(crate) fn idle_since(&self) -> u64 {
        self.idle_since.load(Ordering::Acquire)
    }

    /// The header timer starts again now (after the TLS handshake).
    pub(crate) fn restart_head_timer(&self) {
        self.head_started.store(now_ms(), Ordering::Release);
    }

    /// A request head was parsed and handed to the router; the returned
    /// guard ends the request when its answer is written or dropped.
    pub(crate) fn dispatch(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(0, Ordering::Release);
        BusyGuard(self.clone())
    }

    fn on_read(&self) {
        if self.is_idle()
            && self
                .head_started
                .compare_exchange(0, now_ms(), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }

    fn on_write(&self, blocked: bool) {
        if !blocked {
            self.write_blocked_since.store(0, Ordering::Release);
        } else if self
            .write_blocked_since
            .compare_exchange(0, now_ms(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.changed.notify_one();
        }
    }

    /// The next deadline and what passing it means; `None` while a request
    /// is in progress and its answer is flowing.
    fn deadline(&self, timeouts: &Timeouts) -> Option<(u64, Closed)> {
        let blocked = self.write_blocked_since.load(Ordering::Acquire);
        if blocked != 0 {
            return Some((blocked + millis(timeouts.idle), Closed::WriteStalled));
        }
        if !self.is_idle() {
            return None;
        }
        match self.head_started.load(Ordering::Acquire) {
            0 => Some((
                self.idle_since() + millis(timeouts.idle),
                Closed::IdleTimeout,
            )),
            head => Some((head + millis(timeouts.header_read), Closed::HeaderTimeout)),
        }
    }

    /// Completes when the connection must be closed, saying why.
    pub(crate) async fn watchdog(&self, timeouts: Timeouts) -> Closed {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wait = match self.deadline(&timeouts) {
                Some((at, reason)) => match at.checked_sub(now_ms()) {
                    Some(left) if left > 0 => Duration::from_millis(left),
                    _ => return reason,
                },
                // In a request: look again after a while; changes wake us sooner.
                None => timeouts.idle,
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = &mut changed => {}
                () = self.shed.cancelled() => return Closed::Shed,
            }
        }
    }
}

/// Ends a request (see [`ConnState::dispatch`]).
#[derive(Debug)]
pub(crate) struct BusyGuard(Arc<ConnState>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let state = &self.0;
        state.idle_since.store(now_ms(), Ordering::Release);
        if state.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            state.changed.notify_one();
        }
    }
}

/// An answer's body holding its request's [`BusyGuard`] until hyper has
/// taken the whole body (or dropped it).
pub(crate) struct Guarded {
    /// The router's body.
    pub(crate) body: axum::body::Body,
    /// Released with the body.
    pub(crate) _busy: BusyGuard,
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's byte stream: reports reads and blocked writes to its
/// [`ConnState`] and, on HTTP/1.1, replaces hyper's automatic error answers
/// with the envelope ([`rewrite`]).
pub(crate) struct Tracked<IO> {
    inner: IO,
    state: Arc<ConnState>,
    /// Bytes accepted from hyper but not yet written (a replaced answer).
    pending: Vec<u8>,
    written: usize,
    /// Whether hyper's automatic answers are replaced (HTTP/1.1 only).
    rewrite: bool,
}

impl<IO> Tracked<IO> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: IO, state: Arc<ConnState>) -> Self {
        Tracked {
            inner,
            state,
            pending: Vec::new(),
            written: 0,
            rewrite: true,
        }
    }

    /// The connection speaks HTTP/2: its frames are never rewritten.
    pub(crate) fn http2(&mut self) {
        self.rewrite = false;
    }
}

impl<IO: AsyncWrite + Unpin> Tracked<IO> {
    /// Writes what is pending before anything else.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.written < self.pending.len() {
            let poll = Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]);
            self.state.on_write(poll.is_pending());
            match ready!(poll)? {
                0 => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                n => self.written += n,
            }
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.on_read();
        }
        poll
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        // hyper's automatic answers come only while no request is in progress.
        if self.rewrite && self.state.is_idle() {
            if let Some(replaced) = rewrite::replace_automatic_answer(buf) {
                // Taken whole now; written by the flush and shutdown that follow.
                self.pending = replaced;
                self.written = 0;
                return Poll::Ready(Ok(buf.len()));
            }
        }
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.state.on_write(poll.is_pending());
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    /// One contiguous buffer per write, so that an automatic answer is seen
    /// whole ([`rewrite`]).
    fn is_write_vectored(&self) -> bool {
        false
    }
}
