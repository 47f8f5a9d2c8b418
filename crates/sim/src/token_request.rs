//! `POST …/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token`: the TokenRequest
//! API. Issues a random JWT-shaped service account token that the cluster then
//! accepts until it expires. Service accounts need not exist.

use crate::auth::{Credentials, TokenSource};
use crate::kube_status::KubeError;
use crate::random;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

/// Lifetime of a token when the request names none (Kubernetes' default).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Shortest lifetime a request may ask for (Kubernetes refuses less with 422).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const KIND: &str = "TokenRequest.authentication.k8s.io";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequest {
    kind: Option<String>,
    api_version: Option<String>,
    #[serde(default)]
    spec: TokenRequestSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequestSpec {
    audiences: Option<Vec<String>>,
    expiration_seconds: Option<i64>,
    bound_object_ref: Option<Value>,
}

/// Handles one TokenRequest: checks the body, mints the token, makes
/// `credentials` accept it, and answers the TokenRequest with its `status`.
/// A lifetime above `max_seconds` (the cluster's cap) is silently capped,
/// like kube-apiserver's `--service-account-max-token-expiration`.
pub(crate) fn create(
    credentials: &mut Credentials,
    namespace: &str,
    service_account: &str,
    body: &[u8],
    now: DateTime<Utc>,
    max_seconds: Option<i64>,
) -> Result<Value, KubeError> {
    let request: TokenRequest = serde_json::from_slice(body).map_err(|e| {
        KubeError::bad_request(format!(
            "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: {e}"
        ))
    })?;
    if request.kind.as_deref().is_some_and(|k| k != "TokenRequest") {
        return Err(KubeError::bad_request(
            "the kind does not match the expected kind \"TokenRequest\"",
        ));
    }
    if request
        .api_version
        .as_deref()
        .is_some_and(|v| v != "authentication.k8s.io/v1")
    {
        return Err(KubeError::bad_request(
            "the API version does not match the expected \"authentication.k8s.io/v1\"",
        ));
    }
    let seconds = request
        .spec
        .expiration_seconds
        .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    let invalid = |why: &str| {
        let cause = format!("spec.expirationSeconds: Invalid value: {seconds}: {why}");
        KubeError::invalid(KIND, "serviceaccounts", service_account, &cause)
    };
    if seconds < MIN_EXPIRATION_SECONDS {
        return Err(invalid("may not specify a duration less than 10 minutes"));
    }
    if seconds > MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let seconds = max_seconds.map_or(seconds, |max| seconds.min(max));
    let audiences = request
        .spec
        .audiences
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| vec![ISSUER.to_owned()]);
    let expires_at = now + Duration::seconds(seconds);
    let subject = format!("system:serviceaccount:{namespace}:{service_account}");
    let token = mint(
        namespace,
        service_account,
        &subject,
        &audiences,
        now,
        expires_at,
    );
    credentials.add_token(
        token.clone(),
        TokenSource::TokenRequest,
        Some(subject),
        now,
        Some(expires_at),
    );
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": service_account,
            "namespace": namespace,
            "creationTimestamp": null,
        },
        "spec": {
            "audiences": audiences,
            "expirationSeconds": seconds,
            "boundObjectRef": request.spec.bound_object_ref,
        },
        "status": {
            "token": token,
            "expirationTimestamp": expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        },
    }))
}

/// A JWT-shaped token: real header and claims, random bytes for a signature (the
/// simulator accepts tokens by value, not by signature).
fn mint(
    namespace: &str,
    service_account: &str,
    subject: &str,
    audiences: &[String],
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> String {
    let header = json!({"alg": "RS256", "kid": "fleetreg-sim"});
    let claims = json!({
        "aud": audiences,
        "exp": expires_at.timestamp(),
        "iat": now.timestamp(),
        "nbf": now.timestamp(),
        "iss": ISSUER,
        "jti": random::uid(),
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": service_account, "uid": random::uid()},
        },
        "sub": subject,
    });
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(random::bytes(64)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    fn claims(token: &str) -> Value {
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    }

    #[test]
    fn issues_an_accepted_jwt_shaped_token() {
        let mut credentials = Credentials::default();
        let now = Utc::now();
        let body = br#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":900,"audiences":["fleetreg"]}}"#;
        let answer = create(&mut credentials, "ops", "reader", body, now, None).unwrap();
        let token = answer["status"]["token"].as_str().unwrap();
        assert_eq!(token.split('.').count(), 3);
        let claims = claims(token);
        assert_eq!(claims["sub"], "system:serviceaccount:ops:reader");
        assert_eq!(claims["aud"], json!(["fleetreg"]));
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            900
        );
        let listed = credentials.tokens(now);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].token, token);
        assert_eq!(listed[0].source, TokenSource::TokenRequest);

        let default = create(&mut credentials, "ops", "reader", b"{}", now, None).unwrap();
        assert_eq!(default["spec"]["expirationSeconds"], 3600);

        // A cluster capping lifetimes issues shorter tokens than asked.
        let capped = create(&mut credentials, "ops", "reader", b"{}", now, Some(1200)).unwrap();
        assert_eq!(capped["spec"]["expirationSeconds"], 1200);
        let claims = self::claims(capped["status"]["token"].as_str().unwrap());
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            1200
        );
    }

    #[test]
    fn refuses_short_lifetimes_and_bad_bodies() {
        let mut credentials = Credentials::default();
        let now = Utc::now();
        let short = br#"{"spec":{"expirationSeconds":599}}"#;
        let error = create(&mut credentials, "ns", "sa", short, now, None).unwrap_err();
        assert_eq!(
            error.into_response().status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let error = create(&mut credentials, "ns", "sa", b"", now, None).unwrap_err();
        assert_eq!(error.into_response().status(), StatusCode::BAD_REQUEST);
        assert!(credentials.tokens(now).is_empty());
    }
}
