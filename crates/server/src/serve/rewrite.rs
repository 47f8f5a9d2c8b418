//! The answers hyper writes by itself in the error envelope.
//!
//! When a request head cannot be parsed (a byte that is not HTTP, a head
//! larger than [`crate::front::MAX_HEAD_BYTES`], more than
//! [`crate::front::MAX_HEADERS`] fields, a target over 64 KiB), hyper answers
//! 400, 431 or 414 with an empty body and closes the connection; it offers no
//! hook to change that answer. It is always the last thing written on the
//! connection, written when no request is in progress, and always the same
//! bytes: a status line and `content-length: 0` (and `date`). The connection's
//! writer ([`super::connection::Tracked`]) recognises exactly that tail and
//! writes [`envelope_response`] in its place.

use crate::error::{status_of, ApiError};
use crate::front::{MAX_URI_BYTES, REQUEST_ID};
use fleetreg_model::ErrorCode;
use serde_json::json;

/// The codes of hyper's automatic answers.
fn code_of(status: &[u8]) -> Option<ErrorCode> {
    match status {
        b"400" => Some(ErrorCode::MalformedRequest),
        b"414" => Some(ErrorCode::UriTooLong),
        b"431" => Some(ErrorCode::HeadersTooLarge),
        _ => None,
    }
}

/// If `written` ends with one of hyper's automatic error answers, returns
/// where it starts, its code and its `date` value.
fn automatic_answer(written: &[u8]) -> Option<(usize, ErrorCode, Option<&[u8]>)> {
    const START: &[u8] = b"HTTP/1.1 ";
    let start = written
        .windows(START.len())
        .rposition(|window| window == START)?;
    if !written.ends_with(b"\r\n\r\n") {
        return None;
    }
    // Every line of the head, each ending in CRLF.
    let head = &written[start..written.len() - 2];
    let mut lines = head
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| l.strip_suffix(b"\r"));
    let status_line = lines.next()??;
    let code = code_of(status_line.get(START.len()..START.len() + 3)?)?;
    let mut date = None;
    let mut saw_length = false;
    for line in lines {
        let line = line?;
        if line.eq_ignore_ascii_case(b"content-length: 0") {
            saw_length = true;
        } else if line.len() > 6 && line[..6].eq_ignore_ascii_case(b"date: ") {
            date = Some(&line[6..]);
        } else if !line.eq_ignore_ascii_case(b"connection: close") {
            return None;
        }
    }
    saw_length.then_some((start, code, date))
}

/// What the client is told for each automatic answer.
fn error_for(code: ErrorCode) -> ApiError {
    match code {
        ErrorCode::UriTooLong => ApiError::new(
            code,
            format!("the request target is longer than {MAX_URI_BYTES} bytes"),
        )
        .with_details(json!({ "limit_bytes": MAX_URI_BYTES })),
        ErrorCode::HeadersTooLarge => crate::front::headers_too_large(),
        _ => ApiError::new(
            ErrorCode::MalformedRequest,
            "the request is not valid HTTP/1.1 (request line, header name or header value)",
        ),
    }
}

/// A complete HTTP/1.1 answer with `code`'s status and envelope, a fresh
/// request id, and `connection: close`.
pub(crate) fn envelope_response(
    code: ErrorCode,
    error: ApiError,
    date: Option<&[u8]>,
    request_id: &str,
) -> Vec<u8> {
    let status = status_of(code);
    let body = error.envelope().to_string();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}: {}\r\nconnection: close\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        REQUEST_ID.as_str(),
        request_id,
    )
    .into_bytes();
    if status == axum::http::StatusCode::SERVICE_UNAVAILABLE {
        out.extend_from_slice(b"retry-after: 1\r\n");
    }
    if let Some(date) = date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

/// `written` with a trailing automatic answer of hyper's replaced by the
/// envelope (logged and counted with its request id), or `None` when it
/// does not end with one.
pub(crate) fn replace_automatic_answer(written: &[u8]) -> Option<Vec<u8>> {
    let (start, code, date) = automatic_answer(written)?;
    let request_id = uuid::Uuid::new_v4().to_string();
    let status = status_of(code).as_u16();
    tracing::debug!(%request_id, status, code = code.as_str(), "refused a request hyper could not parse");
    crate::metrics::record_unparsed(status);
    let mut out = written[..start].to_vec();
    out.extend(envelope_response(code, error_for(code), date, &request_id));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Tue, 01 Jul 2025 10:00:00 GMT";

    #[test]
    fn recognises_exactly_hyper_s_automatic_answers() {
        for (status, code) in [
            ("400 Bad Request", "MALFORMED_REQUEST"),
            ("414 URI Too Long", "URI_TOO_LONG"),
            ("431 Request Header Fields Too Large", "HEADERS_TOO_LARGE"),
        ] {
            let auto = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n");
            let (start, found, date) = automatic_answer(auto.as_bytes()).unwrap();
            assert_eq!((start, found.as_str()), (0, code));
            assert_eq!(date, Some(DATE.as_bytes()));
            // After the tail of an earlier answer in the same write.
            let both = format!("0\r\n\r\n{auto}");
            assert_eq!(automatic_answer(both.as_bytes()).unwrap().0, 5);
        }
        for other in [
            // Our own answers carry a type and a body.
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-request-id: a\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nmore",
            "HTTP/1.1 400 Bad Request\r\n\r\n",
            "{\"a\":1}",
        ] {
            assert!(automatic_answer(other.as_bytes()).is_none(), "{other:?}");
        }
    }

    #[test]
    fn the_replacement_is_a_complete_envelope() {
        let auto = format!("HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n");
        let out = String::from_utf8(replace_automatic_answer(auto.as_bytes()).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains(&format!("date: {DATE}")), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let id = head
            .lines()
            .find_map(|l| l.strip_prefix("x-request-id: "))
            .unwrap();
        assert!(crate::front::is_plain_request_id(id.as_bytes()), "{id}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "HEADERS_TOO_LARGE");
    }
}
