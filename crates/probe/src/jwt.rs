//! The `exp` claim of a JWT-shaped bearer token (service account tokens are
//! JWTs; OpenShift `sha256~…` tokens and other opaque tokens are not). The
//! signature is not checked: the expiry is only a hint for rotation, the
//! cluster remains the judge of the token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// When `token` expires, if it is a JWT (three base64url parts, a JSON object
/// header with `alg`, a JSON object payload) with a numeric `exp` that a
/// store can keep (years 0001–9999, see [`exp_is_storable`]); `None` otherwise.
pub(crate) fn expiry(token: &str) -> Option<DateTime<Utc>> {
    exp_seconds(token)
        .filter(|s| fleetreg_model::is_storable_seconds(*s))
        .and_then(|s| DateTime::from_timestamp(s, 0))
}

/// False for a JWT whose `exp` lies outside years 0001–9999: neither store
/// keeps such a time faithfully, so the token is refused at upload rather
/// than its expiry silently dropped or mis-sorted.
pub(crate) fn exp_is_storable(token: &str) -> bool {
    exp_seconds(token).is_none_or(fleetreg_model::is_storable_seconds)
}

/// The `exp` claim in whole seconds, if `token` is a JWT that has a numeric one.
fn exp_seconds(token: &str) -> Option<i64> {
    let exp = claims(token)?.get("exp")?.clone();
    match exp.as_i64() {
        Some(seconds) => Some(seconds),
        // RFC 7519 NumericDate may carry a fraction; beyond i64 it saturates
        // (and is then out of the storable range).
        None => exp
            .as_f64()
            .filter(|s| s.is_finite())
            .map(|s| s.floor() as i64),
    }
}

/// The service account a JWT-shaped token stands for, as `(namespace, name)`:
/// from the `kubernetes.io` claim (`namespace`, `serviceaccount.name`), else
/// from `sub: system:serviceaccount:{namespace}:{name}`; `None` for any other
/// token. Unverified, like [`expiry`]: it only says whom to ask the cluster a
/// fresh token for, with the current token, and the cluster judges that.
pub(crate) fn service_account(token: &str) -> Option<(String, String)> {
    let claims = claims(token)?;
    let nonempty = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    if let Some(k8s) = claims.get("kubernetes.io").and_then(Value::as_object) {
        let namespace = nonempty(k8s.get("namespace"));
        let name = nonempty(k8s.get("serviceaccount").and_then(|sa| sa.get("name")));
        if let (Some(namespace), Some(name)) = (namespace, name) {
            return Some((namespace, name));
        }
    }
    let subject = nonempty(claims.get("sub"))?;
    let rest = subject.strip_prefix("system:serviceaccount:")?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':'))
        .then(|| (namespace.to_owned(), name.to_owned()))
}

/// The unverified claims of a JWT-shaped token: three parts, a JSON object
/// header naming its `alg`, a JSON object payload.
fn claims(token: &str) -> Option<serde_json::Map<String, Value>> {
    let mut parts = token.split('.');
    let (header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    decode_object(header)?.get("alg")?.as_str()?;
    decode_object(payload)
}

/// A base64url segment (padding tolerated) holding a JSON object.
fn decode_object(segment: &str) -> Option<serde_json::Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jwt(header: Value, claims: Value) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    #[test]
    fn reads_exp() {
        let token = jwt(
            json!({"alg": "RS256"}),
            json!({"exp": 1_900_000_000, "sub": "x"}),
        );
        assert_eq!(expiry(&token).unwrap().timestamp(), 1_900_000_000);
        let fractional = jwt(json!({"alg": "RS256"}), json!({"exp": 1_900_000_000.7}));
        assert_eq!(expiry(&fractional).unwrap().timestamp(), 1_900_000_000);
    }

    #[test]
    fn reads_the_service_account() {
        let alg = || json!({"alg": "RS256"});
        let both = jwt(
            alg(),
            json!({"sub": "system:serviceaccount:other:x",
                   "kubernetes.io": {"namespace": "fleet-system", "serviceaccount": {"name": "fleetreg", "uid": "u"}}}),
        );
        let sa = |ns: &str, name: &str| Some((ns.to_owned(), name.to_owned()));
        assert_eq!(service_account(&both), sa("fleet-system", "fleetreg"));
        let sub = jwt(alg(), json!({"sub": "system:serviceaccount:ns1:reader"}));
        assert_eq!(service_account(&sub), sa("ns1", "reader"));
        for token in [
            jwt(alg(), json!({"sub": "system:admin"})),
            jwt(alg(), json!({"sub": "system:serviceaccount:ns1"})),
            jwt(alg(), json!({"sub": "system:serviceaccount::x"})),
            jwt(alg(), json!({"sub": "system:serviceaccount:a:b:c"})),
            jwt(
                json!({"typ": "JWT"}),
                json!({"sub": "system:serviceaccount:a:b"}),
            ),
            "sha256~opaque".to_owned(),
        ] {
            assert_eq!(service_account(&token), None, "{token}");
        }
    }

    #[test]
    fn an_exp_outside_years_1_to_9999_is_not_storable() {
        for exp in [
            json!(253_402_300_800_i64),
            json!(-62_135_596_801_i64),
            json!(1e300),
            json!(-1e300),
        ] {
            let token = jwt(json!({"alg": "RS256"}), json!({ "exp": exp }));
            assert!(!exp_is_storable(&token), "{exp}");
            assert_eq!(expiry(&token), None, "{exp}");
        }
        let last = jwt(json!({"alg": "RS256"}), json!({"exp": 253_402_300_799_i64}));
        assert!(exp_is_storable(&last));
        assert_eq!(expiry(&last).unwrap().timestamp(), 253_402_300_799);
        assert!(exp_is_storable("opaque-token"));
    }

    #[test]
    fn ignores_what_is_not_a_jwt_with_exp() {
        for token in [
            "sha256~abcdefghijklmnop".to_owned(),
            "a.b.c".to_owned(),
            "opaque-token".to_owned(),
            jwt(json!({"alg": "RS256"}), json!({"sub": "no exp"})),
            jwt(json!({"typ": "JWT"}), json!({"exp": 1})),
            jwt(json!({"alg": "RS256"}), json!({"exp": "soon"})),
            format!("{}.extra", jwt(json!({"alg": "RS256"}), json!({"exp": 1}))),
        ] {
            assert_eq!(expiry(&token), None, "{token}");
        }
    }
}
