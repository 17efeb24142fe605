//! Response redaction: no host secret reaches the guest.
//!
//! An upstream that reflects request headers (debug endpoints, error
//! messages, httpbin-like services) would hand the credential the proxy
//! injected back to the agent. Every response part the guest receives,
//! the header values, the body (decompressed first), trailers and
//! server-to-client WebSocket messages, is searched for every host
//! secret in the forms the request-side DLP knows: the exact forms
//! ([`secrets::forms`]: raw, URL-encoded, base64/base64url/base32 at
//! every alignment, hex, with hex and base32 in any letter case) and any
//! piece of [`fragments::PIECE`] bytes or more ([`fragments`]). Each
//! match is overwritten in place by `*` of the same length, so lengths,
//! `Content-Length` and UTF-8 stay valid and nothing has to be buffered
//! beyond the longest form: a [`StreamRedactor`] holds back that many
//! bytes minus one, so a secret across a chunk seam is still found.

use std::ops::Range;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use bytes::{Bytes, BytesMut};

use super::dlp::fragments::FragmentMatcher;
use super::dlp::secrets::{self, BuildError};
use crate::manifest::Secret;

/// The byte every redacted byte becomes.
pub const MARK: u8 = b'*';

/// The compiled redactor; cheap to share.
#[derive(Debug)]
pub struct Redactor {
    /// Forms whose letters matter (raw, URL-encoded, base64).
    exact: Option<AhoCorasick>,
    exact_rules: Vec<String>,
    /// Hex and base32 forms, matched in any letter case.
    folded: Option<AhoCorasick>,
    folded_rules: Vec<String>,
    pieces: FragmentMatcher,
    /// Bytes a stream holds back: the longest form or piece, minus one.
    hold: usize,
}

fn automaton(patterns: &[Vec<u8>], fold: bool) -> Result<Option<AhoCorasick>, BuildError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let ac = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .ascii_case_insensitive(fold)
        .build(patterns)
        .map_err(BuildError::from)?;
    Ok(Some(ac))
}

impl Redactor {
    /// Compile every secret's forms.
    pub fn new(secrets: &[Secret]) -> Result<Arc<Redactor>, BuildError> {
        let (mut exact, mut exact_rules, mut folded, mut folded_rules) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // Every byte percent-encoded (the request side finds this through
        // its percent-decoded view, which has no positions to redact).
        for s in secrets {
            let all: Vec<u8> = s
                .value
                .bytes()
                .flat_map(|b| format!("%{b:02x}").into_bytes())
                .collect();
            folded.push(all);
            folded_rules.push(format!("secret:{}:url", s.name));
        }
        for f in secrets::forms(secrets) {
            let rule = format!("secret:{}:{}", f.secret, f.encoding);
            // Every form, `covered` ones too: a redaction needs the whole
            // span, and a piece match may stop short of it.
            if f.folded {
                folded.push(f.pattern);
                folded_rules.push(rule);
            } else {
                exact.push(f.pattern);
                exact_rules.push(rule);
            }
        }
        let pieces = FragmentMatcher::new(secrets)?;
        let longest = exact
            .iter()
            .chain(&folded)
            .map(Vec::len)
            .chain([pieces.longest()])
            .max()
            .unwrap_or(0);
        Ok(Arc::new(Redactor {
            exact: automaton(&exact, false)?,
            exact_rules,
            folded: automaton(&folded, true)?,
            folded_rules,
            pieces,
            hold: longest.saturating_sub(1),
        }))
    }

    /// True when there is nothing to look for.
    pub fn is_empty(&self) -> bool {
        self.exact.is_none() && self.folded.is_none() && self.pieces.is_empty()
    }

    /// Bytes a stream must hold back.
    pub fn hold(&self) -> usize {
        self.hold
    }

    /// Whether [`Self::redact_all`] would overwrite anything in `buf`
    /// (the same searches, without copying `buf` to have it writable).
    pub fn finds(&self, buf: &[u8]) -> bool {
        [&self.exact, &self.folded]
            .into_iter()
            .flatten()
            .any(|ac| ac.is_match(buf))
            || self.pieces.find(buf).is_some()
    }

    /// Overwrite every match in `buf`; the rules that matched, in order,
    /// without duplicates.
    pub fn redact_all(&self, buf: &mut [u8]) -> Vec<String> {
        let mut hits = Vec::new();
        self.redact_before(buf, buf.len(), &mut hits);
        hits
    }

    /// Overwrite every match in `buf` that starts before `limit` (a match
    /// starting later may still continue past the end of `buf`).
    fn redact_before(&self, buf: &mut [u8], limit: usize, hits: &mut Vec<String>) {
        let mut spans: Vec<(Range<usize>, String)> = Vec::new();
        for (ac, rules) in [
            (&self.exact, &self.exact_rules),
            (&self.folded, &self.folded_rules),
        ] {
            let Some(ac) = ac else { continue };
            for m in ac.find_iter(&*buf) {
                if m.start() >= limit {
                    break;
                }
                let rule = rules.get(m.pattern().as_usize()).cloned();
                spans.push((m.range(), rule.unwrap_or_default()));
            }
        }
        for (range, rule) in &spans {
            buf[range.clone()].fill(MARK);
            note(hits, rule);
        }
        if self.pieces.is_empty() {
            return;
        }
        let mut from = 0;
        while let Some((range, piece)) = self.pieces.find_span(buf, from) {
            if range.start >= limit {
                break;
            }
            let rule = format!("secret-piece:{}:{}", piece.secret, piece.encoding);
            from = range.end.max(range.start + 1);
            buf[range].fill(MARK);
            note(hits, &rule);
        }
    }
}

fn note(hits: &mut Vec<String>, rule: &str) {
    if !hits.iter().any(|h| h == rule) {
        hits.push(rule.to_string());
    }
}

/// Redaction of a byte stream whose chunks arrive one by one.
#[derive(Debug)]
pub struct StreamRedactor {
    r: Arc<Redactor>,
    carry: BytesMut,
}

impl StreamRedactor {
    /// A stream redactor.
    pub fn new(r: Arc<Redactor>) -> StreamRedactor {
        StreamRedactor {
            r,
            carry: BytesMut::new(),
        }
    }

    /// Take a chunk; return what may be sent now (possibly empty) and the
    /// rules that matched in it. At most [`Redactor::hold`] bytes are
    /// kept back.
    pub fn push(&mut self, chunk: &[u8]) -> (Bytes, Vec<String>) {
        self.carry.extend_from_slice(chunk);
        let emit = self.carry.len().saturating_sub(self.r.hold);
        let mut hits = Vec::new();
        self.r.redact_before(&mut self.carry, emit, &mut hits);
        (self.carry.split_to(emit).freeze(), hits)
    }

    /// Take the last chunk: everything, redacted (as [`Self::push`] then
    /// [`Self::finish`], in one piece).
    pub fn push_last(&mut self, chunk: &[u8]) -> (Bytes, Vec<String>) {
        self.carry.extend_from_slice(chunk);
        self.finish()
    }

    /// Bytes taken but not yet given back.
    pub fn held(&self) -> usize {
        self.carry.len()
    }

    /// The end of the stream: the rest.
    pub fn finish(&mut self) -> (Bytes, Vec<String>) {
        let hits = self.r.redact_all(&mut self.carry);
        (self.carry.split().freeze(), hits)
    }
}

#[cfg(test)]
#[path = "redact_tests.rs"]
mod tests;
