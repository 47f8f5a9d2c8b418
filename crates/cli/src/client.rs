//! The HTTP client behind every CLI command, and how its errors are shown.

use crate::context::Selected;
use clap::Args;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

/// The server used when neither `--server`, `FLEETREG_URL` nor a context gives one.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// How long a (non-streaming) request may take before the CLI gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection flags shared by every client command.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Server URL [then: the --context's server, FLEETREG_URL, the server of the
    /// FLEETREG_CONTEXT or current context] [default: http://127.0.0.1:8080].
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token [then: the --context's token, FLEETREG_TOKEN,
    /// FLEETREG_ADMIN_TOKEN, the token of the FLEETREG_CONTEXT or current
    /// context, and with no context in use the file ./fleetreg-admin.token that
    /// `serve` writes on first start].
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Use this context (`fleetreg context --help`) instead of FLEETREG_CONTEXT
    /// or the current context; --server and --token still override it.
    #[arg(long, global = true, value_name = "NAME", value_parser = crate::context::parse_name)]
    pub context: Option<String>,
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
    /// A line on what to do about it, e.g. where the token was looked for.
    pub hint: Option<String>,
}

/// A request that got no answer: the server could not be reached, or the
/// exchange failed before an answer.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Unreachable {
    message: String,
    /// No connection could be made (refused, timed out, name not resolved).
    pub connect: bool,
}

/// How a [`Client`] speaks HTTP to a plain `http://` server (over HTTPS,
/// ALPN picks HTTP/2 when the server offers it, else HTTP/1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP/1.1: a connection per request in flight.
    Http1,
    /// HTTP/2 with prior knowledge: every request on one connection (the
    /// edge agent's stream and acknowledgements), pinged while idle so a
    /// connection that died unnoticed is replaced.
    Http2,
}

/// How often an idle HTTP/2 connection is pinged, and how long the answer
/// may take before the connection counts as dead.
const HTTP2_PING: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(10));

/// The resolved connection: where to send requests and with which token.
pub struct Client {
    base: String,
    token: Option<String>,
    /// Where the token came from (`--token`, `FLEETREG_TOKEN`, …), for the
    /// hint under `UNAUTHENTICATED`.
    token_source: Option<String>,
    /// The context in use, if any.
    context: Option<String>,
    http: reqwest::Client,
}

/// `base` without a trailing `/` when it is an http(s) URL with a host;
/// `source` says where it came from in the error.
pub fn check_server_url(base: &str, source: &str) -> anyhow::Result<String> {
    let base = base.trim().trim_end_matches('/').to_owned();
    match reqwest::Url::parse(&base) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(base),
        _ => anyhow::bail!(
            "invalid server URL {base:?} (from {source}); expected e.g. http://127.0.0.1:8080"
        ),
    }
}

/// The file `serve` writes the admin token to, as the CLI looks for it
/// (`FLEETREG_ADMIN_TOKEN_FILE`, else `./fleetreg-admin.token`).
fn admin_token_path() -> String {
    non_empty_env("FLEETREG_ADMIN_TOKEN_FILE").unwrap_or_else(|| "./fleetreg-admin.token".into())
}

/// The admin token `serve` wrote in this directory, if any
/// (`FLEETREG_ADMIN_TOKEN_FILE` names another file).
fn admin_token_file() -> Option<String> {
    std::fs::read_to_string(admin_token_path())
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|t| !t.is_empty())
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.trim().is_empty())
}

impl Client {
    /// Resolves flags (`--context` among them), then environment, then the
    /// context `FLEETREG_CONTEXT` names or the current one, then defaults.
    pub fn from_args(args: &ConnectArgs) -> anyhow::Result<Client> {
        Client::from_args_over(args, Transport::Http1)
    }

    /// [`Client::from_args`], speaking `transport` to a plain-HTTP server.
    pub fn from_args_over(args: &ConnectArgs, transport: Transport) -> anyhow::Result<Client> {
        let context = Selected::resolve(args.context.as_deref())?;
        let (by_flag, later) = match &context {
            Some(c) if c.by_flag => (Some(c), None),
            other => (None, other.as_ref()),
        };
        let server = |c: Option<&Selected>| c.map(|c| (c.context.server.clone(), c.source()));
        let (base, source) = args
            .server
            .clone()
            .map(|s| (s, "--server".to_owned()))
            .or_else(|| server(by_flag))
            .or_else(|| non_empty_env("FLEETREG_URL").map(|e| (e, "FLEETREG_URL".into())))
            .or_else(|| server(later))
            .unwrap_or_else(|| (DEFAULT_SERVER.to_owned(), "the default".into()));
        let base = check_server_url(&base, &source)?;
        let found = |token: Option<String>, source: &str| token.map(|t| Ok((t, source.into())));
        let (token, token_source) = found(
            args.token.clone().filter(|s| !s.trim().is_empty()),
            "--token",
        )
        .or_else(|| by_flag.and_then(Selected::token))
        .or_else(|| found(non_empty_env("FLEETREG_TOKEN"), "FLEETREG_TOKEN"))
        .or_else(|| {
            found(
                non_empty_env("FLEETREG_ADMIN_TOKEN"),
                "FLEETREG_ADMIN_TOKEN",
            )
        })
        .or_else(|| later.and_then(Selected::token))
        .or_else(|| {
            found(
                admin_token_file().filter(|_| context.is_none()),
                &admin_token_path(),
            )
        })
        .transpose()?
        .unzip();
        let mut http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("fleetreg-cli/", env!("CARGO_PKG_VERSION")));
        if transport == Transport::Http2 {
            http = http
                .http2_keep_alive_interval(HTTP2_PING.0)
                .http2_keep_alive_timeout(HTTP2_PING.1)
                .http2_keep_alive_while_idle(true);
            if reqwest::Url::parse(&base).is_ok_and(|url| url.scheme() == "http") {
                http = http.http2_prior_knowledge();
            }
        }
        for cert in context
            .as_ref()
            .map_or(Ok(Vec::new()), Selected::ca_certs)?
        {
            http = http.add_root_certificate(cert);
        }
        Ok(Client {
            base,
            token,
            token_source,
            context: context.map(|c| c.context.name),
            http: http.build()?,
        })
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
            Unreachable {
                message: format!(
                    "{what} the fleetreg server at {}: {}\n  hint: start one with `fleetreg serve`, or point --server, FLEETREG_URL or a context (`fleetreg context --help`) at it",
                    self.base,
                    root_cause(&e)
                ),
                connect: e.is_connect(),
            }
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
        let hint = (status == StatusCode::UNAUTHORIZED).then(|| self.token_hint());
        Err(ServerError {
            code,
            message,
            status,
            details: body["error"]["details"].clone(),
            hint,
        }
        .into())
    }

    /// Where the refused token came from, and where tokens are looked for.
    fn token_hint(&self) -> String {
        let order = format!(
            "--token, then the --context's, then FLEETREG_TOKEN, then FLEETREG_ADMIN_TOKEN, then \
             the FLEETREG_CONTEXT or current context's (`fleetreg context --help`), then (with no \
             context in use) the file {}",
            admin_token_path()
        );
        match (&self.token_source, &self.context) {
            (Some(source), _) => format!(
                "the token from {source} was refused (unknown, revoked or expired); tokens are taken from {order}"
            ),
            (None, Some(context)) => format!(
                "no token was sent: context {context:?} has none, nor are there any in --token, \
                 FLEETREG_TOKEN or FLEETREG_ADMIN_TOKEN; `fleetreg context add {context} --overwrite \
                 --server URL --token-file FILE` gives it one"
            ),
            (None, None) => format!(
                "no token was sent: none in {order} (`fleetreg serve` writes that file in its working directory on first start)"
            ),
        }
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
/// A server error is followed by its `details` (see [`details_lines`]) and a
/// hint when there is one. A cause whose text the message above it already
/// contains is not repeated.
pub fn print_error(error: &anyhow::Error) {
    if let Some(server) = error.downcast_ref::<ServerError>() {
        eprint!("{}", server_error_text(server));
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

/// The text [`print_error`] shows for a server error.
fn server_error_text(server: &ServerError) -> String {
    let mut out = format!("error: {}: {}\n", server.code, server.message);
    out.push_str(&details_lines(&server.details));
    if let Some(hint) = &server.hint {
        out.push_str(&format!("  hint: {hint}\n"));
    }
    out
}

/// The envelope's `details` as indented `key: value` lines, `cause` first:
/// scalars as they are, lists of scalars joined with `, `, nested objects as
/// compact JSON (e.g. a refresh's recorded `status`).
fn details_lines(details: &Value) -> String {
    let Some(map) = details.as_object() else {
        return match details {
            Value::Null => String::new(),
            Value::String(text) => format!("  details: {text}\n"),
            other => format!("  details: {other}\n"),
        };
    };
    let text = |value: &Value| match value {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_by_key(|k| (k.as_str() != "cause", k.as_str()));
    keys.into_iter()
        .filter(|k| !map[*k].is_null())
        .map(|k| format!("  {k}: {}\n", text(&map[k])))
        .collect()
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

    fn server_error(code: &str, details: Value, hint: Option<&str>) -> ServerError {
        ServerError {
            code: code.into(),
            message: "the API server of cluster c1 is unreachable".into(),
            status: StatusCode::SERVICE_UNAVAILABLE,
            details,
            hint: hint.map(str::to_owned),
        }
    }

    #[test]
    fn server_errors_show_their_details_cause_first() {
        let text = server_error_text(&server_error(
            "CLUSTER_UNREACHABLE",
            serde_json::json!({
                "cluster": "0190", "api_server_url": "https://a:6443",
                "cause": "connection refused", "status": {"state": "OFFLINE"}
            }),
            None,
        ));
        assert_eq!(
            text,
            "error: CLUSTER_UNREACHABLE: the API server of cluster c1 is unreachable\n  \
             cause: connection refused\n  api_server_url: https://a:6443\n  cluster: 0190\n  \
             status: {\"state\":\"OFFLINE\"}\n"
        );
        let text = server_error_text(&server_error(
            "CREDENTIALS_ORIGIN_CHANGED",
            serde_json::json!({"moved": ["https://a:6443", "https://b:6443"], "binding": null}),
            Some("try again"),
        ));
        assert!(
            text.ends_with("\n  moved: https://a:6443, https://b:6443\n  hint: try again\n"),
            "{text}"
        );
        let text = server_error_text(&server_error("X", Value::Null, None));
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(path_segment("prod-east-1"), "prod-east-1");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }
}
