//! Requests to one target's Kubernetes API server, sent straight through the
//! probe's request stack: the URL's base and path prefix, the bearer header,
//! the response body's byte budget ([`CapLayer`]) and a shared connection
//! pool.
//!
//! kube-rs' `Client` would put a `tower::Buffer` in front of that stack: a
//! task and a channel of 1,024 slots for every client. A health check sends
//! one request per client, so it paid for both every time; the buffer bought
//! nothing (docs/BENCHMARKS.md, issue 10: the checks' cost).

use crate::prober::KubeHttp;
use crate::remote::CapService;
use http_body_util::BodyExt;
use kube::client::middleware::{BaseUri, ExtraHeaders};
use kube::core::Status;
use tower::ServiceExt;

/// The request stack to one target's API server.
pub(crate) type ApiStack = BaseUri<ExtraHeaders<CapService<KubeHttp>>>;

/// One target's Kubernetes API server, to send requests to (cheap to clone;
/// clones share the connection pool).
#[derive(Clone)]
pub(crate) struct ApiServer {
    stack: ApiStack,
}

impl ApiServer {
    /// Requests through `stack`.
    pub(crate) fn new(stack: ApiStack) -> ApiServer {
        ApiServer { stack }
    }

    /// Sends `request` and reads its answer's body as text (bounded by the
    /// stack's budget). The errors are kube-rs' own, as its
    /// `Client::request_text` gives them: a transport failure is
    /// `Service`, an answer of 4xx or 5xx is `Api` with the `Status` it
    /// carried (or one made from its text and code).
    pub(crate) async fn request_text(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<String, kube::Error> {
        let response = self
            .stack
            .clone()
            .oneshot(request.map(kube::client::Body::from))
            .await
            .map_err(|e| kube::Error::Service(Box::new(e)))?;
        let code = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(kube::Error::Service)?
            .to_bytes();
        let text = String::from_utf8(body.to_vec()).map_err(kube::Error::FromUtf8)?;
        if code.is_client_error() || code.is_server_error() {
            return Err(kube::Error::Api(answered_status(code, &text).boxed()));
        }
        Ok(text)
    }
}

/// The `Status` of an unsuccessful answer: its body when that is one, else
/// a failure made from its text and code (a proxy's plain-text or HTML page).
fn answered_status(code: http::StatusCode, text: &str) -> Status {
    serde_json::from_str::<Status>(text).unwrap_or_else(|_| {
        Status::failure(text.trim(), "Failed to parse error data").with_code(code.as_u16())
    })
}

/// What sends a Kubernetes API request and reads its answer as text, with
/// kube-rs' errors: a target's [`ApiServer`], or a `kube::Client` of the
/// hub's own (`hub_secrets`).
pub(crate) trait SendsRequests: Sync {
    /// Sends `request`; its answer's body as text.
    fn send_for_text(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> impl std::future::Future<Output = Result<String, kube::Error>> + Send;
}

impl SendsRequests for ApiServer {
    async fn send_for_text(&self, request: http::Request<Vec<u8>>) -> Result<String, kube::Error> {
        self.request_text(request).await
    }
}

impl SendsRequests for kube::Client {
    async fn send_for_text(&self, request: http::Request<Vec<u8>>) -> Result<String, kube::Error> {
        self.request_text(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsuccessful_answer_keeps_its_status_or_gets_one_from_its_text_and_code() {
        let json = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"namespaces is forbidden","reason":"Forbidden","code":403}"#;
        let status = answered_status(http::StatusCode::FORBIDDEN, json);
        assert_eq!(
            (status.code, status.reason.as_str(), status.message.as_str()),
            (403, "Forbidden", "namespaces is forbidden")
        );
        let status = answered_status(
            http::StatusCode::BAD_GATEWAY,
            "  <html>bad gateway</html>\n",
        );
        assert_eq!(
            (status.code, status.reason.as_str(), status.message.as_str()),
            (
                502,
                "Failed to parse error data",
                "<html>bad gateway</html>"
            )
        );
    }
}
