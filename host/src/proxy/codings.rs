//! Content and transfer codings, both ways: which ones the proxy must undo
//! to scan a body, and the ones it refuses because it would not see
//! through them.
//!
//! - A request's `Content-Encoding` is every value of every such header,
//!   in order (a second header is a second coding, not ignored); the DLP
//!   undoes `gzip` or `deflate` once and refuses anything else (415).
//! - A transfer coding other than `chunked` (a request's, or a response's
//!   `Transfer-Encoding: gzip, chunked`) is refused: hyper takes only the
//!   chunking off, so the bytes would pass compressed and unscanned.
//! - `TE` (which transfer codings the client accepts) goes upstream only
//!   as `trailers`.
//! - On a route that injects a credential, `Range` and `If-Range` are
//!   dropped: an upstream that reflects the credential could otherwise be
//!   read back in slices shorter than the redactor's smallest piece.

use hudsucker::hyper::header::{
    HeaderMap, HeaderName, CONTENT_ENCODING, IF_RANGE, RANGE, TE, TRANSFER_ENCODING,
};

use super::reply::Refusal;

/// Most content codings a response may stack (real servers use one).
/// Each layer has its own window (brotli up to 16 MiB), so a response
/// naming many would make the proxy hold many.
pub const MAX_RESPONSE_CODINGS: usize = 2;

/// Every value of header `name`, comma-separated items, trimmed and in
/// lower case; `Err` for a value that is not text.
fn items(h: &HeaderMap, name: &HeaderName) -> Result<Vec<String>, ()> {
    let mut out = Vec::new();
    for v in h.get_all(name) {
        let v = v.to_str().map_err(|_| ())?;
        out.extend(v.split(',').map(|i| i.trim().to_ascii_lowercase()));
    }
    Ok(out)
}

fn unsupported(what: &str) -> Refusal {
    Refusal {
        status: 415,
        rule: "unsupported-encoding".into(),
        reason: format!("{what} cannot be decoded to be checked"),
    }
}

/// Check a request's codings and tidy its headers; the `Content-Encoding`
/// the body scan must undo (all values joined), if any.
pub(super) fn request(h: &mut HeaderMap, credentialed: bool) -> Result<Option<String>, Refusal> {
    match items(h, &TRANSFER_ENCODING) {
        Ok(t) if t.iter().all(|c| c == "chunked") => {}
        Ok(t) => return Err(unsupported(&format!("transfer coding {:?}", t.join(", ")))),
        Err(()) => return Err(unsupported("a transfer coding that is not text")),
    }
    if h.get(TE)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
        || h.get_all(TE).iter().count() > 1
    {
        h.remove(TE);
    }
    if credentialed {
        h.remove(RANGE);
        h.remove(IF_RANGE);
    }
    if !h.contains_key(CONTENT_ENCODING) {
        return Ok(None);
    }
    match items(h, &CONTENT_ENCODING) {
        // `identity` alone, however often, is no coding.
        Ok(c) if c.iter().all(|c| c == "identity") => Ok(None),
        Ok(c) => Ok(Some(c.join(", "))),
        Err(()) => Ok(Some("(not text)".into())),
    }
}

/// Does the response name a coding decoded with a large window (brotli:
/// up to 16 MiB, zstd: up to 8 MiB)?
pub fn large_window(h: &HeaderMap) -> bool {
    items(h, &CONTENT_ENCODING).is_ok_and(|c| c.iter().any(|c| c == "br" || c == "zstd"))
}

/// Why a response cannot be scanned as it comes, if it cannot.
pub fn response(h: &HeaderMap) -> Result<(), String> {
    match items(h, &TRANSFER_ENCODING) {
        Ok(t) if t.iter().all(|c| c == "chunked") => {}
        Ok(t) => return Err(format!("transfer coding {:?}", t.join(", "))),
        Err(()) => return Err("a transfer coding that is not text".into()),
    }
    match items(h, &CONTENT_ENCODING) {
        Ok(c) if c.iter().filter(|c| *c != "identity").count() <= MAX_RESPONSE_CODINGS => Ok(()),
        Ok(c) => Err(format!(
            "{} content codings ({}; at most {MAX_RESPONSE_CODINGS})",
            c.len(),
            c.join(", ")
        )),
        Err(()) => Err("a content coding that is not text".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hudsucker::hyper::header::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn every_content_encoding_header_counts() {
        let cases = [
            (vec![], None),
            (vec![("content-encoding", "identity")], None),
            (
                vec![
                    ("content-encoding", "identity"),
                    ("content-encoding", "identity"),
                ],
                None,
            ),
            (vec![("content-encoding", "GZIP")], Some("gzip")),
            (
                vec![
                    ("content-encoding", "identity"),
                    ("content-encoding", "gzip"),
                ],
                Some("identity, gzip"),
            ),
            (
                vec![("content-encoding", "gzip"), ("content-encoding", "gzip")],
                Some("gzip, gzip"),
            ),
            (vec![("content-encoding", "gzip, br")], Some("gzip, br")),
        ];
        for (pairs, want) in cases {
            let mut h = headers(&pairs);
            let got = request(&mut h, false).unwrap();
            assert_eq!(got.as_deref(), want, "{pairs:?}");
        }
    }

    #[test]
    fn transfer_codings_other_than_chunked_are_refused() {
        for ok in ["chunked", "Chunked"] {
            let mut h = headers(&[("transfer-encoding", ok)]);
            assert!(request(&mut h, false).is_ok(), "{ok}");
            assert!(response(&h).is_ok(), "{ok}");
        }
        for bad in ["gzip, chunked", "deflate", "chunked, gzip", "x"] {
            let mut h = headers(&[("transfer-encoding", bad)]);
            let r = request(&mut h, false).unwrap_err();
            assert_eq!((r.status, r.rule.as_str()), (415, "unsupported-encoding"));
            assert!(response(&h).is_err(), "{bad}");
        }
        let h = headers(&[
            ("transfer-encoding", "gzip"),
            ("transfer-encoding", "chunked"),
        ]);
        assert!(response(&h).is_err());
    }

    #[test]
    fn te_goes_up_only_as_trailers_and_ranges_not_on_credentialed_routes() {
        let mut h = headers(&[("te", "gzip, trailers"), ("range", "bytes=0-9")]);
        request(&mut h, false).unwrap();
        assert!(!h.contains_key(TE));
        assert!(
            h.contains_key(RANGE),
            "a route without a credential keeps Range"
        );
        let mut h = headers(&[
            ("te", "trailers"),
            ("range", "bytes=0-9"),
            ("if-range", "x"),
        ]);
        request(&mut h, true).unwrap();
        assert_eq!(h.get(TE).unwrap(), "trailers");
        assert!(!h.contains_key(RANGE) && !h.contains_key(IF_RANGE));
    }

    #[test]
    fn responses_stack_at_most_two_codings() {
        assert!(response(&headers(&[("content-encoding", "gzip, br")])).is_ok());
        let h = headers(&[("content-encoding", "br"), ("content-encoding", "br, br")]);
        assert!(response(&h).unwrap_err().contains("3 content codings"));
    }
}
