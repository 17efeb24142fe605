//! Exact-value matching of the host's secrets in every common encoding.
//!
//! Each secret becomes several byte patterns: raw, URL-encoded, hex in
//! both cases, and the parts of its base64, base64url and base32 encodings
//! that do not depend on the bytes around it (one per alignment), so a
//! secret inside a larger encoded blob (e.g. HTTP Basic `user:secret`) is
//! still found. All patterns go into one Aho-Corasick automaton.

use aho_corasick::AhoCorasick;
use data_encoding::{Encoding, BASE32_NOPAD, BASE64URL_NOPAD, BASE64_NOPAD, HEXLOWER, HEXUPPER};

use crate::manifest::Secret;

/// Encoded forms shorter than this are dropped: they would match by chance.
pub const MIN_FORM_LEN: usize = 8;

/// One searchable form of one secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Form {
    /// The secret's name.
    pub secret: String,
    /// The encoding, e.g. `base64`.
    pub encoding: &'static str,
    /// The bytes searched for.
    pub pattern: Vec<u8>,
}

/// Every form of every secret, without duplicates.
pub fn forms(secrets: &[Secret]) -> Vec<Form> {
    let mut out: Vec<Form> = Vec::new();
    for s in secrets {
        let v = s.value.as_bytes();
        let mut add = |encoding: &'static str, pattern: Vec<u8>| {
            if pattern.len() >= MIN_FORM_LEN.min(v.len())
                && !pattern.is_empty()
                && !out.iter().any(|f| f.pattern == pattern)
            {
                out.push(Form {
                    secret: s.name.clone(),
                    encoding,
                    pattern,
                });
            }
        };
        for (encoding, pattern) in encodings(v, true) {
            // Stable parts shorter than the minimum are dropped even for a
            // short secret; the whole-value encodings are as long as it.
            let stable = matches!(encoding, "base64" | "base64url" | "base32");
            if !stable || pattern.len() >= MIN_FORM_LEN {
                add(encoding, pattern);
            }
        }
    }
    out
}

/// `v` in each encoding the matchers search for, named: raw, URL-encoded
/// and hex (each in both cases), then the stable parts of its base64,
/// base64url and (when `base32`) base32 encodings at every alignment.
pub(super) fn encodings(v: &[u8], base32: bool) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = vec![
        ("raw", v.to_vec()),
        ("url", url_encode(v, false)),
        ("url", url_encode(v, true)),
        ("hex", HEXLOWER.encode(v).into_bytes()),
        ("hex", HEXUPPER.encode(v).into_bytes()),
    ];
    for (name, enc, bits, group) in [
        ("base64", &BASE64_NOPAD, 6, 3),
        ("base64url", &BASE64URL_NOPAD, 6, 3),
        ("base32", &BASE32_NOPAD, 5, 5),
    ] {
        if name == "base32" && !base32 {
            continue;
        }
        for offset in 0..group {
            if let Some(p) = stable_part(enc, bits, offset, v) {
                out.push((name, p));
            }
        }
    }
    out
}

/// The characters of `enc(prefix ++ value)`, with `offset` prefix bytes,
/// that encode only bits of `value`.
pub(super) fn stable_part(
    enc: &Encoding,
    bits: usize,
    offset: usize,
    value: &[u8],
) -> Option<Vec<u8>> {
    let mut input = vec![0u8; offset];
    input.extend_from_slice(value);
    let text = enc.encode(&input).into_bytes();
    let start_bit = offset * 8;
    let end_bit = input.len() * 8;
    let first = start_bit.div_ceil(bits);
    let last = end_bit / bits; // exclusive: chars wholly inside
    (first < last && last <= text.len()).then(|| text[first..last].to_vec())
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub(super) fn url_encode(v: &[u8], upper: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 3);
    for &b in v {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else if upper {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.extend_from_slice(format!("%{b:02x}").as_bytes());
        }
    }
    out
}

/// The compiled automaton and what each pattern means.
#[derive(Clone, Debug)]
pub struct SecretMatcher {
    ac: Option<AhoCorasick>,
    forms: Vec<Form>,
}

/// Building the automaton failed (pattern set too large).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the secret matcher: {0}")]
pub struct BuildError(#[from] aho_corasick::BuildError);

impl SecretMatcher {
    /// Build from the loaded secrets.
    pub fn new(secrets: &[Secret]) -> Result<SecretMatcher, BuildError> {
        let forms = forms(secrets);
        let ac = if forms.is_empty() {
            None
        } else {
            Some(AhoCorasick::new(forms.iter().map(|f| &f.pattern))?)
        };
        Ok(SecretMatcher { ac, forms })
    }

    /// The first form found in `hay`.
    pub fn find(&self, hay: &[u8]) -> Option<&Form> {
        let m = self.ac.as_ref()?.find(hay)?;
        self.forms.get(m.pattern().as_usize())
    }

    /// Every form, in pattern-id order.
    pub fn forms(&self) -> &[Form] {
        &self.forms
    }

    /// Longest pattern, bytes (0 when there are no secrets).
    pub fn longest(&self) -> usize {
        self.forms
            .iter()
            .map(|f| f.pattern.len())
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use data_encoding::BASE32;

    fn secret(v: &str) -> Secret {
        Secret {
            name: "tok".into(),
            value: v.into(),
        }
    }

    #[test]
    fn found_in_every_encoding_and_alignment() {
        let value = "s3cr3t/Value+with=odd&chars";
        let m = SecretMatcher::new(&[secret(value)]).unwrap();
        let v = value.as_bytes();
        let mut cases: Vec<(String, Vec<u8>)> = vec![
            ("raw".into(), v.to_vec()),
            ("url".into(), url_encode(v, true)),
            ("url-lower".into(), url_encode(v, false)),
            ("hex".into(), HEXLOWER.encode(v).into_bytes()),
            ("HEX".into(), HEXUPPER.encode(v).into_bytes()),
        ];
        for pre in ["", "a", "ab", "abc", "user:", "abcd"] {
            let mut input = pre.as_bytes().to_vec();
            input.extend_from_slice(v);
            input.extend_from_slice(b"tail");
            cases.push((
                format!("base64 {pre:?}"),
                data_encoding::BASE64.encode(&input).into(),
            ));
            cases.push((
                format!("base64url {pre:?}"),
                BASE64URL_NOPAD.encode(&input).into(),
            ));
            if pre.is_empty() {
                cases.push((format!("base32 {pre:?}"), BASE32.encode(&input).into()));
            }
        }
        for (what, enc) in cases {
            let mut hay = b"prefix ".to_vec();
            hay.extend_from_slice(&enc);
            hay.extend_from_slice(b" suffix");
            let f = m.find(&hay);
            assert!(f.is_some(), "{what}: {}", String::from_utf8_lossy(&enc));
            assert_eq!(f.unwrap().secret, "tok");
        }
        assert!(m.find(b"nothing to see here, s3cr3t/Valu").is_none());
    }

    #[test]
    fn no_secrets_matches_nothing() {
        let m = SecretMatcher::new(&[]).unwrap();
        assert!(m.find(b"anything").is_none());
        assert_eq!(m.longest(), 0);
    }
}
