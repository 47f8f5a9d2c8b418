//! Which HTTP a connection speaks, and how hyper serves each.
//!
//! HTTP/2 comes with prior knowledge on plain HTTP (h2c: the client starts
//! with the connection preface, RFC 9113 §3.4) and by ALPN over TLS, where
//! the client sends the same preface. [`sniff`] reads until the first bytes
//! either are the preface or cannot become it, and gives the connection
//! back with those bytes to be read again. An edge agent keeps its
//! configuration stream and its acknowledgements on one HTTP/2 connection
//! instead of two HTTP/1.1 connections (docs/BENCHMARKS.md, "Memory").
//!
//! HTTP/2's limits ([`Protocols::new`]) are chosen so that one connection
//! holds no more than an HTTP/1.1 connection could make the server hold:
//! few concurrent streams (an agent needs two), request heads bounded like
//! HTTP/1.1's (the front answers the same `HEADERS_TOO_LARGE`,
//! [`crate::front::limit_head`]), small flow-control windows (what a client
//! may send before a handler reads it), a small send buffer per stream.
//! The watchdog (`connection.rs`) treats both protocols alike: a connection
//! with a stream open is busy; bytes arriving while none is open start the
//! header timer, so an HTTP/2 client idle between requests that sends only
//! a PING is closed after `header_read_timeout_seconds`, not the idle
//! timeout.

use crate::front::{MAX_HEADERS, MAX_HEAD_BYTES};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::TokioExecutor;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The HTTP/2 connection preface.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Most streams a client may have open at once on one HTTP/2 connection:
/// an agent's configuration stream and one acknowledgement, with room for a
/// request of its own; an HTTP/1.1 connection holds one.
pub(crate) const MAX_CONCURRENT_STREAMS: u32 = 4;

/// HPACK counts 32 bytes per header field besides its name and value
/// (RFC 9113 §6.5.2): the list size of the largest head HTTP/1.1 takes.
pub(crate) const MAX_HEADER_LIST_BYTES: u32 = (MAX_HEAD_BYTES + MAX_HEADERS * 32) as u32;

/// The receive windows, per stream and per connection: request body bytes a
/// client may send ahead of the handler reading them.
const WINDOW_BYTES: u32 = 256 * 1024;

/// Response body bytes queued per stream ahead of the client's window.
const SEND_BUFFER_BYTES: usize = 64 * 1024;

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/1.1 (or anything that is not HTTP/2, for hyper to refuse).
    Http1,
    /// HTTP/2.
    Http2,
}

/// hyper's configuration of each protocol.
pub(crate) struct Protocols {
    /// HTTP/1.1.
    pub(crate) http1: http1::Builder,
    /// HTTP/2; its streams run as tasks of their own.
    pub(crate) http2: http2::Builder<TokioExecutor>,
}

impl Protocols {
    /// Both protocols with the server's limits. No hyper timer: with one,
    /// hyper applies its own header timeout to idle kept-alive HTTP/1.1
    /// connections too, and would ping HTTP/2 ones; the watchdog
    /// (`connection.rs`) applies ours to both.
    pub(crate) fn new() -> Protocols {
        let mut http1 = http1::Builder::new();
        http1.max_header_size(MAX_HEAD_BYTES).keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_header_list_size(MAX_HEADER_LIST_BYTES)
            .max_frame_size(16 * 1024)
            .initial_stream_window_size(WINDOW_BYTES)
            .initial_connection_window_size(WINDOW_BYTES)
            .adaptive_window(false)
            .max_send_buf_size(SEND_BUFFER_BYTES)
            // A `Date` the HPACK table does not keep comes from the router
            // (`front::unindexed_headers`).
            .auto_date_header(false);
        Protocols { http1, http2 }
    }
}

/// Reads the start of `io` until it is the HTTP/2 preface or cannot be
/// (end of stream, an error or another byte: HTTP/1.1's parser deals with
/// those); the protocol and `io` with those bytes put back.
pub(crate) async fn sniff<IO: AsyncRead + Unpin>(
    mut io: IO,
) -> std::io::Result<(Protocol, Rewound<IO>)> {
    let mut start = [0u8; PREFACE.len()];
    let mut filled = 0;
    let protocol = loop {
        let n = io.read(&mut start[filled..]).await?;
        if n == 0 || start[filled..filled + n] != PREFACE[filled..filled + n] {
            filled += n;
            break Protocol::Http1;
        }
        filled += n;
        if filled == PREFACE.len() {
            break Protocol::Http2;
        }
    };
    Ok((
        protocol,
        Rewound {
            start,
            next: 0,
            end: filled as u8,
            inner: io,
        },
    ))
}

/// A connection whose first bytes, read by [`sniff`], are read again.
pub(crate) struct Rewound<IO> {
    start: [u8; PREFACE.len()],
    next: u8,
    end: u8,
    inner: IO,
}

impl<IO> Rewound<IO> {
    /// The connection itself.
    pub(crate) fn get_mut(&mut self) -> &mut IO {
        &mut self.inner
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewound<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.next < self.end {
            let (next, end) = (usize::from(self.next), usize::from(self.end));
            let n = (end - next).min(buf.remaining());
            buf.put_slice(&self.start[next..next + n]);
            self.next += n as u8;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewound<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Sniffs what a client writes in `pieces`, then reads everything.
    async fn sniffed(pieces: &[&[u8]]) -> (Protocol, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(1024);
        let pieces: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
        let writer = tokio::spawn(async move {
            for piece in pieces {
                client.write_all(&piece).await.unwrap();
                client.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let (protocol, mut io) = sniff(server).await.unwrap();
        writer.await.unwrap();
        let mut all = Vec::new();
        io.read_to_end(&mut all).await.unwrap();
        (protocol, all)
    }

    #[tokio::test]
    async fn the_preface_in_any_pieces_is_http2_and_nothing_is_lost() {
        let mut frames = PREFACE.to_vec();
        frames.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
        for split in [1, 3, 23, 24, 30] {
            let (protocol, all) = sniffed(&[&frames[..split], &frames[split..]]).await;
            assert_eq!(protocol, Protocol::Http2, "split at {split}");
            assert_eq!(all, frames);
        }
    }

    #[tokio::test]
    async fn anything_else_is_http1_and_nothing_is_lost() {
        let request = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n";
        for pieces in [
            vec![&request[..]],
            vec![&request[..1], &request[1..]],
            // The preface's first bytes, then not.
            vec![&b"PRI * HTTP/1.1\r\n"[..]],
            vec![&b"PRI"[..], b" *", b" HTTP/1"],
            vec![&b""[..]],
        ] {
            let (protocol, all) = sniffed(&pieces).await;
            assert_eq!(protocol, Protocol::Http1, "{pieces:?}");
            assert_eq!(all, pieces.concat());
        }
    }
}
