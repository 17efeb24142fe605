//! Data-loss prevention: refuse requests that carry credentials.
//!
//! The host's own secrets ([`secrets`]: every encoding, hex and base32 in
//! any case, one level of stacked encoding, a few small Aho-Corasick
//! automata; and [`fragments`]: any piece of 12 bytes or more of one, so a
//! secret split over requests is still found) and the built-in rules
//! ([`rules`]: one ASCII `RegexSet`, run only near the rules' literal
//! prefixes, which one more automaton finds). Text escapes that parsers
//! undo on their own (JSON `\u0073`, HTML `&#115;`, `\x73`: [`unescape`])
//! are scanned decoded as well. Bodies are scanned chunk by chunk by a
//! [`StreamScanner`], which also scans the seam between chunks, so a
//! secret split across two chunks is still found.

pub mod fragments;
mod names;
pub mod rules;
pub mod secrets;
mod stream;
pub mod unescape;

use std::sync::Arc;

use regex::bytes::RegexSet;

use crate::manifest::Secret;

pub use secrets::BuildError;
pub use stream::StreamScanner;
use unescape::{ByteSet, Kinds};

/// A scan found something. Never holds the secret itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Rule name: a built-in rule, or `secret:NAME:ENCODING`.
    pub rule: String,
    /// Where: `url`, `header NAME`, `body`.
    pub place: String,
}

/// A leftmost-first automaton (so the SIMD prefilter can be used).
fn automaton<I, P>(patterns: I) -> Result<aho_corasick::AhoCorasick, BuildError>
where
    I: IntoIterator<Item = P>,
    P: AsRef<[u8]>,
{
    Ok(aho_corasick::AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostFirst)
        .build(patterns)?)
}

/// `hay` with ASCII letters lowercased into `out`, for the folded (hex,
/// base32) forms.
fn fold<'a>(hay: &[u8], out: &'a mut Vec<u8>) -> &'a [u8] {
    out.clear();
    out.extend_from_slice(hay);
    out.make_ascii_lowercase();
    out
}

/// The encoding named in a hit: `enc` found as it is (`via` empty) or in
/// text decoded from the escapes `via` (`json-escape`, or
/// `json-escape(hex)` when the escaped text was the hex form).
fn wrapped(via: Kinds, enc: String) -> String {
    match (via.name(), enc.as_str()) {
        (None, _) => enc,
        (Some(v), "raw") => v,
        (Some(v), _) => format!("{v}({enc})"),
    }
}

/// What [`Dlp::first_hit`] found.
enum Found {
    /// A secret form.
    Secret(secrets::Found),
    /// Index into [`rules::RULES`].
    Rule(usize),
    /// A piece of a secret: the secret's name, the encoding, and whether
    /// the whole secret is there (a covered form, [`secrets::Form`]).
    Piece(String, String, bool),
}

/// The compiled rules; cheap to share.
#[derive(Clone, Debug)]
pub struct Dlp {
    set: RegexSet,
    /// The rules' literal prefixes.
    prefixes: aho_corasick::AhoCorasick,
    /// The longest prefix, bytes.
    longest_prefix: usize,
    secrets: secrets::SecretMatcher,
    fragments: fragments::FragmentMatcher,
    /// Pieces in any case, for host names only.
    names: names::NameMatcher,
    /// Every secret form and piece block searched for, in as few SIMD
    /// searchers as they fit: one pass each over the text as it is and
    /// the lowercased text tells whether the exact searches (a pass per
    /// searcher of each matcher) have anything to find.
    any_plain: Vec<(secrets::Group, usize)>,
    any_folded: Vec<(secrets::Group, usize)>,
    /// Every byte a secret form, a piece or a rule can hold: an escape
    /// that decodes to none of them cannot make a match.
    useful: ByteSet,
    overlap: usize,
}

impl Dlp {
    /// Compile the built-in rules and the secrets' forms.
    pub fn new(secrets: &[Secret]) -> Result<Arc<Dlp>, BuildError> {
        let fragments = fragments::FragmentMatcher::new(secrets)?;
        let names = names::NameMatcher::new(secrets)?;
        let secrets = secrets::SecretMatcher::new(secrets)?;
        let any = |folded: bool| {
            let texts: Vec<&[u8]> = secrets
                .searched(folded)
                .chain(fragments.blocks(folded))
                .collect();
            secrets::groups(&texts)
        };
        let (any_plain, any_folded) = (any(false)?, any(true)?);
        let overlap = rules::MAX_MATCH.max(secrets.longest());
        let mut useful = ByteSet::new();
        let texts = secrets.forms().iter().map(|f| &f.pattern[..]);
        for t in texts.chain(fragments.texts()) {
            useful.add(t);
            useful.add(&t.to_ascii_uppercase()); // folded forms
        }
        useful.add(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_. ");
        Ok(Arc::new(Dlp {
            set: rules::compile(),
            prefixes: automaton(rules::PREFIXES)?,
            longest_prefix: rules::PREFIXES.iter().map(|p| p.len()).max().unwrap_or(0),
            secrets,
            fragments,
            names,
            any_plain,
            any_folded,
            useful,
            overlap,
        }))
    }

    /// Bytes of the previous chunk kept to scan the seam.
    pub fn overlap(&self) -> usize {
        self.overlap
    }

    /// How many bytes of a streamed body to hold back until the next
    /// chunk is scanned: a match (at most [`Dlp::overlap`] bytes decoded)
    /// can span three times as many raw bytes in the percent-decoded view,
    /// and [`unescape::MAX_EXPANSION`] times as many in the escape-decoded
    /// one, and both views can be stacked.
    pub fn hold(&self) -> usize {
        3 * unescape::MAX_EXPANSION * self.overlap + 64
    }

    /// [`Self::scan`] for a host name: as it is, and with its labels
    /// joined (a secret cut into labels, `3f9a1c7e5b2d8f0.a4c6e1b3d5f7a9c`,
    /// is whole again without the dots).
    /// A piece of a secret is also found in any letter case (a DNS name's
    /// case does not survive the trip upstream).
    pub fn scan_name(&self, name: &str) -> Option<Hit> {
        let place = "host name";
        if let Some(hit) = self.scan(name.as_bytes(), place) {
            return Some(hit);
        }
        let joined: Vec<u8> = name.bytes().filter(|b| *b != b'.').collect();
        if joined.len() != name.len() {
            if let Some(hit) = self.scan(&joined, place) {
                return Some(hit);
            }
        }
        let owner = self.names.find(&joined)?;
        Some(Hit {
            rule: format!("secret-piece:{owner}:any-case"),
            place: place.into(),
        })
    }

    /// The names in a request head the guest may choose freely: an
    /// extension method (standard ones are skipped) and the header names,
    /// joined by newlines. As [`Self::scan`], and a piece of a secret in any
    /// letter case too (a header name reaches the upstream lowercased).
    pub fn scan_head_names<'a>(
        &self,
        method: &str,
        names: impl Iterator<Item = &'a str>,
    ) -> Option<Hit> {
        let standard = matches!(
            method,
            "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH"
        );
        if !standard {
            if let Some(hit) = self.scan_any_case(method.as_bytes(), "method") {
                return Some(hit);
            }
        }
        let mut joined = Vec::with_capacity(256);
        for n in names {
            joined.extend_from_slice(n.as_bytes());
            joined.push(b'\n');
        }
        self.scan_any_case(&joined, "header name")
    }

    /// [`Self::scan`], then pieces of a secret in any letter case.
    fn scan_any_case(&self, hay: &[u8], place: &str) -> Option<Hit> {
        if let Some(hit) = self.scan(hay, place) {
            return Some(hit);
        }
        let owner = self.names.find(hay)?;
        Some(Hit {
            rule: format!("secret-piece:{owner}:any-case"),
            place: place.into(),
        })
    }

    /// Scan one complete piece of text: as it is, and with its text
    /// escapes decoded when it has some that could make a match.
    pub fn scan(&self, hay: &[u8], place: &str) -> Option<Hit> {
        let mut scratch = Vec::new();
        self.scan_as(hay, place, Kinds::NONE, &mut scratch)
            .or_else(|| {
                if !unescape::has_text_escapes(hay) {
                    return None;
                }
                let (decoded, via) = unescape::unescape(hay, &self.useful);
                (!via.is_empty())
                    .then(|| self.scan_as(&decoded, place, via, &mut scratch))
                    .flatten()
            })
    }

    /// Scan `hay` as it is; `via` names the escapes it was decoded from;
    /// `scratch` is room for the lowercased text.
    fn scan_as(&self, hay: &[u8], place: &str, via: Kinds, scratch: &mut Vec<u8>) -> Option<Hit> {
        let rule = match self.first_hit(hay, scratch)? {
            Found::Secret(f) => {
                let form = &self.secrets.forms()[f.form];
                let enc = secrets::case_name(form.encoding, form.folded, &hay[f.start..f.end]);
                format!("secret:{}:{}", form.secret, wrapped(via, enc))
            }
            Found::Rule(i) => rules::RULES[i].0.to_string(),
            Found::Piece(name, enc, whole) => {
                let kind = if whole { "secret" } else { "secret-piece" };
                format!("{kind}:{name}:{}", wrapped(via, enc))
            }
        };
        Some(Hit {
            rule,
            place: place.to_string(),
        })
    }

    /// The first built-in rule matching `hay`, ignoring secrets (tests).
    #[cfg(test)]
    fn rules_match(&self, hay: &[u8]) -> Option<usize> {
        match self.first_hit(hay, &mut Vec::new())? {
            Found::Rule(i) => Some(i),
            Found::Secret(_) | Found::Piece(..) => None,
        }
    }

    /// The secret form ending first in `hay`, then a piece of a secret,
    /// then the first rule.
    ///
    /// Secrets: first one pass per SIMD searcher over every form and
    /// piece block together ([`Self::may_hold_secret`]; clean text ends
    /// there); then one leftmost-first search per group of forms (the
    /// folded ones in `hay` lowercased), the match ending first winning
    /// (then the form added first), and the pieces. Rules: the `RegexSet` runs only on
    /// windows around the rules' literal prefixes (merged, so the work
    /// stays linear). Every rule match starts at such a prefix and is at
    /// most [`rules::MAX_MATCH`] long; a prefix occurrence the
    /// non-overlapping search skips starts inside a reported one, within
    /// `longest_prefix` bytes, so windows reaching that much further still
    /// hold every match whole. This equals a `RegexSet` scan of all of `hay`.
    fn first_hit(&self, hay: &[u8], scratch: &mut Vec<u8>) -> Option<Found> {
        let folded = (!self.any_folded.is_empty()).then(|| fold(hay, scratch));
        if self.may_hold_secret(hay, folded) {
            if let Some(f) = self.secret_hit(hay, folded) {
                return Some(f);
            }
        }
        self.rule_hit(hay)
    }

    /// Does `hay` (`folded`: lowercased) hold any secret form or piece
    /// block searched for? When not, neither matcher can find anything.
    fn may_hold_secret(&self, hay: &[u8], folded: Option<&[u8]>) -> bool {
        let hit = |groups: &[(secrets::Group, usize)], text: &[u8]| {
            groups.iter().any(|(g, _)| g.find(text, 0).is_some())
        };
        hit(&self.any_plain, hay) || folded.is_some_and(|f| hit(&self.any_folded, f))
    }

    /// The secret form ending first in `hay`, then a piece of a secret.
    fn secret_hit(&self, hay: &[u8], folded: Option<&[u8]>) -> Option<Found> {
        if let Some(f) = self.secrets.find_in(hay, folded) {
            return Some(Found::Secret(f));
        }
        if let Some(p) = self.fragments.find_in(hay, folded) {
            let enc = secrets::case_name(p.encoding, p.folded, &hay[p.start..p.end]);
            // The whole secret, when its form is around the piece.
            let reach = self.secrets.longest();
            let around = p.start.saturating_sub(reach)..(p.end + reach).min(hay.len());
            let text = match folded {
                Some(f) if p.folded => &f[around],
                _ => &hay[around],
            };
            let whole = self.secrets.whole(p.secret, p.encoding, text);
            return Some(Found::Piece(p.secret.to_string(), enc, whole));
        }
        None
    }

    /// The first built-in rule matching `hay`.
    fn rule_hit(&self, hay: &[u8]) -> Option<Found> {
        let check =
            |(s, e): (usize, usize)| self.set.matches(&hay[s..e]).iter().next().map(Found::Rule);
        let reach = rules::MAX_MATCH + self.longest_prefix;
        let mut win: Option<(usize, usize)> = None;
        for m in self.prefixes.find_iter(hay) {
            let s = m.start().saturating_sub(1);
            let e = (m.start() + reach).min(hay.len());
            win = match win {
                Some((ws, we)) if s <= we => Some((ws, e.max(we))),
                Some(w) => {
                    if let Some(f) = check(w) {
                        return Some(f);
                    }
                    Some((s, e))
                }
                None => Some((s, e)),
            };
        }
        win.and_then(check)
    }

    /// Scan the request target: as sent, and percent-decoded (twice, to
    /// catch double encoding).
    pub fn scan_target(&self, target: &str) -> Option<Hit> {
        let mut t = std::borrow::Cow::Borrowed(target.as_bytes());
        for round in 0..3 {
            if let Some(h) = self.scan(&t, "url") {
                return Some(h);
            }
            if round == 2 || !has_escapes(&t) {
                return None;
            }
            t = std::borrow::Cow::Owned(percent_decode(&t));
        }
        None
    }
}

/// Does `s` hold anything [`percent_decode`] would change (`%` or `+`)?
pub fn has_escapes(s: &[u8]) -> bool {
    s.iter().any(|&b| b == b'%' || b == b'+')
}

/// Decode `%XX` escapes and `+`; invalid escapes are kept as they are.
pub fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests;

#[cfg(test)]
#[path = "forms_tests.rs"]
mod forms_tests;
