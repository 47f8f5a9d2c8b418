//! What a cluster answers, read with bounds: every response body is read
//! through one byte budget ([`Budget`]: refused at once when `Content-Length`
//! announces more, else counted chunk by chunk while streaming), whether it
//! comes from a cluster's API server ([`CapLayer`] in every
//! [`ApiServer`](crate::api_server::ApiServer)'s stack) or through reqwest
//! ([`read_body`]); Kubernetes lists are read page by page ([`list_pages`]);
//! and remote text that reaches a log line, an error or a stored status goes
//! through [`escape_remote`] first.
//!
//! kube-rs' own `Client::request` logs a body it cannot decode whole at WARN;
//! every API call here goes through [`fetch`] instead, which decodes itself
//! and keeps only an escaped, truncated excerpt.

use crate::error::Error;
use bytes::Bytes;
use http_body::{Body, Frame};
use kube::api::ListParams;
use kube::core::ObjectList;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The default of `health_check.max_response_bytes`: the most bytes one
/// response body may have (4 MiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;

/// Most characters of remote text kept by [`escape_remote`].
pub const MAX_REMOTE_TEXT_CHARS: usize = 256;

/// Objects asked for per page of a Kubernetes list (a node with its image list
/// is some 10 to 20 KB, so a page stays well under the default limit).
pub(crate) const PAGE_SIZE: u32 = 100;

/// Most pages one list reads before giving up (a cluster handing out
/// `continue` tokens forever is bounded by this and the call's timeout).
pub(crate) const MAX_PAGES: usize = 1000;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body over the limit (`health_check.max_response_bytes`): the
/// rest was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("response body too large: {} the {limit}-byte limit (health_check.max_response_bytes)", match announced { Some(n) => format!("Content-Length {n} exceeds"), None => "more than".to_owned() })]
pub struct TooLarge {
    /// The limit, in bytes.
    pub limit: u64,
    /// The length the response announced, when it did.
    pub announced: Option<u64>,
}

/// The byte budget of one response body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    limit: u64,
    read: u64,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: u64) -> Budget {
        Budget { limit, read: 0 }
    }

    /// Refuses a response whose `Content-Length` is over the limit, before any
    /// of its body is read.
    pub(crate) fn announced(&self, headers: &http::HeaderMap) -> Result<(), TooLarge> {
        let length = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match length {
            Some(n) if n > self.limit => Err(TooLarge {
                limit: self.limit,
                announced: Some(n),
            }),
            _ => Ok(()),
        }
    }

    /// Counts `len` more bytes; past the limit, the error.
    pub(crate) fn take(&mut self, len: usize) -> Result<(), TooLarge> {
        self.read = self.read.saturating_add(len as u64);
        if self.read > self.limit {
            Err(TooLarge {
                limit: self.limit,
                announced: None,
            })
        } else {
            Ok(())
        }
    }
}

/// A response body read through a [`Budget`]: fails with [`TooLarge`] (as its
/// error, in the error's source chain) instead of yielding bytes past it.
pub(crate) struct Capped<B> {
    inner: B,
    budget: Budget,
    refused: Option<TooLarge>,
    done: bool,
}

/// `response` with its body read through a budget of `limit` bytes.
pub(crate) fn capped<B>(response: http::Response<B>, limit: u64) -> http::Response<Capped<B>> {
    let budget = Budget::new(limit);
    let refused = budget.announced(response.headers()).err();
    response.map(|inner| Capped {
        inner,
        budget,
        refused,
        done: false,
    })
}

impl<B> Body for Capped<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(refused) = this.refused.take() {
            this.done = true;
            return Poll::Ready(Some(Err(Box::new(refused))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if let Err(too_large) = this.budget.take(data.len()) {
                        this.done = true;
                        return Poll::Ready(Some(Err(Box::new(too_large))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.refused.is_none() && (self.done || self.inner.is_end_stream())
    }
}

/// A tower layer putting every response body of a service through a budget
/// of `limit` bytes (in each API server's request stack).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CapLayer {
    limit: u64,
}

impl CapLayer {
    /// Bodies of at most `limit` bytes.
    pub(crate) fn new(limit: u64) -> CapLayer {
        CapLayer { limit }
    }
}

impl<S> tower::Layer<S> for CapLayer {
    type Service = CapService<S>;

    fn layer(&self, inner: S) -> CapService<S> {
        CapService {
            inner,
            limit: self.limit,
        }
    }
}

/// The service of [`CapLayer`].
#[derive(Debug, Clone)]
pub(crate) struct CapService<S> {
    inner: S,
    limit: u64,
}

impl<S, RequestBody, B> tower::Service<http::Request<RequestBody>> for CapService<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Capped<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let limit = self.limit;
        let response = self.inner.call(request);
        Box::pin(async move { Ok(capped(response.await?, limit)) })
    }
}

/// The body of a reqwest `response`, at most `limit` bytes: refused at once
/// when its `Content-Length` is over, else read chunk by chunk and abandoned
/// as soon as the total passes the limit.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    limit: u64,
    what: &'static str,
) -> Result<Vec<u8>, Error> {
    let mut budget = Budget::new(limit);
    let too_large = |source| Error::TooLarge { what, source };
    budget.announced(response.headers()).map_err(too_large)?;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| Error::Transport {
        what,
        reason: crate::cause_chain(&e),
    })? {
        budget.take(chunk.len()).map_err(too_large)?;
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The [`TooLarge`] somewhere in `error`'s source chain.
pub(crate) fn find_too_large(error: &(dyn std::error::Error + 'static)) -> Option<TooLarge> {
    let mut current = Some(error);
    while let Some(inner) = current {
        if let Some(too_large) = inner.downcast_ref::<TooLarge>() {
            return Some(*too_large);
        }
        current = inner.source();
    }
    None
}

/// What sends a Kubernetes API request and reads its answer as text, with
/// kube-rs' errors: a target's [`ApiServer`](crate::api_server::ApiServer),
/// or the hub's own `kube::Client` (`hub_secrets`).
pub(crate) trait SendsRequests: Sync {
    /// Sends `request`; its answer's body as text.
    fn send_for_text(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> impl Future<Output = Result<String, kube::Error>> + Send;
}

impl SendsRequests for kube::Client {
    async fn send_for_text(&self, request: http::Request<Vec<u8>>) -> Result<String, kube::Error> {
        self.request_text(request).await
    }
}

/// A Kubernetes API call to `api`, its answer decoded as `T`. The body is
/// bounded by the stack's [`CapLayer`]; an answer that does not decode is an
/// [`Error::UnexpectedResponse`] quoting an escaped, truncated excerpt (never
/// logged whole, unlike kube-rs' `Client::request`).
pub(crate) async fn fetch<T: DeserializeOwned>(
    api: &impl SendsRequests,
    request: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
    what: &'static str,
) -> Result<T, Error> {
    let request = request.map_err(|e| Error::kube(what, kube::Error::BuildRequest(e)))?;
    let text = api
        .send_for_text(request)
        .await
        .map_err(|e| Error::kube(what, e))?;
    decode(&text, what)
}

/// `text` decoded as `T`, or [`Error::UnexpectedResponse`] with an escaped,
/// truncated excerpt of it.
pub(crate) fn decode<T: DeserializeOwned>(text: &str, what: &'static str) -> Result<T, Error> {
    serde_json::from_str(text).map_err(|e| Error::UnexpectedResponse {
        what,
        reason: format!(
            "not the expected JSON ({}); the body begins {}",
            escape_remote(&e.to_string()),
            escape_remote(text)
        ),
    })
}

/// Every object of the list at `url` matching `params`, read page by page
/// (`limit` [`PAGE_SIZE`], then `continue`), each page's items handed to `each`
/// and dropped, so memory stays at one page whatever the list's length.
pub(crate) async fn list_pages<K: DeserializeOwned + Clone>(
    api: &impl SendsRequests,
    url: &str,
    params: &ListParams,
    what: &'static str,
    mut each: impl FnMut(Vec<K>),
) -> Result<(), Error> {
    let mut params = params.clone().limit(PAGE_SIZE);
    for _ in 0..MAX_PAGES {
        let request = kube::core::Request::new(url).list(&params);
        let page: ObjectList<K> = fetch(api, request, what).await?;
        each(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(()),
        }
    }
    Err(Error::UnexpectedResponse {
        what,
        reason: format!("more than {MAX_PAGES} pages"),
    })
}

/// Remote text made safe for a log line, an error message or a stored status:
/// control characters (newlines, escape sequences, the Unicode line and
/// paragraph separators and bidirectional overrides) and `\` escaped as Rust
/// escapes (`\n`, `\u{1b}`), the result cut at [`MAX_REMOTE_TEXT_CHARS`]
/// characters with a marker saying how long the text was.
pub fn escape_remote(text: &str) -> String {
    let mut out = String::new();
    for (kept, (index, c)) in text.char_indices().enumerate() {
        if kept >= MAX_REMOTE_TEXT_CHARS {
            out.push_str(&format!(
                "…[truncated, {} of {} bytes shown]",
                index,
                text.len()
            ));
            return out;
        }
        let unsafe_char = c.is_control()
            || c == '\\'
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c);
        if unsafe_char {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\\' => out.push_str("\\\\"),
                other => out.push_str(&format!("\\u{{{:x}}}", other as u32)),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_text_is_escaped_and_truncated() {
        assert_eq!(escape_remote("plain text"), "plain text");
        assert_eq!(
            escape_remote("a\nINFO fleetreg_server::auth: forged\r\n\u{1b}[31m\\"),
            "a\\nINFO fleetreg_server::auth: forged\\r\\n\\u{1b}[31m\\\\"
        );
        assert_eq!(
            escape_remote("x\u{2028}y\u{202e}z"),
            "x\\u{2028}y\\u{202e}z"
        );
        let long = "é".repeat(1000);
        let cut = escape_remote(&long);
        assert!(cut.starts_with(&"é".repeat(MAX_REMOTE_TEXT_CHARS)), "{cut}");
        assert!(
            cut.ends_with("…[truncated, 512 of 2000 bytes shown]"),
            "{cut}"
        );
        assert_eq!(
            escape_remote(&"a".repeat(MAX_REMOTE_TEXT_CHARS)),
            "a".repeat(MAX_REMOTE_TEXT_CHARS),
            "exactly at the limit: nothing cut"
        );
        let lines = escape_remote(&"\n".repeat(1000));
        assert!(!lines.contains('\n'));
        assert!(lines.chars().count() < 2 * MAX_REMOTE_TEXT_CHARS + 40);
    }

    #[test]
    fn the_budget_refuses_announced_and_streamed_excess() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, "11".parse().unwrap());
        let budget = Budget::new(10);
        assert_eq!(
            budget.announced(&headers),
            Err(TooLarge {
                limit: 10,
                announced: Some(11)
            })
        );
        headers.insert(http::header::CONTENT_LENGTH, "10".parse().unwrap());
        assert_eq!(budget.announced(&headers), Ok(()));
        let mut budget = Budget::new(10);
        assert!(budget.take(6).is_ok());
        assert!(budget.take(4).is_ok());
        let error = budget.take(1).unwrap_err();
        assert_eq!(
            error.to_string(),
            "response body too large: more than the 10-byte limit (health_check.max_response_bytes)"
        );
    }
}
