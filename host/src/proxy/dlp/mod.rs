//! Data-loss prevention: refuse requests that carry credentials.
//!
//! Two passes over every scanned byte: the built-in rules ([`rules`], one
//! `RegexSet`) and the host's own secrets ([`secrets`], Aho-Corasick over
//! every encoding). Bodies are scanned chunk by chunk by a
//! [`StreamScanner`], which also scans the seam between chunks, so a
//! secret split across two chunks is still found.

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
}

/// The compiled rules; cheap to share.
#[derive(Clone, Debug)]
pub struct Dlp {
    set: RegexSet,
    /// One automaton: every secret form (ids `0..n_forms`), then the
    /// rules' literal prefixes.
    combined: aho_corasick::AhoCorasick,
    n_forms: usize,
    secrets: secrets::SecretMatcher,
    overlap: usize,
}

impl Dlp {
    /// Compile the built-in rules and the secrets' forms.
    pub fn new(secrets: &[Secret]) -> Result<Arc<Dlp>, BuildError> {
        let secrets = secrets::SecretMatcher::new(secrets)?;
        let overlap = rules::MAX_MATCH.max(secrets.longest());
        let n_forms = secrets.forms().len();
        let patterns: Vec<&[u8]> = secrets
            .forms()
            .iter()
            .map(|f| f.pattern.as_slice())
            .chain(rules::PREFIXES.iter().map(|p| p.as_bytes()))
            .collect();
        let combined = aho_corasick::AhoCorasick::new(patterns)?;
        Ok(Arc::new(Dlp {
            set: rules::compile(),
            combined,
            n_forms,
            secrets,
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
            Found::Secret(_) => None,
        }
    }

    /// One pass of the combined automaton. A secret form is a hit at once.
    /// The `RegexSet` runs only on windows around the rules' literal
    /// prefixes (merged, so the work stays linear); every rule match
    /// starts at such a prefix and is at most [`rules::MAX_MATCH`] long,
    /// so this equals a `RegexSet` scan of all of `hay`.
    fn first_hit(&self, hay: &[u8]) -> Option<Found> {
        let check =
            |(s, e): (usize, usize)| self.set.matches(&hay[s..e]).iter().next().map(Found::Rule);
        let mut win: Option<(usize, usize)> = None;
        for m in self.combined.find_overlapping_iter(hay) {
            let id = m.pattern().as_usize();
            if id < self.n_forms {
                return Some(Found::Secret(id));
            }
            let s = m.start().saturating_sub(1);
            let e = (m.start() + rules::MAX_MATCH).min(hay.len());
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
        let once = percent_decode(target.as_bytes());
        let twice = percent_decode(&once);
        [target.as_bytes(), &once, &twice]
            .iter()
            .find_map(|t| self.scan(t, "url"))
    }
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
