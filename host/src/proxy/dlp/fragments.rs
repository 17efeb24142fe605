//! Pieces of the host's secrets.
//!
//! Exact-value matching ([`super::secrets`]) misses a secret sent in pieces:
//! half in one request and half in the next, or spread over the URL and a
//! header. This matcher finds any piece of at least [`PIECE`] bytes of a
//! secret, raw, URL-encoded, hex (any case: searched for folded, as the
//! exact hex forms are), base64 or base64url, wherever it is. (Not base32:
//! its five alignments cost a third of the scan speed, and a whole secret
//! in base32 is still found by the exact matcher.)
//!
//! How: every piece of [`PIECE`] bytes, once encoded, contains a window of
//! `w` characters of the encoded secret (`w` per encoding: 12 raw and
//! URL-encoded, 24 hex, 15 base64); cut each encoded secret into blocks of `w / 2`
//! characters, and every such window holds a whole block. The blocks are
//! searched for with Aho-Corasick (its SIMD prefilter, as for the exact
//! forms); each block found is then extended both ways against the encoded
//! secret, and a run of at least `w` equal characters is a hit.
//!
//! A secret's public prefix (`ghp_`, `sk-ant-api03-`, ...; see
//! [`public_prefix`]) is left out, so the pieces hold only what is secret,
//! and secrets whose remaining part is shorter than [`MIN_TAIL`] get no
//! piece matching at all: their pieces would be too short to tell from
//! chance. The limit is explicit: pieces shorter than [`PIECE`] bytes are
//! not found, so an agent that holds a secret can still leak it
//! [`PIECE`]` - 1` bytes at a time (docs/security.md).

use std::collections::HashMap;
use std::ops::Range;

use data_encoding::{Encoding, BASE64_NOPAD};

use super::rules;
use super::secrets::{encodings, groups, stable_part, BuildError, Group, PER_GROUP};
use crate::manifest::Secret;

/// The shortest piece of a secret that is found, bytes.
pub const PIECE: usize = 12;

/// Secrets whose secret part (after [`public_prefix`]) is shorter than
/// this get no piece matching, bytes.
pub const MIN_TAIL: usize = 20;

/// The encodings pieces are searched for in.
pub const ENCODINGS: &[&str] = &["raw", "url", "hex", "base64", "base64url"];

/// Does `value` get piece matching (is its secret part long enough)?
pub fn has_pieces(value: &[u8]) -> bool {
    value.len() - public_prefix(value) >= MIN_TAIL
}

/// One encoded secret part and the window a piece must cover in it.
#[derive(Clone, Debug)]
struct Encoded {
    secret: String,
    encoding: &'static str,
    text: Vec<u8>,
    window: usize,
    folded: bool,
}

/// Where a block lies: which [`Encoded`], at which character.
#[derive(Clone, Copy, Debug)]
struct Spot {
    encoded: usize,
    at: usize,
}

/// A piece found: the secret's name, the encoding and where it lies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece<'a> {
    /// The secret's name.
    pub secret: &'a str,
    /// The encoding of the piece, e.g. `base64`.
    pub encoding: &'static str,
    /// Found in the lowercased text (hex).
    pub folded: bool,
    /// Where the piece starts in the text.
    pub start: usize,
    /// Where it ends (exclusive).
    pub end: usize,
}

/// The blocks searched for in one text (as it is, or lowercased).
#[derive(Clone, Debug, Default)]
struct Blocks {
    /// Automata over the blocks, each with the index of its first block.
    groups: Vec<(Group, usize)>,
    /// The distinct blocks, in pattern order.
    blocks: Vec<Vec<u8>>,
    /// For each distinct block, every place it comes from.
    spots: Vec<Vec<Spot>>,
}

/// The compiled piece matcher.
#[derive(Clone, Debug, Default)]
pub struct FragmentMatcher {
    encoded: Vec<Encoded>,
    /// Blocks searched for in the text as it is.
    plain: Blocks,
    /// Blocks searched for in the lowercased text.
    folded: Blocks,
}

/// Length of `value`'s public prefix: the credential-format marker every
/// secret of its kind starts with (`ghp_`, `github_pat_`, `xoxb-123456-`,
/// `sk-ant-api03-`). Only values starting with a built-in rule's literal
/// prefix ([`rules::PREFIXES`]) have one: that literal, extended to the
/// last `-` or `_` within the first 16 bytes (letters, digits, `-`, `_`).
pub fn public_prefix(value: &[u8]) -> usize {
    let Some(known) = rules::PREFIXES
        .iter()
        .filter(|p| value.starts_with(p.as_bytes()))
        .map(|p| p.len())
        .max()
    else {
        return 0;
    };
    value
        .iter()
        .take(16)
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-' || **b == b'_')
        .enumerate()
        .filter(|(_, b)| **b == b'-' || **b == b'_')
        .map(|(i, _)| i + 1)
        .fold(known, usize::max)
}

/// Characters of `enc` that a piece of [`PIECE`] bytes always holds,
/// whatever its alignment.
fn window(enc: &Encoding, bits: usize, group: usize) -> usize {
    let piece = [0u8; PIECE];
    (0..group)
        .filter_map(|offset| stable_part(enc, bits, offset, &piece))
        .map(|p| p.len())
        .min()
        .unwrap_or(0)
}

/// Every encoding of every secret's secret part.
fn encode_all(secrets: &[Secret]) -> Vec<Encoded> {
    // base64 and base64url share their alignment, hence their window.
    let base64_window = window(&BASE64_NOPAD, 6, 3);
    let mut out = Vec::new();
    for s in secrets {
        let v = s.value.as_bytes();
        if !has_pieces(v) {
            continue;
        }
        let tail = &v[public_prefix(v)..];
        for e in encodings(tail, false) {
            let window = match e.encoding {
                "hex" => 2 * PIECE,
                "base64" | "base64url" => base64_window,
                _ => PIECE,
            };
            out.push(Encoded {
                secret: s.name.clone(),
                encoding: e.encoding,
                text: e.text,
                window,
                folded: e.folded,
            });
        }
    }
    out.retain(|e| e.window > 0 && e.text.len() >= e.window);
    out
}

impl Blocks {
    /// Cut each of `encoded` (those `folded` or not) into blocks.
    fn new(encoded: &[Encoded], folded: bool) -> Result<Blocks, BuildError> {
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut b = Blocks::default();
        for (e, enc) in encoded.iter().enumerate() {
            if enc.folded != folded {
                continue;
            }
            let len = enc.window / 2;
            for (k, block) in enc.text.chunks_exact(len).enumerate() {
                let id = *index.entry(block.to_vec()).or_insert_with(|| {
                    b.blocks.push(block.to_vec());
                    b.spots.push(Vec::new());
                    b.blocks.len() - 1
                });
                b.spots[id].push(Spot {
                    encoded: e,
                    at: k * len,
                });
            }
        }
        b.groups = groups(&b.blocks)?;
        Ok(b)
    }
}

impl FragmentMatcher {
    /// Build from the loaded secrets.
    pub fn new(secrets: &[Secret]) -> Result<FragmentMatcher, BuildError> {
        let encoded = encode_all(secrets);
        Ok(FragmentMatcher {
            plain: Blocks::new(&encoded, false)?,
            folded: Blocks::new(&encoded, true)?,
            encoded,
        })
    }

    /// True when no secret is long enough for piece matching.
    pub fn is_empty(&self) -> bool {
        self.plain.groups.is_empty() && self.folded.groups.is_empty()
    }

    /// The encoded secret parts pieces are taken from (lowercase when
    /// searched for folded).
    pub fn texts(&self) -> impl Iterator<Item = &[u8]> {
        self.encoded.iter().map(|e| &e.text[..])
    }

    /// The blocks searched for in the lowercased text (`folded`) or in
    /// the text as it is.
    pub fn blocks(&self, folded: bool) -> impl Iterator<Item = &[u8]> {
        let b = if folded { &self.folded } else { &self.plain };
        b.blocks.iter().map(|b| &b[..])
    }

    /// Are some blocks searched for in the lowercased text?
    pub fn has_folded(&self) -> bool {
        !self.folded.groups.is_empty()
    }

    /// The first piece found in `hay` (by where its block starts).
    pub fn find(&self, hay: &[u8]) -> Option<Piece<'_>> {
        let folded = self.has_folded().then(|| hay.to_ascii_lowercase());
        self.find_in(hay, folded.as_deref())
    }

    /// [`Self::find`] given `hay` lowercased too (needed when
    /// [`Self::has_folded`]).
    pub fn find_in(&self, hay: &[u8], folded: Option<&[u8]>) -> Option<Piece<'_>> {
        let plain = self.plain.groups.iter().map(|g| (&self.plain, g, hay));
        let lower = folded
            .into_iter()
            .flat_map(|f| self.folded.groups.iter().map(move |g| (&self.folded, g, f)));
        plain
            .chain(lower)
            .filter_map(|(blocks, (g, base), text)| self.find_in_group(blocks, g, *base, text))
            .min_by_key(|(at, _, _)| *at)
            .map(|(_, e, (start, end))| Piece {
                secret: &self.encoded[e].secret,
                encoding: self.encoded[e].encoding,
                folded: self.encoded[e].folded,
                start,
                end,
            })
    }

    /// The first piece found in `hay[from..]` (by where its block starts),
    /// with the whole run of `hay` that equals the encoded secret around
    /// it: the bytes a redaction must cover.
    pub fn find_span(&self, hay: &[u8], from: usize) -> Option<(Range<usize>, Piece<'_>)> {
        let part = &hay[from.min(hay.len())..];
        let p = self.find(part)?;
        Some((from + p.start..from + p.end, p))
    }

    /// Longest encoded secret part, bytes: no piece is longer.
    pub fn longest(&self) -> usize {
        self.encoded.iter().map(|e| e.text.len()).max().unwrap_or(0)
    }

    /// The first verified piece among one automaton's blocks: where its
    /// block starts in `hay`, which [`Encoded`] it is from, and the run.
    fn find_in_group(
        &self,
        b: &Blocks,
        g: &Group,
        base: usize,
        hay: &[u8],
    ) -> Option<(usize, usize, (usize, usize))> {
        let mut from = 0;
        while from < hay.len() {
            let (_, at, _) = g.find(hay, from)?;
            // Every block of this automaton starting here, not only the one
            // reported: one block may be a prefix of another.
            let ids = base..(base + PER_GROUP).min(b.blocks.len());
            for id in ids.filter(|&id| hay[at..].starts_with(&b.blocks[id])) {
                let len = b.blocks[id].len();
                for spot in &b.spots[id] {
                    let (s, e) = self.run(spot, len, hay, at);
                    if e - s >= self.encoded[spot.encoded].window {
                        return Some((at, spot.encoded, (s, e)));
                    }
                }
            }
            from = at + 1;
        }
        None
    }

    /// Where the run of characters around a block found at `hay[start..]`
    /// that equal the encoded secret around the block's spot (the block
    /// included) starts and ends in `hay`.
    fn run(&self, spot: &Spot, len: usize, hay: &[u8], start: usize) -> (usize, usize) {
        let text = &self.encoded[spot.encoded].text;
        let left = hay[..start]
            .iter()
            .rev()
            .zip(text[..spot.at].iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        let right = hay[start + len..]
            .iter()
            .zip(text[spot.at + len..].iter())
            .take_while(|(a, b)| a == b)
            .count();
        (start - left, start + len + right)
    }
}

#[cfg(test)]
#[path = "fragments_tests.rs"]
mod tests;
