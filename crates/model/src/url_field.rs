//! URL fields: absolute http(s) URLs with a host and a length limit.

use crate::Error;

/// Checks that `value` is an absolute `http`/`https` URL with a host, at most `max_len` bytes.
pub(crate) fn validate_url(field: &str, value: &str, max_len: usize) -> Result<(), Error> {
    if value.len() > max_len {
        return Err(Error::invalid(
            field,
            format!("must be at most {max_len} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    let parsed = url::Url::parse(value)
        .map_err(|e| Error::invalid(field, format!("not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::invalid(field, "URL scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(field, "URL must name a host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::invalid(
            field,
            "URL must not carry credentials; upload them as credentials instead",
        ));
    }
    check_plain_host(field, value, &parsed)
}

/// The host must be written as it will be contacted. A URL parser turns
/// `%31%36%39.254.169.254`, `0xa9.0xfe.0xa9.0xfe` or `2852039166` into
/// `169.254.169.254`; a registry that keeps the written form shows one
/// address and connects to another, so only the parser's own form (lower
/// case, dotted decimal, punycode) is accepted. IPv6 literals are exempt:
/// their brackets keep them unambiguous.
fn check_plain_host(field: &str, value: &str, parsed: &url::Url) -> Result<(), Error> {
    let after_scheme = value.split_once("://").map_or(value, |(_, rest)| rest);
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    if authority.starts_with('[') {
        return Ok(());
    }
    let written = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host);
    let canonical = parsed.host_str().unwrap_or_default();
    if written.eq_ignore_ascii_case(canonical) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("write the host as {canonical:?}: encoded or abbreviated host names are not accepted"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(validate_url("u", "https://api.example.com:6443", 512).is_ok());
        assert!(validate_url("u", "http://10.0.0.1", 512).is_ok());
        assert!(validate_url("u", "not a url", 512).is_err());
        assert!(validate_url("u", "ftp://x", 512).is_err());
        assert!(validate_url("u", "https://user:pw@x", 512).is_err());
        assert!(validate_url("u", "https://", 512).is_err());
        assert!(validate_url("u", "https://a.b/\u{0}", 512).is_err());
        assert!(validate_url("u", "https://a.b/#\u{7}", 512).is_err());
        assert!(validate_url("u", &format!("https://{}.com", "a".repeat(600)), 512).is_err());
        assert!(validate_url("u", "https://API.Example.com:6443/x?y#z", 512).is_ok());
        assert!(validate_url("u", "http://[::1]:8080/", 512).is_ok());
        assert!(validate_url("u", "http://127.0.0.1:9000/c/x", 512).is_ok());
    }

    #[test]
    fn hosts_must_be_written_as_contacted() {
        for obfuscated in [
            "http://%31%36%39.254.169.254/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://2852039166/",
            "http://169.254.43518/",
            "https://b\u{fc}cher.example/",
            "http://0251.0376.0251.0376:80/",
        ] {
            let error = validate_url("u", obfuscated, 512).unwrap_err();
            assert_eq!(error.field(), "u", "{obfuscated}");
        }
    }
}
