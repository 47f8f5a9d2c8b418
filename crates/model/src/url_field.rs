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
    Ok(())
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
    }
}
