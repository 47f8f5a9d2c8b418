//! The HTTP client behind every CLI command, and how its errors are shown.

use clap::Args;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

/// The server used when neither `--server` nor `FLEETREG_URL` is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// How long a (non-streaming) request may take before the CLI gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection flags shared by every client command.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Server URL [env: FLEETREG_URL] [default: http://127.0.0.1:8080].
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token [env: FLEETREG_TOKEN, then FLEETREG_ADMIN_TOKEN, then the
    /// file ./fleetreg-admin.token that `serve` writes on first start].
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
}

/// An error answered by the server in the API's envelope.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServerError {
    /// The error code, e.g. `CLUSTER_NOT_FOUND`.
    pub code: String,
    /// The server's message.
    pub message: String,
    /// The HTTP status.
    pub status: StatusCode,
    /// The envelope's `details` (`null` when absent).
    pub details: Value,
}

/// The resolved connection: where to send requests and with which token.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// The admin token `serve` wrote in this directory, if any
/// (`FLEETREG_ADMIN_TOKEN_FILE` names another file).
fn admin_token_file() -> Option<String> {
    let path =
        non_empty_env("FLEETREG_ADMIN_TOKEN_FILE").unwrap_or_else(|| "fleetreg-admin.token".into());
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|t| !t.is_empty())
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.trim().is_empty())
}

impl Client {
    /// Resolves flags, then environment, then defaults.
    pub fn from_args(args: &ConnectArgs) -> anyhow::Result<Client> {
        let (base, source) = match (&args.server, non_empty_env("FLEETREG_URL")) {
            (Some(server), _) => (server.clone(), "--server"),
            (None, Some(env)) => (env, "FLEETREG_URL"),
            (None, None) => (DEFAULT_SERVER.to_owned(), "the default"),
        };
        let base = base.trim().trim_end_matches('/').to_owned();
        match reqwest::Url::parse(&base) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            _ => anyhow::bail!(
                "invalid server URL {base:?} (from {source}); expected e.g. http://127.0.0.1:8080"
            ),
        }
        let token = args
            .token
            .clone()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| non_empty_env("FLEETREG_TOKEN"))
            .or_else(|| non_empty_env("FLEETREG_ADMIN_TOKEN"))
            .or_else(admin_token_file);
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("fleetreg-cli/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client { base, token, http })
    }

    /// A request to `path` (starting with `/`), with the default time limit.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.request_unbounded(method, path)
            .timeout(REQUEST_TIMEOUT)
    }

    /// A request to `path` without a time limit (for streams).
    pub fn request_unbounded(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends and decodes a JSON answer, turning error envelopes into [`ServerError`].
    pub async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = self.send_raw(request).await?;
        let bytes = response.bytes().await.map_err(|e| {
            anyhow::anyhow!(
                "reading the answer of {} failed: {}",
                self.base,
                root_cause(&e)
            )
        })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "the server at {} answered with something that is not fleetreg JSON ({e}); is it a fleetreg server?",
                self.base
            )
        })
    }

    /// Sends, returning the response when its status is a success.
    pub async fn send_raw(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let response = request.send().await.map_err(|e| {
            let what = if e.is_timeout() { "timed out talking to" } else { "cannot reach" };
            anyhow::anyhow!(
                "{what} the fleetreg server at {}: {}\n  hint: start one with `fleetreg serve`, or point --server or FLEETREG_URL at it",
                self.base,
                root_cause(&e)
            )
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or("HTTP_ERROR")
            .to_owned();
        let message = body["error"]["message"]
            .as_str()
            .map_or_else(|| format!("the server answered {status}"), str::to_owned);
        Err(ServerError {
            code,
            message,
            status,
            details: body["error"]["details"].clone(),
        }
        .into())
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// Prints `error: CODE: message` (or the cause chain of a local error) to stderr.
///
/// A cause whose text the message above it already contains is not repeated.
pub fn print_error(error: &anyhow::Error) {
    if let Some(server) = error.downcast_ref::<ServerError>() {
        eprintln!("error: {}: {}", server.code, server.message);
        return;
    }
    eprintln!("error: {error}");
    let mut shown = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !shown.contains(&text) {
            eprintln!("  caused by: {text}");
        }
        shown = text;
    }
}

/// Percent-encodes one path segment (a cluster name typed by a user).
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_path_segments() {
        assert_eq!(path_segment("prod-east-1"), "prod-east-1");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }
}
