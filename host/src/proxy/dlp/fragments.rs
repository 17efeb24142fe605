//! Pieces of the host's secrets.
//!
//! Exact-value matching ([`super::secrets`]) misses a secret sent in pieces:
//! half in one request and half in the next, or spread over the URL and a
//! header. This matcher finds any piece of at least [`PIECE`] bytes of a
//! secret, raw, URL-encoded, hex, base64 or base64url, wherever it is.
//! (Not base32: its five alignments cost a third of the scan speed, and
//! a whole secret in base32 is still found by the exact matcher.)
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

use aho_corasick::{AhoCorasick, Input, MatchKind};
use data_encoding::{Encoding, BASE64_NOPAD};

use super::rules;
use super::secrets::{encodings, stable_part, BuildError};
use crate::manifest::Secret;

/// The shortest piece of a secret that is found, bytes.
pub const PIECE: usize = 12;

/// Secrets whose secret part (after [`public_prefix`]) is shorter than
/// this get no piece matching, bytes.
pub const MIN_TAIL: usize = 20;

/// Patterns per automaton, as for the exact forms (the SIMD prefilter's
/// limit).
const BLOCKS_PER_GROUP: usize = 64;

/// One encoded secret part and the window a piece must cover in it.
#[derive(Clone, Debug)]
struct Encoded {
    secret: String,
    encoding: &'static str,
    text: Vec<u8>,
    window: usize,
}

/// Where a block lies: which [`Encoded`], at which character.
#[derive(Clone, Copy, Debug)]
struct Spot {
    encoded: usize,
    at: usize,
}

/// A piece found: the secret's name and the encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece<'a> {
    /// The secret's name.
    pub secret: &'a str,
    /// The encoding of the piece, e.g. `base64`.
    pub encoding: &'static str,
}

/// The compiled piece matcher.
#[derive(Clone, Debug, Default)]
pub struct FragmentMatcher {
    encoded: Vec<Encoded>,
    /// Automata over the blocks, each with the index of its first block.
    groups: Vec<(AhoCorasick, usize)>,
    /// The distinct blocks, in pattern order.
    blocks: Vec<Vec<u8>>,
    /// For each distinct block, every place it comes from.
    spots: Vec<Vec<Spot>>,
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
        let tail = &v[public_prefix(v)..];
        if tail.len() < MIN_TAIL {
            continue;
        }
        for (encoding, text) in encodings(tail, false) {
            let window = match encoding {
                "hex" => 2 * PIECE,
                "base64" | "base64url" => base64_window,
                _ => PIECE,
            };
            out.push(Encoded {
                secret: s.name.clone(),
                encoding,
                text,
                window,
            });
        }
    }
    out.retain(|e| e.window > 0 && e.text.len() >= e.window);
    out
}

impl FragmentMatcher {
    /// Build from the loaded secrets.
    pub fn new(secrets: &[Secret]) -> Result<FragmentMatcher, BuildError> {
        let encoded = encode_all(secrets);
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        let mut spots: Vec<Vec<Spot>> = Vec::new();
        for (e, enc) in encoded.iter().enumerate() {
            let len = enc.window / 2;
            for (k, block) in enc.text.chunks_exact(len).enumerate() {
                let id = *index.entry(block.to_vec()).or_insert_with(|| {
                    blocks.push(block.to_vec());
                    spots.push(Vec::new());
                    blocks.len() - 1
                });
                spots[id].push(Spot {
                    encoded: e,
                    at: k * len,
                });
            }
        }
        let groups = blocks
            .chunks(BLOCKS_PER_GROUP)
            .enumerate()
            .map(|(i, group)| {
                let ac = AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostFirst)
                    .build(group)?;
                Ok((ac, i * BLOCKS_PER_GROUP))
            })
            .collect::<Result<Vec<_>, BuildError>>()?;
        Ok(FragmentMatcher {
            encoded,
            groups,
            blocks,
            spots,
        })
    }

    /// True when no secret is long enough for piece matching.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The first piece found in `hay` (by where its block starts).
    pub fn find(&self, hay: &[u8]) -> Option<Piece<'_>> {
        self.groups
            .iter()
            .filter_map(|(ac, base)| self.find_in_group(ac, *base, hay))
            .min_by_key(|(at, _)| *at)
            .map(|(_, e)| Piece {
                secret: &self.encoded[e].secret,
                encoding: self.encoded[e].encoding,
            })
    }

    /// The first piece found in `hay[from..]` (by where its block starts),
    /// with the whole run of `hay` that equals the encoded secret around
    /// it: the bytes a redaction must cover.
    pub fn find_span(
        &self,
        hay: &[u8],
        from: usize,
    ) -> Option<(std::ops::Range<usize>, Piece<'_>)> {
        let (at, spot, len) = self
            .groups
            .iter()
            .filter_map(|(ac, base)| self.find_spot(ac, *base, hay, from))
            .min_by_key(|(at, _, _)| *at)?;
        let (left, right) = self.run_around(&spot, len, hay, at);
        let e = &self.encoded[spot.encoded];
        Some((
            at - left..at + len + right,
            Piece {
                secret: &e.secret,
                encoding: e.encoding,
            },
        ))
    }

    /// Longest encoded secret part, bytes: no piece is longer.
    pub fn longest(&self) -> usize {
        self.encoded.iter().map(|e| e.text.len()).max().unwrap_or(0)
    }

    /// As [`Self::find_in_group`] from `from`, with the spot and block length.
    fn find_spot(
        &self,
        ac: &AhoCorasick,
        base: usize,
        hay: &[u8],
        mut from: usize,
    ) -> Option<(usize, Spot, usize)> {
        while from < hay.len() {
            let at = ac.find(Input::new(hay).range(from..))?.start();
            let ids = base..(base + BLOCKS_PER_GROUP).min(self.blocks.len());
            for id in ids.filter(|&id| hay[at..].starts_with(&self.blocks[id])) {
                let len = self.blocks[id].len();
                for spot in &self.spots[id] {
                    if self.run_len(spot, len, hay, at) >= self.encoded[spot.encoded].window {
                        return Some((at, *spot, len));
                    }
                }
            }
            from = at + 1;
        }
        None
    }

    /// The first verified piece among one automaton's blocks: where its
    /// block starts in `hay`, and which [`Encoded`] it is from.
    fn find_in_group(&self, ac: &AhoCorasick, base: usize, hay: &[u8]) -> Option<(usize, usize)> {
        // Every block starting at a hit is tried, not only the one
        // reported (one block may be a prefix of another), and a miss
        // looks again from the next byte, so an overlapping block that is
        // a piece is not skipped (`find_spot`).
        self.find_spot(ac, base, hay, 0)
            .map(|(at, spot, _)| (at, spot.encoded))
    }

    /// How many characters around a block found at `hay[start..]` equal
    /// the encoded secret around the block's spot (the block included).
    fn run_len(&self, spot: &Spot, len: usize, hay: &[u8], start: usize) -> usize {
        let (left, right) = self.run_around(spot, len, hay, start);
        left + len + right
    }

    /// How many characters before and after a block found at
    /// `hay[start..]` equal the encoded secret around the block's spot.
    fn run_around(&self, spot: &Spot, len: usize, hay: &[u8], start: usize) -> (usize, usize) {
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
        (left, right)
    }
}

#[cfg(test)]
#[path = "fragments_tests.rs"]
mod tests;
