//! Exact-value matching of the host's secrets in every common encoding.
//!
//! Each secret becomes several byte patterns: raw, URL-encoded, hex, and
//! the parts of its base64, base64url and base32 encodings that do not
//! depend on the bytes around it (one per alignment), so a secret inside a
//! larger encoded blob (e.g. HTTP Basic `user:secret`) is still found;
//! then one level of stacked encoding ([`stacked`]: base64 of its hex,
//! hex of its base64, ...).
//!
//! A secret that has piece matching ([`super::fragments`]) is found in
//! raw, URL-encoded, hex, base64 and base64url form by its pieces; those
//! forms are then *covered*: not searched for again, only used to name a
//! hit whose piece lies inside the whole form `secret:` (not
//! `secret-piece:`).
//!
//! Hex and base32 are case-insensitive to their decoders, so their
//! patterns are *folded*: lowercase, searched for in an ASCII-lowercased
//! copy of the text, which finds them in upper, lower and mixed case.

use aho_corasick::AhoCorasick;
use data_encoding::{Encoding, BASE32_NOPAD, BASE64URL_NOPAD, BASE64_NOPAD, HEXLOWER};

use crate::manifest::Secret;

/// Encoded forms shorter than this are dropped: they would match by chance.
pub const MIN_FORM_LEN: usize = 8;

/// One searchable form of one secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Form {
    /// The secret's name.
    pub secret: String,
    /// The encoding, e.g. `base64` or `base64(hex)`.
    pub encoding: &'static str,
    /// The bytes searched for.
    pub pattern: Vec<u8>,
    /// Searched for in the ASCII-lowercased text (`pattern` is lowercase).
    pub folded: bool,
    /// Found by piece matching already (the secret has pieces, and pieces
    /// are searched for in this encoding): not searched for on its own; a
    /// piece found inside it whole is named after it.
    pub covered: bool,
}

/// One encoding of a value: its name, text, and whether it is folded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// The encoding, e.g. `base64`.
    pub encoding: &'static str,
    /// The encoded text (lowercase when folded).
    pub text: Vec<u8>,
    /// Case-insensitive: searched for in the lowercased text.
    pub folded: bool,
}

fn enc(encoding: &'static str, text: Vec<u8>, folded: bool) -> Encoded {
    Encoded {
        encoding,
        text,
        folded,
    }
}

/// Every form of every secret, without duplicates.
pub fn forms(secrets: &[Secret]) -> Vec<Form> {
    let mut out: Vec<Form> = Vec::new();
    for s in secrets {
        let v = s.value.as_bytes();
        let pieces = super::fragments::has_pieces(v);
        let mut add = |e: Encoded| {
            if e.text.len() >= MIN_FORM_LEN.min(v.len())
                && !e.text.is_empty()
                && !out
                    .iter()
                    .any(|f| f.pattern == e.text && f.folded == e.folded)
            {
                let covered = pieces && super::fragments::ENCODINGS.contains(&e.encoding);
                out.push(Form {
                    secret: s.name.clone(),
                    encoding: e.encoding,
                    pattern: e.text,
                    folded: e.folded,
                    covered,
                });
            }
        };
        for e in encodings(v, true).into_iter().chain(stacked(v)) {
            // Stable parts shorter than the minimum are dropped even for a
            // short secret; the whole-value encodings are as long as it.
            let whole = matches!(e.encoding, "raw" | "url" | "hex");
            if whole || e.text.len() >= MIN_FORM_LEN {
                add(e);
            }
        }
    }
    out
}

/// `v` in each encoding the matchers search for, named: raw, URL-encoded
/// (both cases), hex (folded), then the stable parts of its base64,
/// base64url and (when `base32`) base32 (folded) encodings at every
/// alignment.
pub fn encodings(v: &[u8], base32: bool) -> Vec<Encoded> {
    let mut out = vec![
        enc("raw", v.to_vec(), false),
        enc("url", url_encode(v, false), false),
        enc("url", url_encode(v, true), false),
        enc("hex", HEXLOWER.encode(v).into_bytes(), true),
    ];
    for (name, e, bits, group) in [
        ("base64", &BASE64_NOPAD, 6, 3),
        ("base64url", &BASE64URL_NOPAD, 6, 3),
        ("base32", &BASE32_NOPAD, 5, 5),
    ] {
        if name == "base32" && !base32 {
            continue;
        }
        for offset in 0..group {
            if let Some(p) = stable_part(e, bits, offset, v) {
                let folded = name == "base32";
                let p = if folded { p.to_ascii_lowercase() } else { p };
                out.push(enc(name, p, folded));
            }
        }
    }
    out
}

/// Names of the stacked forms: `OUTER(INNER)`, by outer then inner
/// encoding in the order of [`stacked`].
const STACKED: [[&str; 5]; 3] = [
    [
        "hex(hex)",
        "hex(base64)",
        "hex(base64url)",
        "hex(base32)",
        "hex(url)",
    ],
    [
        "base64(hex)",
        "base64(base64)",
        "base64(base64url)",
        "base64(base32)",
        "base64(url)",
    ],
    [
        "base64url(hex)",
        "base64url(base64)",
        "base64url(base64url)",
        "base64url(base32)",
        "base64url(url)",
    ],
];

/// One level of stacked encoding: `v` encoded whole (hex, base64,
/// base64url, base32, URL-encoded), and that text encoded again whole
/// (hex, folded; base64; base64url: the stable part from its first
/// character). URL- and text-escaping as the outer layer need no forms:
/// the DLP scans percent- and escape-decoded views. Left out for their
/// cost (each would add about five patterns a secret to the SIMD
/// searchers, which slow down past 32): base32 as the outer layer, and
/// uppercase hex as the inner one (docs/security.md).
pub fn stacked(v: &[u8]) -> Vec<Encoded> {
    let mut inner = vec![
        (0, HEXLOWER.encode(v)),
        (1, BASE64_NOPAD.encode(v)),
        (2, BASE64URL_NOPAD.encode(v)),
        (3, BASE32_NOPAD.encode(v)),
    ];
    let url = url_encode(v, true);
    if url != v {
        inner.push((4, String::from_utf8_lossy(&url).into_owned()));
    }
    let mut out = Vec::new();
    for (i, text) in inner {
        let t = text.as_bytes();
        out.push(enc(STACKED[0][i], HEXLOWER.encode(t).into_bytes(), true));
        for (o, e) in [(1, &BASE64_NOPAD), (2, &BASE64URL_NOPAD)] {
            if let Some(p) = stable_part(e, 6, 0, t) {
                out.push(enc(STACKED[o][i], p, false));
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

/// Patterns per searcher: aho-corasick's SIMD (Teddy) searcher handles at
/// most 64.
pub const PER_GROUP: usize = 64;

/// A leftmost-first search over at most [`PER_GROUP`] patterns: the SIMD
/// (Teddy) searcher itself where the CPU has it, else an Aho-Corasick
/// automaton. (Through `AhoCorasick`, Teddy is only a prefilter it may
/// pass over: for patterns that start with a few common bytes, as
/// stacked and hex forms do, it picks a first-byte prefilter that stops at
/// every digit, 50 times slower on ordinary text.)
#[derive(Clone, Debug)]
pub enum Group {
    /// Teddy, Rabin-Karp for short texts.
    Packed(aho_corasick::packed::Searcher),
    /// The fallback.
    Automaton(AhoCorasick),
}

impl Group {
    fn new<P: AsRef<[u8]>>(patterns: &[P]) -> Result<Group, BuildError> {
        let packed = aho_corasick::packed::Config::new()
            .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
            .builder()
            .extend(patterns)
            .build();
        if let Some(p) = packed {
            return Ok(Group::Packed(p));
        }
        Ok(Group::Automaton(
            AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                .build(patterns)?,
        ))
    }

    /// The leftmost-first match in `hay[from..]`: pattern, start, end.
    pub fn find(&self, hay: &[u8], from: usize) -> Option<(usize, usize, usize)> {
        let m = match self {
            Group::Packed(p) => p.find_in(hay, aho_corasick::Span::from(from..hay.len()))?,
            Group::Automaton(ac) => ac.find(aho_corasick::Input::new(hay).range(from..))?,
        };
        Some((m.pattern().as_usize(), m.start(), m.end()))
    }
}

/// Searchers over `patterns`, [`PER_GROUP`] each, with the index of each
/// one's first pattern.
pub fn groups<P: AsRef<[u8]>>(patterns: &[P]) -> Result<Vec<(Group, usize)>, BuildError> {
    patterns
        .chunks(PER_GROUP)
        .enumerate()
        .map(|(i, chunk)| Ok((Group::new(chunk)?, i * PER_GROUP)))
        .collect()
}

/// The compiled automata and what each pattern means.
#[derive(Clone, Debug)]
pub struct SecretMatcher {
    forms: Vec<Form>,
    /// Groups over the forms that are not folded, then over those that
    /// are; pattern indexes are into `order`.
    plain: Vec<(Group, usize)>,
    folded: Vec<(Group, usize)>,
    /// Form index of each plain pattern, then of each folded one.
    order: Vec<usize>,
    plain_len: usize,
}

/// Building the automaton failed (pattern set too large).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the secret matcher: {0}")]
pub struct BuildError(#[from] aho_corasick::BuildError);

/// A form found: which, and where it ends in the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// Index into [`SecretMatcher::forms`].
    pub form: usize,
    /// Where the match starts and ends.
    pub start: usize,
    /// End of the match (exclusive).
    pub end: usize,
}

impl SecretMatcher {
    /// Build from the loaded secrets.
    pub fn new(secrets: &[Secret]) -> Result<SecretMatcher, BuildError> {
        let forms = forms(secrets);
        let searched = |folded: bool| -> Vec<usize> {
            (0..forms.len())
                .filter(|&i| forms[i].folded == folded && !forms[i].covered)
                .collect()
        };
        let mut order = searched(false);
        let plain_len = order.len();
        order.extend(searched(true));
        let pats = |r: &[usize]| r.iter().map(|&i| &forms[i].pattern).collect::<Vec<_>>();
        Ok(SecretMatcher {
            plain: groups(&pats(&order[..plain_len]))?,
            folded: groups(&pats(&order[plain_len..]))?,
            forms,
            order,
            plain_len,
        })
    }

    /// The texts searched for (not the covered forms), those searched in
    /// the lowercased text (`folded`) or in the text as it is.
    pub fn searched(&self, folded: bool) -> impl Iterator<Item = &[u8]> {
        let order = if folded {
            &self.order[self.plain_len..]
        } else {
            &self.order[..self.plain_len]
        };
        order.iter().map(|&i| &self.forms[i].pattern[..])
    }

    /// Are any forms folded (is the lowercased text needed)?
    pub fn has_folded(&self) -> bool {
        !self.folded.is_empty()
    }

    /// The form ending first in `hay` (then the one listed first);
    /// `folded` is `hay` ASCII-lowercased, needed when [`Self::has_folded`].
    pub fn find_in(&self, hay: &[u8], folded: Option<&[u8]>) -> Option<Found> {
        let plain = self.plain.iter().map(|g| (g, hay, 0));
        let lower = folded
            .into_iter()
            .flat_map(|f| self.folded.iter().map(move |g| (g, f, self.plain_len)));
        plain
            .chain(lower)
            .filter_map(|((g, base), text, skip)| {
                let (pattern, start, end) = g.find(text, 0)?;
                Some((end, self.order[skip + base + pattern], start))
            })
            .min()
            .map(|(end, form, start)| Found { form, start, end })
    }

    /// A form found in `hay`: the first one searched for, else any
    /// covered one (a slow search, for tests and tools).
    pub fn find(&self, hay: &[u8]) -> Option<&Form> {
        let lower = hay.to_ascii_lowercase();
        if let Some(f) = self.find_in(hay, Some(&lower)) {
            return self.forms.get(f.form);
        }
        self.forms.iter().find(|f| {
            let text = if f.folded { &lower } else { hay };
            f.covered && memchr::memmem::find(text, &f.pattern).is_some()
        })
    }

    /// Does `text` hold a whole covered form of `secret` in `encoding`
    /// (`text` lowercased for a folded encoding)?
    pub fn whole(&self, secret: &str, encoding: &str, text: &[u8]) -> bool {
        self.forms.iter().any(|f| {
            f.covered
                && f.encoding == encoding
                && f.secret == secret
                && memchr::memmem::find(text, &f.pattern).is_some()
        })
    }

    /// Every form.
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

/// The encoding's name for the text `matched`: a folded form found in
/// mixed case (both upper- and lowercase letters) gets `-mixedcase`.
pub fn case_name(encoding: &str, folded: bool, matched: &[u8]) -> String {
    let upper = matched.iter().any(u8::is_ascii_uppercase);
    let lower = matched.iter().any(u8::is_ascii_lowercase);
    if folded && upper && lower {
        format!("{encoding}-mixedcase")
    } else {
        encoding.to_string()
    }
}

#[cfg(test)]
#[path = "secrets_tests.rs"]
mod tests;
