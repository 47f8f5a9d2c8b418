//! The answers of the `huge_body_bytes` and `raw_body` faults.
//!
//! A huge body is valid JSON (an empty `List` padded with whitespace), so a
//! client that read it whole would decode it and succeed: only a bound on what
//! it reads makes the call fail. It is generated while it is sent, from one
//! static chunk, without `Content-Length`.

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;

/// Bytes of whitespace per chunk sent.
const CHUNK: usize = 64 * 1024;
static PADDING: [u8; CHUNK] = [b' '; CHUNK];
const HEAD: &[u8] = br#"{"kind":"List","apiVersion":"v1","metadata":{},"items":["#;
const TAIL: &[u8] = b"]}";

/// A 200 answer whose body is `bytes` long (at least the JSON around the
/// padding), streamed.
pub(crate) fn huge(bytes: u64) -> Response {
    let padding = bytes.saturating_sub((HEAD.len() + TAIL.len()) as u64);
    let head = futures::stream::once(async { Ok::<_, Infallible>(Bytes::from_static(HEAD)) });
    let pad = futures::stream::unfold(padding, |left| async move {
        if left == 0 {
            return None;
        }
        let n = left.min(CHUNK as u64) as usize;
        Some((Ok(Bytes::from_static(&PADDING[..n])), left - n as u64))
    });
    let tail = futures::stream::once(async { Ok(Bytes::from_static(TAIL)) });
    let stream = futures::StreamExt::chain(futures::StreamExt::chain(head, pad), tail);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// A 200 answer with `text` as its body, verbatim.
pub(crate) fn raw(text: &str) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        text.to_owned(),
    )
        .into_response()
}
