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

/// The compiled rules; cheap to share.
#[derive(Clone, Debug)]
pub struct Dlp {
    set: RegexSet,
    prefixes: aho_corasick::AhoCorasick,
    secrets: secrets::SecretMatcher,
    overlap: usize,
}

impl Dlp {
    /// Compile the built-in rules and the secrets' forms.
    pub fn new(secrets: &[Secret]) -> Result<Arc<Dlp>, BuildError> {
        let secrets = secrets::SecretMatcher::new(secrets)?;
        let overlap = rules::MAX_MATCH.max(secrets.longest());
        Ok(Arc::new(Dlp {
            set: rules::compile(),
            prefixes: aho_corasick::AhoCorasick::new(rules::PREFIXES)?,
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
        if let Some(f) = self.secrets.find(hay) {
            return Some(Hit {
                rule: format!("secret:{}:{}", f.secret, f.encoding),
                place: place.to_string(),
            });
        }
        let i = self.rules_match(hay)?;
        Some(Hit {
            rule: rules::RULES[i].0.to_string(),
            place: place.to_string(),
        })
    }

    /// The first built-in rule matching `hay`. The `RegexSet` runs only on
    /// windows around the rules' literal prefixes (merged, so the work
    /// stays linear); every match starts at such a prefix and is at most
    /// [`rules::MAX_MATCH`] long, so this equals a scan of all of `hay`.
    fn rules_match(&self, hay: &[u8]) -> Option<usize> {
        let check = |(s, e): (usize, usize)| self.set.matches(&hay[s..e]).iter().next();
        let mut win: Option<(usize, usize)> = None;
        for m in self.prefixes.find_iter(hay) {
            let s = m.start().saturating_sub(1);
            let e = (m.start() + rules::MAX_MATCH).min(hay.len());
            win = match win {
                Some((ws, we)) if s <= we => Some((ws, e.max(we))),
                Some(w) => {
                    if let Some(i) = check(w) {
                        return Some(i);
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
