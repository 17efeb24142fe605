//! Text escapes that ordinary decoders undo without being asked.
//!
//! A JSON parser turns `\u0073` into `s`, an HTML or XML parser turns
//! `&#115;`, `&#x73;` and `&lowbar;` into `s` and `_`, and string literals
//! in most languages turn `\x73` into `s`; so a secret can be sent with
//! some or all of its characters escaped and arrive whole. [`Unescaper`]
//! undoes these escapes, fed whole or chunk by chunk (with the same output
//! either way), for the DLP to scan the decoded text too:
//!
//! - JSON and JavaScript: `\uXXXX` (surrogate pairs joined), `\u{X..X}`,
//!   `\"` `\\` `\/` `\'` `\b` `\f` `\n` `\r` `\t`;
//! - `\xNN` (two hex digits, one byte);
//! - HTML and XML numeric references `&#DDD;`, `&#xHH;`, `&#XHH;`, any
//!   number of leading zeros, the `;` optional (as HTML parsers accept);
//!   an invalid code point becomes U+FFFD, as in HTML;
//! - the named references of HTML that stand for ASCII characters
//!   (`&amp;`, `&sol;`, `&lowbar;`, ...; [`NAMED`]), and the legacy
//!   `&amp` `&lt` `&gt` `&quot` without `;`.
//!
//! Anything else (octal escapes, named references of non-ASCII characters,
//! escapes applied twice) is left as it is: see docs/security.md.

/// Named references of HTML for ASCII text (the HTML standard's list of
/// named character references, those whose value is ASCII).
pub const NAMED: &[(&str, &str)] = &[
    ("Tab", "\t"),
    ("NewLine", "\n"),
    ("excl", "!"),
    ("quot", "\""),
    ("QUOT", "\""),
    ("num", "#"),
    ("dollar", "$"),
    ("percnt", "%"),
    ("amp", "&"),
    ("AMP", "&"),
    ("apos", "'"),
    ("lpar", "("),
    ("rpar", ")"),
    ("ast", "*"),
    ("midast", "*"),
    ("plus", "+"),
    ("comma", ","),
    ("period", "."),
    ("sol", "/"),
    ("colon", ":"),
    ("semi", ";"),
    ("lt", "<"),
    ("LT", "<"),
    ("equals", "="),
    ("gt", ">"),
    ("GT", ">"),
    ("quest", "?"),
    ("commat", "@"),
    ("lsqb", "["),
    ("lbrack", "["),
    ("bsol", "\\"),
    ("rsqb", "]"),
    ("rbrack", "]"),
    ("Hat", "^"),
    ("lowbar", "_"),
    ("UnderBar", "_"),
    ("grave", "`"),
    ("DiacriticalGrave", "`"),
    ("lcub", "{"),
    ("lbrace", "{"),
    ("verbar", "|"),
    ("vert", "|"),
    ("VerticalLine", "|"),
    ("rcub", "}"),
    ("rbrace", "}"),
    ("fjlig", "fj"),
];

/// Legacy references HTML also accepts without the `;`.
const LEGACY: &[(&str, &str)] = &[
    ("amp", "&"),
    ("AMP", "&"),
    ("lt", "<"),
    ("LT", "<"),
    ("gt", ">"),
    ("GT", ">"),
    ("quot", "\""),
    ("QUOT", "\""),
];

/// The longest name in [`NAMED`], bytes.
const LONGEST_NAME: usize = 16;

/// Most input bytes one escape spends on one ASCII byte
/// (`&DiacriticalGrave;`); zero-padded numeric references can be longer.
pub const MAX_EXPANSION: usize = LONGEST_NAME + 2;

/// A set of bytes.
#[derive(Clone, Debug)]
pub struct ByteSet([bool; 256]);

impl ByteSet {
    /// The empty set.
    pub fn new() -> ByteSet {
        ByteSet([false; 256])
    }

    /// Add every byte of `bytes`.
    pub fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0[usize::from(b)] = true;
        }
    }

    /// Is `b` in the set?
    pub fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b)]
    }
}

impl Default for ByteSet {
    fn default() -> ByteSet {
        ByteSet::new()
    }
}

/// Kinds of escape, as a set: which ones decoded to a useful byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kinds(u8);

impl Kinds {
    /// No escape.
    pub const NONE: Kinds = Kinds(0);
    /// JSON and JavaScript: `\u0073`, `\u{73}`, `\"`, `\/`, ...
    pub const JSON: Kinds = Kinds(1);
    /// HTML and XML character references: `&#115;`, `&#x73;`, `&sol;`.
    pub const HTML: Kinds = Kinds(2);
    /// `\x73`.
    pub const X: Kinds = Kinds(4);

    /// Is the set empty?
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The encoding name of the set in a DLP rule: `json-escape`,
    /// `html-entity`, `x-escape`, several joined with `+`; `None` when
    /// empty.
    pub fn name(self) -> Option<String> {
        let names = [
            (Kinds::JSON, "json-escape"),
            (Kinds::HTML, "html-entity"),
            (Kinds::X, "x-escape"),
        ];
        let parts: Vec<&str> = names
            .iter()
            .filter(|(k, _)| self.0 & k.0 != 0)
            .map(|(_, n)| *n)
            .collect();
        (!parts.is_empty()).then(|| parts.join("+"))
    }
}

impl std::ops::BitOr for Kinds {
    type Output = Kinds;
    fn bitor(self, other: Kinds) -> Kinds {
        Kinds(self.0 | other.0)
    }
}

impl std::ops::BitOrAssign for Kinds {
    fn bitor_assign(&mut self, other: Kinds) {
        self.0 |= other.0;
    }
}

/// The kind of the escape starting with `s[..2]`.
fn kind(s: &[u8]) -> Kinds {
    match s {
        [b'&', ..] => Kinds::HTML,
        [b'\\', b'x', ..] => Kinds::X,
        _ => Kinds::JSON,
    }
}

/// Could `s` hold an escape (a `\` or a `&`)?
pub fn has_text_escapes(s: &[u8]) -> bool {
    memchr::memchr2(b'\\', b'&', s).is_some()
}

/// What one escape decodes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Out {
    Byte(u8),
    Char(char),
    Str(&'static str),
}

impl Out {
    fn write(self, out: &mut Vec<u8>) -> &[u8] {
        let start = out.len();
        match self {
            Out::Byte(b) => out.push(b),
            Out::Char(c) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            Out::Str(s) => out.extend_from_slice(s.as_bytes()),
        }
        &out[start..]
    }
}

/// The parse of the text at an escape's first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// An escape of `len` bytes.
    Escape(usize, Out),
    /// Not an escape: the first byte stands for itself.
    Literal,
    /// The text ends before it can tell.
    More,
}

fn hex(b: u8) -> Option<u32> {
    (b as char).to_digit(16)
}

/// `n` hex digits at `s[at..]`: their value, `Err(true)` if the text ends
/// first, `Err(false)` if one is not a hex digit.
fn hex_digits(s: &[u8], at: usize, n: usize) -> Result<u32, bool> {
    let mut v = 0;
    for i in at..at + n {
        match s.get(i) {
            None => return Err(true),
            Some(&b) => v = v << 4 | hex(b).ok_or(false)?,
        }
    }
    Ok(v)
}

/// A parse that needs `s` to go on: [`Step::More`] unless the text ends
/// here (`last`), then [`Step::Literal`].
fn more(last: bool) -> Step {
    if last {
        Step::Literal
    } else {
        Step::More
    }
}

/// Parse the escape starting at `s[0]` (a `\` or a `&`); `last` says the
/// text ends with `s`.
fn parse(s: &[u8], last: bool) -> Step {
    match s.first() {
        Some(b'\\') => backslash(s, last),
        Some(b'&') => ampersand(s, last),
        _ => Step::Literal,
    }
}

fn backslash(s: &[u8], last: bool) -> Step {
    let Some(&c) = s.get(1) else {
        return more(last);
    };
    let byte = |b| Step::Escape(2, Out::Byte(b));
    match c {
        b'"' | b'\\' | b'/' | b'\'' => byte(c),
        b'b' => byte(8),
        b'f' => byte(12),
        b'n' => byte(b'\n'),
        b'r' => byte(b'\r'),
        b't' => byte(b'\t'),
        b'x' => match hex_digits(s, 2, 2) {
            Ok(v) => Step::Escape(4, Out::Byte(v as u8)),
            Err(true) => more(last),
            Err(false) => Step::Literal,
        },
        b'u' if s.get(2) == Some(&b'{') => brace(s, last),
        b'u' => match hex_digits(s, 2, 4) {
            Ok(hi @ 0xd800..=0xdbff) => low_surrogate(s, hi, last),
            Ok(v) => Step::Escape(6, Out::Char(char::from_u32(v).unwrap_or('\u{fffd}'))),
            Err(true) => more(last),
            Err(false) => Step::Literal,
        },
        _ => Step::Literal,
    }
}

/// `\uD83D` read: joined with a following `\uDE00`, else U+FFFD.
fn low_surrogate(s: &[u8], hi: u32, last: bool) -> Step {
    let lone = Step::Escape(6, Out::Char('\u{fffd}'));
    match s.get(6..8) {
        Some(b"\\u") => {}
        Some(_) => return lone,
        None if s[6..].iter().zip(b"\\u").all(|(a, b)| a == b) && !last => return Step::More,
        None => return lone,
    }
    match hex_digits(s, 8, 4) {
        Ok(lo @ 0xdc00..=0xdfff) => {
            let c = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
            Step::Escape(12, Out::Char(char::from_u32(c).unwrap_or('\u{fffd}')))
        }
        Err(true) if !last => Step::More,
        _ => lone,
    }
}

/// `\u{1F600}`: one to six hex digits.
fn brace(s: &[u8], last: bool) -> Step {
    let mut v = 0u32;
    for (i, &b) in s.iter().enumerate().skip(3).take(7) {
        match (b, hex(b)) {
            (b'}', _) if i > 3 => {
                return char::from_u32(v)
                    .map_or(Step::Literal, |c| Step::Escape(i + 1, Out::Char(c)))
            }
            (_, Some(d)) if i < 9 => v = v << 4 | d,
            _ => return Step::Literal,
        }
    }
    if s.len() < 10 {
        more(last)
    } else {
        Step::Literal
    }
}

fn ampersand(s: &[u8], last: bool) -> Step {
    match s.get(1) {
        None => more(last),
        Some(b'#') => numeric(s, last),
        Some(b) if b.is_ascii_alphabetic() => named(s, last),
        Some(_) => Step::Literal,
    }
}

/// `&#115;`, `&#x73;`, `&#X0073`.
fn numeric(s: &[u8], last: bool) -> Step {
    let (radix, start) = match s.get(2) {
        None => return more(last),
        Some(b'x' | b'X') => (16, 3),
        Some(_) => (10, 2),
    };
    let digits = s[start..]
        .iter()
        .take_while(|b| (**b as char).is_digit(radix))
        .count();
    let end = start + digits;
    if end == s.len() && !last {
        return Step::More; // more digits, or the `;`, may follow
    }
    if digits == 0 {
        return Step::Literal;
    }
    let mut v: u32 = 0;
    for &b in &s[start..end] {
        let d = (b as char).to_digit(radix).unwrap_or(0);
        v = v.saturating_mul(radix).saturating_add(d).min(0x11_0000);
    }
    let c = char::from_u32(v)
        .filter(|c| *c != '\0')
        .unwrap_or('\u{fffd}');
    let len = end + usize::from(s.get(end) == Some(&b';'));
    Step::Escape(len, Out::Char(c))
}

/// `&lowbar;`, `&amp`.
fn named(s: &[u8], last: bool) -> Step {
    let letters = s[1..]
        .iter()
        .take(LONGEST_NAME + 1)
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    let name = &s[1..1 + letters];
    if 1 + letters == s.len() && letters <= LONGEST_NAME && !last {
        return Step::More;
    }
    if s.get(1 + letters) == Some(&b';') {
        if let Some((_, v)) = NAMED.iter().find(|(n, _)| n.as_bytes() == name) {
            return Step::Escape(letters + 2, Out::Str(v));
        }
    }
    LEGACY
        .iter()
        .find(|(n, _)| name.starts_with(n.as_bytes()))
        .map_or(Step::Literal, |(n, v)| {
            Step::Escape(n.len() + 1, Out::Str(v))
        })
}

/// The text of an escape that needs more input, kept short: a numeric
/// reference's leading zeros and its digits past the eighth change
/// nothing the decoder outputs, so they are dropped.
fn shortened(s: &[u8]) -> Vec<u8> {
    if !s.starts_with(b"&#") {
        return s.to_vec();
    }
    let start = if matches!(s.get(2), Some(b'x' | b'X')) {
        3
    } else {
        2
    };
    let digits = &s[start..];
    let zeros = digits.iter().take_while(|b| **b == b'0').count();
    let mut out = s[..start].to_vec();
    if zeros > 0 {
        out.push(b'0');
    }
    let significant = &digits[zeros..];
    out.extend_from_slice(&significant[..significant.len().min(8)]);
    out
}

/// Decodes text escapes, fed whole or in chunks.
#[derive(Clone, Debug, Default)]
pub struct Unescaper {
    /// The start of an escape the last chunk ended in.
    pending: Vec<u8>,
}

impl Unescaper {
    /// A decoder at the start of a text.
    pub fn new() -> Unescaper {
        Unescaper::default()
    }

    /// Decode the next chunk into `out` (appended); `last` says the text
    /// ends with it. Returns the kinds of escape that decoded to a byte
    /// of `useful`: if none did, the output can hold no match the input
    /// does not (every other escape decoded to a byte no match holds).
    pub fn push(&mut self, chunk: &[u8], last: bool, useful: &ByteSet, out: &mut Vec<u8>) -> Kinds {
        let joined;
        let input = if self.pending.is_empty() {
            chunk
        } else {
            let mut j = std::mem::take(&mut self.pending);
            j.extend_from_slice(chunk);
            joined = j;
            &joined
        };
        let mut hit = Kinds::NONE;
        let mut i = 0;
        while let Some(k) = memchr::memchr2(b'\\', b'&', &input[i..]) {
            out.extend_from_slice(&input[i..i + k]);
            i += k;
            match parse(&input[i..], last) {
                Step::Escape(len, o) => {
                    if o.write(out).iter().any(|&b| useful.contains(b)) {
                        hit |= kind(&input[i..]);
                    }
                    i += len;
                }
                Step::Literal => {
                    out.push(input[i]);
                    i += 1;
                }
                Step::More => {
                    self.pending = shortened(&input[i..]);
                    return hit;
                }
            }
        }
        out.extend_from_slice(&input[i..]);
        hit
    }

    /// Is the decoder inside an escape that the next chunk may finish?
    pub fn is_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// What the pending escape decodes to if the text ends here (nothing
    /// when there is none), without changing the decoder.
    pub fn finish_preview(&self, useful: &ByteSet, out: &mut Vec<u8>) -> Kinds {
        self.clone().push(&[], true, useful, out)
    }
}

/// `s` with its text escapes decoded, and the kinds that decoded to a byte
/// of `useful`.
pub fn unescape(s: &[u8], useful: &ByteSet) -> (Vec<u8>, Kinds) {
    let mut out = Vec::with_capacity(s.len());
    let hit = Unescaper::new().push(s, true, useful, &mut out);
    (out, hit)
}

#[cfg(test)]
#[path = "unescape_tests.rs"]
mod tests;
