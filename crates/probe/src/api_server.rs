//! Requests to one target's Kubernetes API server, sent straight through the
//! probe's request stack: the URL's base and path prefix, the bearer header,
//! the response body's byte budget ([`CapLayer`]) and a shared connection
//! pool.
//!
//! kube-rs' `Client` would put a `tower::Buffer` in front of that stack: a
//! spawned task and a channel (bounded at 1,024) for every client, so for
//! every probe call. A health check sends one request per client, so it paid
//! for both every time; the buffer bought nothing (docs/BENCHMARKS.md, issue
//! 10: the checks' cost). Nor does this path log a failed answer's body, as
//! kube-rs' `Client` does at DEBUG.

use crate::prober::KubeHttp;
use crate::remote::{CapService, SendsRequests};
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
}

impl SendsRequests for ApiServer {
    /// Sends `request` and reads its answer's body as text (bounded by the
    /// stack's budget). The errors are kube-rs' own, as its
    /// `Client::request_text` gives them: a transport failure is
    /// `Service`, an answer of 4xx or 5xx is `Api` with the `Status` it
    /// carried (or one made from its text and code).
    async fn send_for_text(&self, request: http::Request<Vec<u8>>) -> Result<String, kube::Error> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::EgressPolicy;
    use crate::remote::fetch;
    use crate::{Prober, Target};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The answer a one-request-per-connection HTTP/1.1 server gives `path`.
    fn canned(path: &str) -> Vec<u8> {
        let (status, body): (&str, Vec<u8>) = match path {
            "/ok" => ("200 OK", br#"{"kind":"NamespaceList","items":[]}"#.to_vec()),
            "/forbidden" => (
                "403 Forbidden",
                br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"namespaces is forbidden","reason":"Forbidden","code":403}"#.to_vec(),
            ),
            "/proxy" => ("502 Bad Gateway", b"<html>bad gateway</html>\n".to_vec()),
            "/large" => ("500 Internal Server Error", vec![b'x'; 2048]),
            "/not-text" => ("200 OK", vec![0xff, 0xfe, 0xfd]),
            _ => ("404 Not Found", b"404 page not found".to_vec()),
        };
        let mut answer = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend(body);
        answer
    }

    /// A loopback server answering [`canned`]; its URL.
    async fn canned_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let _ = stream.write_all(&canned(&path)).await;
                });
            }
        });
        url
    }

    fn get(path: &str) -> Result<http::Request<Vec<u8>>, kube::core::request::Error> {
        http::Request::get(path)
            .body(Vec::new())
            .map_err(kube::core::request::Error::BuildRequest)
    }

    #[tokio::test]
    async fn answers_and_failures_read_as_through_a_kube_client() {
        let prober = Prober::new(EgressPolicy::default())
            .unwrap()
            .with_max_response_bytes(1024);
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", listener.local_addr().unwrap())
        };
        let served = canned_server().await;
        let cases = [
            (&served, "/ok"),
            (&served, "/forbidden"),
            (&served, "/proxy"),
            (&served, "/large"),
            (&served, "/not-text"),
            (&served, "/missing"),
            (&closed, "/ok"),
        ];
        for (url, path) in cases {
            let target = Target {
                api_server_url: url.clone(),
                endpoints: Default::default(),
                credential: None,
            };
            let api = prober.api_server(&target).unwrap();
            let client = kube::Client::new(api.stack.clone(), "default");
            let ours = fetch::<serde_json::Value>(&api, get(path), "read").await;
            let theirs = fetch::<serde_json::Value>(&client, get(path), "read").await;
            let text = |r: &Result<serde_json::Value, crate::Error>| match r {
                Ok(value) => format!("ok {value}"),
                Err(error) => format!("{error:?} / {error}"),
            };
            assert_eq!(text(&ours), text(&theirs), "{url}{path}");
        }
    }

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
