//! The HTTP client behind every CLI command, and how its errors are shown.

use clap::Args;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Connection flags shared by every client command (the raw stage).
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Server URL [env: FLEETREG_URL] [default: http://127.0.0.1:8080].
    #[arg(long, global = true)]
    pub server: Option<String>,
    /// Bearer token [env: FLEETREG_TOKEN, then FLEETREG_ADMIN_TOKEN].
    #[arg(long, global = true, hide_env_values = true)]
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
}

/// The resolved connection: where to send requests and with which token.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// Resolves flags, then environment, then defaults.
    pub fn from_args(args: &ConnectArgs) -> anyhow::Result<Client> {
        let base = args
            .server
            .clone()
            .or_else(|| std::env::var("FLEETREG_URL").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let token = args
            .token
            .clone()
            .or_else(|| std::env::var("FLEETREG_TOKEN").ok())
            .or_else(|| std::env::var("FLEETREG_ADMIN_TOKEN").ok())
            .filter(|s| !s.is_empty());
        let http = reqwest::Client::builder().build()?;
        Ok(Client { base: base.trim_end_matches('/').to_owned(), token, http })
    }

    /// A request to `path` (starting with `/`).
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends and decodes a JSON answer, turning error envelopes into [`ServerError`].
    pub async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let response = self.send_raw(request).await?;
        Ok(response.json::<T>().await?)
    }

    /// Sends, returning the response when its status is a success.
    pub async fn send_raw(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = request.send().await.map_err(|e| {
            anyhow::anyhow!("cannot reach the fleetreg server at {}: {}", self.base, root_cause(&e))
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str().unwrap_or("HTTP_ERROR").to_owned();
        let message = body["error"]["message"].as_str().map_or_else(|| status.to_string(), str::to_owned);
        Err(ServerError { code, message, status }.into())
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
pub fn print_error(error: &anyhow::Error) {
    if let Some(server) = error.downcast_ref::<ServerError>() {
        eprintln!("error: {}: {}", server.code, server.message);
        return;
    }
    eprintln!("error: {error}");
    for cause in error.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}
