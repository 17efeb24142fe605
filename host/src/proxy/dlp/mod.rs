//! Data-loss prevention: refuse requests that carry credentials.
//!
//! The host's own secrets ([`secrets`]: every encoding, a few small
//! Aho-Corasick automata; and [`fragments`]: any piece of 12 bytes or
//! more of one, so a secret split over requests is still found) and the
//! built-in rules ([`rules`]: one ASCII
//! `RegexSet`, run only near the rules' literal prefixes, which one more
//! automaton finds). Bodies are scanned chunk by chunk by a
//! [`StreamScanner`], which also scans the seam between chunks, so a
//! secret split across two chunks is still found.

pub mod fragments;
pub mod rules;
pub mod secrets;

use std::sync::Arc;

use regex::bytes::RegexSet;

use crate::manifest::Secret;

pub use secrets::BuildError;

/// A scan found something. Never holds the secret itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Rule name: a built-in rule, or `secret:NAME:ENCODING`.
    pub rule: String,
    /// Where: `url`, `header NAME`, `body`.
    pub place: String,
}

/// What [`Dlp::first_hit`] found.
enum Found {
    /// Index into the secret forms.
    Secret(usize),
    /// Index into [`rules::RULES`].
    Rule(usize),
    /// A piece of a secret: its rule name.
    Piece(String),
}

/// Secret forms per automaton: aho-corasick's SIMD (Teddy) prefilter
/// handles at most 64 patterns, and only for leftmost match semantics.
const FORMS_PER_GROUP: usize = 64;

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

/// The compiled rules; cheap to share.
#[derive(Clone, Debug)]
pub struct Dlp {
    set: RegexSet,
    /// The rules' literal prefixes.
    prefixes: aho_corasick::AhoCorasick,
    /// The longest prefix, bytes.
    longest_prefix: usize,
    /// The secret forms, [`FORMS_PER_GROUP`] per automaton, each with the
    /// index of its first form.
    groups: Vec<(aho_corasick::AhoCorasick, usize)>,
    secrets: secrets::SecretMatcher,
    fragments: fragments::FragmentMatcher,
    overlap: usize,
}

impl Dlp {
    /// Compile the built-in rules and the secrets' forms.
    pub fn new(secrets: &[Secret]) -> Result<Arc<Dlp>, BuildError> {
        let fragments = fragments::FragmentMatcher::new(secrets)?;
        let secrets = secrets::SecretMatcher::new(secrets)?;
        let overlap = rules::MAX_MATCH.max(secrets.longest());
        let groups = secrets
            .forms()
            .chunks(FORMS_PER_GROUP)
            .enumerate()
            .map(|(i, forms)| {
                let ac = automaton(forms.iter().map(|f| &f.pattern))?;
                Ok((ac, i * FORMS_PER_GROUP))
            })
            .collect::<Result<Vec<_>, BuildError>>()?;
        Ok(Arc::new(Dlp {
            set: rules::compile(),
            prefixes: automaton(rules::PREFIXES)?,
            longest_prefix: rules::PREFIXES.iter().map(|p| p.len()).max().unwrap_or(0),
            groups,
            secrets,
            fragments,
            overlap,
        }))
    }

    /// Bytes of the previous chunk kept to scan the seam.
    pub fn overlap(&self) -> usize {
        self.overlap
    }

    /// Scan one complete piece of text.
    pub fn scan(&self, hay: &[u8], place: &str) -> Option<Hit> {
        let rule = match self.first_hit(hay)? {
            Found::Secret(i) => {
                let f = &self.secrets.forms()[i];
                format!("secret:{}:{}", f.secret, f.encoding)
            }
            Found::Rule(i) => rules::RULES[i].0.to_string(),
            Found::Piece(rule) => rule,
        };
        Some(Hit {
            rule,
            place: place.to_string(),
        })
    }

    /// The first built-in rule matching `hay`, ignoring secrets (tests).
    #[cfg(test)]
    fn rules_match(&self, hay: &[u8]) -> Option<usize> {
        match self.first_hit(hay)? {
            Found::Rule(i) => Some(i),
            Found::Secret(_) | Found::Piece(_) => None,
        }
    }

    /// The secret form ending first in `hay`, then a piece of a secret,
    /// then the first rule.
    ///
    /// Secrets: one leftmost-first search per group of forms; the
    /// leftmost match wins (then the form added first). Rules: the `RegexSet` runs only on
    /// windows around the rules' literal prefixes (merged, so the work
    /// stays linear). Every rule match starts at such a prefix and is at
    /// most [`rules::MAX_MATCH`] long; a prefix occurrence the
    /// non-overlapping search skips starts inside a reported one, within
    /// `longest_prefix` bytes, so windows reaching that much further still
    /// hold every match whole. This equals a `RegexSet` scan of all of `hay`.
    fn first_hit(&self, hay: &[u8]) -> Option<Found> {
        let secret = self
            .groups
            .iter()
            .filter_map(|(ac, base)| {
                ac.find(hay)
                    .map(|m| (m.end(), base + m.pattern().as_usize()))
            })
            .min();
        if let Some((_, i)) = secret {
            return Some(Found::Secret(i));
        }
        if let Some(p) = self.fragments.find(hay) {
            return Some(Found::Piece(format!(
                "secret-piece:{}:{}",
                p.secret, p.encoding
            )));
        }
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

/// Scans a body chunk by chunk, including the seams between chunks.
#[derive(Debug)]
pub struct StreamScanner {
    dlp: Arc<Dlp>,
    tail: Vec<u8>,
    seam: Vec<u8>,
    scanned: u64,
}

impl StreamScanner {
    /// A scanner for one body.
    pub fn new(dlp: Arc<Dlp>) -> StreamScanner {
        StreamScanner {
            dlp,
            tail: Vec::new(),
            seam: Vec::new(),
            scanned: 0,
        }
    }

    /// Bytes fed so far.
    pub fn scanned(&self) -> u64 {
        self.scanned
    }

    /// The last bytes fed (at most the overlap), kept to scan the next seam.
    pub fn tail(&self) -> &[u8] {
        &self.tail
    }

    /// Scan the next chunk.
    pub fn push(&mut self, chunk: &[u8]) -> Option<Hit> {
        if chunk.is_empty() {
            return None;
        }
        self.scanned += chunk.len() as u64;
        let overlap = self.dlp.overlap;
        if !self.tail.is_empty() {
            self.seam.clear();
            self.seam.extend_from_slice(&self.tail);
            self.seam
                .extend_from_slice(&chunk[..chunk.len().min(overlap)]);
            if let Some(hit) = self.dlp.scan(&self.seam, "body") {
                return Some(hit);
            }
        }
        if let Some(hit) = self.dlp.scan(chunk, "body") {
            return Some(hit);
        }
        if chunk.len() >= overlap {
            self.tail.clear();
            self.tail.extend_from_slice(&chunk[chunk.len() - overlap..]);
        } else {
            self.tail.extend_from_slice(chunk);
            let excess = self.tail.len().saturating_sub(overlap);
            self.tail.drain(..excess);
        }
        None
    }
}

#[cfg(test)]
mod tests;
