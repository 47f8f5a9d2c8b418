//! [`Prober::request_token`]: a service account token from the cluster's
//! TokenRequest API, for rotating credentials before they expire (seed 13.3).

use crate::credential::secret;
use crate::error::Error;
use crate::prober::Prober;
use crate::remote::fetch;
use crate::target::Target;
use chrono::{DateTime, Utc};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::Resource;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

impl Prober {
    /// Asks the API server, with the target's credential, for a token of
    /// `service_account` in `namespace` valid for `expiration_seconds`
    /// (Kubernetes refuses less than 600), for the API server's default
    /// audience. Returns the token and when it expires, as the API server says.
    /// Bounded by `timeout`.
    pub async fn request_token(
        &self,
        target: &Target,
        namespace: &str,
        service_account: &str,
        expiration_seconds: i64,
        timeout: Duration,
    ) -> Result<(SecretString, DateTime<Utc>), Error> {
        check_name("namespace", namespace, 63, false)?;
        check_name("service account", service_account, 253, true)?;
        let call =
            self.request_token_unbounded(target, namespace, service_account, expiration_seconds);
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout { after: timeout }),
        }
    }

    async fn request_token_unbounded(
        &self,
        target: &Target,
        namespace: &str,
        service_account: &str,
        expiration_seconds: i64,
    ) -> Result<(SecretString, DateTime<Utc>), Error> {
        let api = self.api_server(target)?;
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(expiration_seconds),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let what = "create TokenRequest";
        let body = serde_json::to_vec(&request).map_err(|e| Error::Setup {
            reason: format!("cannot encode the TokenRequest: {e}"),
        })?;
        let http_request = kube::core::Request::new(ServiceAccount::url_path(&(), Some(namespace)))
            .create_subresource("token", service_account, &PostParams::default(), body);
        let mut answer: TokenRequest = fetch(&api, http_request, what).await?;
        let unexpected = |reason: &str| Error::UnexpectedResponse {
            what: "TokenRequest",
            reason: reason.to_owned(),
        };
        let status = answer
            .status
            .as_mut()
            .ok_or_else(|| unexpected("no status"))?;
        let token = secret(std::mem::take(&mut status.token));
        if token.expose_secret().is_empty() {
            return Err(unexpected("no token in the status"));
        }
        let at = status.expiration_timestamp.0;
        let nanos = u32::try_from(at.subsec_nanosecond()).unwrap_or(0);
        let expires_at = DateTime::from_timestamp(at.as_second(), nanos)
            .ok_or_else(|| unexpected("an expiration timestamp out of range"))?;
        Ok((token, expires_at))
    }
}

/// A Kubernetes object name: a DNS label (namespaces) or subdomain (service
/// accounts), so that it cannot change the request path.
fn check_name(what: &'static str, name: &str, max: usize, dots: bool) -> Result<(), Error> {
    let invalid = |reason: &str| Error::InvalidName {
        what,
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() || name.len() > max {
        return Err(invalid(&format!("must be 1 to {max} characters")));
    }
    let allowed =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.');
    let bytes = name.as_bytes();
    let edges_ok = [bytes[0], bytes[bytes.len() - 1]]
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !bytes.iter().all(|&b| allowed(b)) || !edges_ok {
        return Err(invalid(
            "lower-case letters, digits and '-' only, starting and ending with a letter or digit",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_change_the_path() {
        assert!(check_name("namespace", "kube-system", 63, false).is_ok());
        assert!(check_name("service account", "fleet.reader-1", 253, true).is_ok());
        for bad in ["", "a/b", "../x", "A", "-a", "a-", "a?b", "a.b"] {
            assert!(check_name("namespace", bad, 63, false).is_err(), "{bad}");
        }
        assert!(check_name("namespace", &"a".repeat(64), 63, false).is_err());
    }
}
