//! What the HTTP front door checks before a request is routed: the request id
//! a client may choose, the length of the request target and the time a
//! request may take. Every refusal is an [`ApiError`] envelope.
//!
//! Limits hyper enforces while parsing (the size of the request head, the
//! number of headers, bytes that are not HTTP) are answered with the same
//! envelope by [`crate::serve`].

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::header::DATE;
use axum::http::{HeaderName, HeaderValue, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fleetreg_model::ErrorCode;
use serde_json::json;
use std::time::{Duration, SystemTime};

/// The request id header, set on every request and echoed on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id a client may choose.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The longest request target (path and query; scheme and authority too in
/// absolute form) accepted, in bytes; longer ones answer `URI_TOO_LONG` (414).
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The largest request head (request line and headers) accepted, in bytes;
/// larger ones answer `HEADERS_TOO_LARGE` (431). Enforced by hyper.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// The most header fields a request may have (hyper's limit); more answer
/// `HEADERS_TOO_LARGE` (431).
pub const MAX_HEADERS: usize = 100;

/// Whether `id` is a request id the server keeps as given: 1 to
/// [`MAX_REQUEST_ID_LEN`] characters of `A-Z a-z 0-9 . _ : -`, so that it can
/// neither forge log fields nor inflate answers.
pub fn is_plain_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Middleware: drops a client's `X-Request-Id` unless it is one plain value
/// (see [`is_plain_request_id`]), so that the id layer generates one instead.
pub async fn sanitize_request_id(mut request: Request, next: Next) -> Response {
    let headers = request.headers_mut();
    let mut given = headers.get_all(&REQUEST_ID).iter();
    let keep = match (given.next(), given.next()) {
        (None, _) => true,
        (Some(id), None) => is_plain_request_id(id.as_bytes()),
        (Some(_), Some(_)) => false,
    };
    if !keep {
        headers.remove(&REQUEST_ID);
    }
    next.run(request).await
}

/// Middleware: `X-Request-Id` and, over HTTP/2, the `Date` set here are
/// marked never to be indexed by HTTP/2's header compression. Both take a new
/// value on nearly every answer, so indexing them only filled each
/// connection's HPACK table (4 KiB of entries by HPACK's count, ~20 KB of
/// server memory per agent connection after 100 heartbeats,
/// docs/BENCHMARKS.md) with entries no later answer could use. hyper's own
/// `Date` is off for HTTP/2 for that reason (`serve/protocol.rs`); over
/// HTTP/1.1 it stays hyper's (cached per second).
pub async fn unindexed_headers(request: Request, next: Next) -> Response {
    let http2 = request.version() == Version::HTTP_2;
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Some(id) = headers.get_mut(&REQUEST_ID) {
        id.set_sensitive(true);
    }
    if http2 {
        // An HTTP date is always a valid header value.
        if let Ok(mut date) = HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::now())) {
            date.set_sensitive(true);
            headers.insert(DATE, date);
        }
    }
    response
}

/// Middleware: answers `URI_TOO_LONG` when the request target is longer than
/// [`MAX_URI_BYTES`].
pub async fn limit_uri(request: Request, next: Next) -> Response {
    let uri = request.uri();
    let length = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.scheme_str().map_or(0, str::len);
    if length > MAX_URI_BYTES {
        return ApiError::new(
            ErrorCode::UriTooLong,
            format!("the request target is longer than {MAX_URI_BYTES} bytes"),
        )
        .with_details(json!({ "limit_bytes": MAX_URI_BYTES }))
        .into_response();
    }
    next.run(request).await
}

/// `HEADERS_TOO_LARGE`: a head over [`MAX_HEAD_BYTES`] or [`MAX_HEADERS`].
pub(crate) fn headers_too_large() -> ApiError {
    ApiError::new(
        ErrorCode::HeadersTooLarge,
        format!(
            "the request head is larger than {MAX_HEAD_BYTES} bytes or has more than \
             {MAX_HEADERS} header fields"
        ),
    )
    .with_details(json!({ "limit_bytes": MAX_HEAD_BYTES, "limit_fields": MAX_HEADERS }))
}

/// The size of `request`'s head as HTTP/1.1 would send it: request line,
/// `name: value` lines, blank line.
fn head_bytes(request: &Request) -> usize {
    let target = request
        .uri()
        .path_and_query()
        .map_or(1, |p| p.as_str().len());
    let line = request.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let fields: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    line + fields + 2
}

/// Middleware: the limits hyper's HTTP/1.1 parser applies to every head
/// ([`MAX_HEAD_BYTES`], [`MAX_HEADERS`]), applied to HTTP/2 requests, whose
/// heads HPACK decodes (bounded by `SETTINGS_MAX_HEADER_LIST_SIZE`, see
/// `serve::protocol`): `HEADERS_TOO_LARGE` (431) as over HTTP/1.1.
pub async fn limit_head(request: Request, next: Next) -> Response {
    if request.version() == Version::HTTP_2
        && (request.headers().len() > MAX_HEADERS || head_bytes(&request) > MAX_HEAD_BYTES)
    {
        return headers_too_large().into_response();
    }
    next.run(request).await
}

/// Middleware: answers `SERVICE_UNAVAILABLE` (with `Retry-After`) when the
/// response is not ready within the given time (`request_timeout`). Streams
/// are bounded only until their first byte.
pub async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::ServiceUnavailable,
            format!(
                "the request took longer than {} s; try again later",
                limit.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_request_ids_are_short_and_printable() {
        assert!(is_plain_request_id(b"trace-me-42"));
        assert!(is_plain_request_id(b"a.b_c:d-E9"));
        assert!(is_plain_request_id(&[b'x'; MAX_REQUEST_ID_LEN]));
        assert!(!is_plain_request_id(&[b'x'; MAX_REQUEST_ID_LEN + 1]));
        assert!(!is_plain_request_id(b""));
        assert!(!is_plain_request_id(b"a b"));
        assert!(!is_plain_request_id(b"x\" INFO fleetreg_server::auth"));
        assert!(!is_plain_request_id("é".as_bytes()));
    }

    #[tokio::test]
    async fn dates_and_request_ids_are_never_indexed() {
        use axum::body::Body;
        use tower::ServiceExt;
        let app = axum::Router::new()
            .route(
                "/",
                axum::routing::get(|| async { [(REQUEST_ID, "id-1"), (DATE, "stale")] }),
            )
            .layer(axum::middleware::from_fn(unindexed_headers));
        let request = axum::http::Request::get("/")
            .version(Version::HTTP_2)
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let headers = response.headers();
        let dates: Vec<_> = headers.get_all(DATE).iter().collect();
        assert_eq!(dates.len(), 1, "{headers:?}");
        let date = httpdate::parse_http_date(dates[0].to_str().unwrap()).unwrap();
        let age = SystemTime::now().duration_since(date).unwrap_or_default();
        assert!(age < Duration::from_secs(5), "{dates:?}");
        assert!(dates[0].is_sensitive());
        assert!(headers[&REQUEST_ID].is_sensitive());
    }
}
