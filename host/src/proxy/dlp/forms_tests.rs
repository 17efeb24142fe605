//! The forms decoders undo without being asked: hex and base32 in any
//! case, text escapes (JSON, HTML/XML, `\x`), one level of stacked
//! encoding. Each is found at every offset of a random-ish text, whole,
//! split at every seam, and as a piece; near misses and random text are
//! not.

use data_encoding::{BASE32, BASE64, BASE64URL_NOPAD, BASE64_NOPAD, HEXLOWER, HEXUPPER};

use super::secrets::{stable_part, url_encode};
use super::*;

/// Has a `/`, `+`, `=` and `&` (escaped by JSON and HTML encoders), and a
/// secret part long enough for piece matching.
const VALUE: &str = "s3cr3t/Value+with=odd&chars";

/// Shorter than a piece-matched secret: only whole forms can match, so a
/// near miss must find nothing at all.
const SHORT: &str = "horse-battery-stpl";

fn dlp(value: &str) -> Arc<Dlp> {
    Dlp::new(&[Secret {
        name: "tok".into(),
        value: value.into(),
    }])
    .unwrap()
}

/// A pseudo-random sequence (xorshift, fixed seed).
struct Rand(u64);

impl Rand {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn text(&mut self, len: usize, alphabet: &[u8]) -> Vec<u8> {
        (0..len)
            .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize])
            .collect()
    }
}

/// Filler around a form: no digits (an unterminated `&#115` would take
/// them), no escapes.
const FILLER: &[u8] = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ,.:{}\"";

/// `text` with every letter's case chosen by `r`, both cases present.
fn mixed_case(text: &[u8], r: &mut Rand) -> Vec<u8> {
    loop {
        let out: Vec<u8> = text
            .iter()
            .map(|b| match r.next() % 2 {
                0 => b.to_ascii_lowercase(),
                _ => b.to_ascii_uppercase(),
            })
            .collect();
        if out.iter().any(u8::is_ascii_uppercase) && out.iter().any(u8::is_ascii_lowercase) {
            return out;
        }
    }
}

/// Each byte of `v` escaped by `esc`.
fn each(v: &[u8], esc: impl Fn(u8) -> String) -> Vec<u8> {
    v.iter().flat_map(|&b| esc(b).into_bytes()).collect()
}

/// Every variant of the new forms of `v` and the rule each must give.
fn variants(v: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut r = Rand(0x9e37_79b9_7f4a_7c15);
    let hex = HEXLOWER.encode(v).into_bytes();
    let mut out: Vec<(String, Vec<u8>)> = vec![
        ("secret:tok:hex".into(), hex.clone()),
        ("secret:tok:hex".into(), HEXUPPER.encode(v).into_bytes()),
        ("secret:tok:hex-mixedcase".into(), mixed_case(&hex, &mut r)),
        ("secret:tok:hex-mixedcase".into(), mixed_case(&hex, &mut r)),
    ];
    // base32 inside a larger blob, at each of its five alignments.
    for pre in ["", "a", "ab", "abc", "abcd"] {
        let mut input = pre.as_bytes().to_vec();
        input.extend_from_slice(v);
        input.extend_from_slice(b"tail");
        let b32 = BASE32.encode(&input).into_bytes();
        out.push(("secret:tok:base32".into(), b32.to_ascii_lowercase()));
        out.push((
            "secret:tok:base32-mixedcase".into(),
            mixed_case(&b32, &mut r),
        ));
    }
    let json = "secret:tok:json-escape".to_string();
    let html = "secret:tok:html-entity".to_string();
    out.extend([
        (json.clone(), each(v, |b| format!("\\u{b:04x}"))),
        (json.clone(), each(v, |b| format!("\\u{b:04X}"))),
        (json.clone(), each(v, |b| format!("\\u{{{b:x}}}"))),
        // Only some characters escaped, as encoders do.
        (
            json.clone(),
            each(v, |b| match b {
                b'/' => "\\/".into(),
                b'&' => "\\u0026".into(),
                b'=' => "\\u003d".into(),
                _ => (b as char).to_string(),
            }),
        ),
        (html.clone(), each(v, |b| format!("&#{b};"))),
        (html.clone(), each(v, |b| format!("&#x{b:x};"))),
        (html.clone(), each(v, |b| format!("&#X{b:X};"))),
        (html.clone(), each(v, |b| format!("&#0000{b:05};"))),
        (html.clone(), each(v, |b| format!("&#000{b}"))),
        (
            html.clone(),
            each(v, |b| match b {
                b'/' => "&sol;".into(),
                b'+' => "&plus;".into(),
                b'=' => "&equals;".into(),
                b'&' => "&amp;".into(),
                _ => (b as char).to_string(),
            }),
        ),
        (
            "secret:tok:x-escape".into(),
            each(v, |b| format!("\\x{b:02x}")),
        ),
        (
            "secret:tok:x-escape".into(),
            each(v, |b| format!("\\x{b:02X}")),
        ),
        (
            "secret:tok:json-escape+html-entity+x-escape".into(),
            each(v, |b| match b % 3 {
                0 => format!("\\u{b:04x}"),
                1 => format!("&#{b};"),
                _ => format!("\\x{b:02x}"),
            }),
        ),
        (
            "secret:tok:json-escape(hex)".into(),
            each(&hex, |b| format!("\\u{b:04x}")),
        ),
    ]);
    // One level of stacked encoding: (name, inner, outer).
    // base64url text equal to the base64 text is the base64 form.
    let url64 = |t: &[u8]| match stable_part(&BASE64URL_NOPAD, 6, 0, t)
        == stable_part(&BASE64_NOPAD, 6, 0, t)
    {
        true => "base64",
        false => "base64url",
    };
    let inner: Vec<(&str, Vec<u8>)> = vec![
        ("hex", hex.clone()),
        ("base64", BASE64.encode(v).into_bytes()),
        (
            match BASE64URL_NOPAD.encode(v) == BASE64_NOPAD.encode(v) {
                true => "base64",
                false => "base64url",
            },
            BASE64URL_NOPAD.encode(v).into_bytes(),
        ),
        ("base32", BASE32.encode(v).into_bytes()),
        ("url", url_encode(v, true)),
    ];
    for (iname, i) in &inner {
        let outer: [(&str, Vec<u8>); 5] = [
            ("hex", HEXLOWER.encode(i).into_bytes()),
            ("hex", HEXUPPER.encode(i).into_bytes()),
            ("base64", BASE64.encode(i).into_bytes()),
            ("base64", BASE64_NOPAD.encode(i).into_bytes()),
            (url64(i), BASE64URL_NOPAD.encode(i).into_bytes()),
        ];
        for (oname, o) in outer {
            out.push((format!("secret:tok:{oname}({iname})"), o));
        }
        let o = HEXLOWER.encode(i).into_bytes();
        if o.iter().filter(|b| b.is_ascii_alphabetic()).count() >= 2 {
            // (Not hex of hex: only digits.)
            let o = mixed_case(&o, &mut r);
            out.push((format!("secret:tok:hex({iname})-mixedcase"), o));
        }
    }
    out
}

/// `form` at offset `at` of `len` bytes of filler.
fn embed(r: &mut Rand, form: &[u8], at: usize, len: usize) -> Vec<u8> {
    let mut hay = r.text(len, FILLER);
    hay.splice(at..at, form.iter().copied());
    hay
}

#[test]
fn every_new_form_is_found_at_every_offset() {
    let d = dlp(VALUE);
    let mut r = Rand(7);
    for (rule, form) in variants(VALUE.as_bytes()) {
        for at in 0..=64 {
            let hay = embed(&mut r, &form, at, 64);
            let got = d.scan(&hay, "body").map(|h| h.rule);
            assert_eq!(
                got.as_deref(),
                Some(rule.as_str()),
                "at {at}: {}",
                String::from_utf8_lossy(&form)
            );
        }
    }
}

#[test]
fn every_new_form_is_found_split_at_every_seam() {
    // Streamed in two chunks cut anywhere in the form (whole, or a piece
    // on one side), and in chunks of 1, 2, 3 and 7 bytes.
    let d = dlp(VALUE);
    let mut r = Rand(11);
    for (rule, form) in variants(VALUE.as_bytes()) {
        let hay = embed(&mut r, &form, 20, 40);
        let what = String::from_utf8_lossy(&form);
        for cut in 20..=20 + form.len() {
            let mut s = StreamScanner::new(d.clone());
            let hit = s.push(&hay[..cut]).or_else(|| s.push(&hay[cut..]));
            let got = hit.map(|h| h.rule).unwrap_or_default();
            assert!(got.contains(":tok:"), "{rule}, cut at {cut}: {what}");
        }
        for size in [1, 2, 3, 7] {
            let mut s = StreamScanner::new(d.clone());
            let hit = hay.chunks(size).find_map(|c| s.push(c));
            assert!(hit.is_some(), "{rule}, chunks of {size}: {what}");
        }
    }
}

#[test]
fn pieces_are_found_in_the_new_forms() {
    // 14 bytes of the secret: a piece, not the whole.
    let d = dlp(VALUE);
    let piece = &VALUE.as_bytes()[6..20];
    let mut r = Rand(3);
    let hex = HEXLOWER.encode(piece).into_bytes();
    let table: Vec<(&str, Vec<u8>)> = vec![
        ("secret-piece:tok:hex-mixedcase", mixed_case(&hex, &mut r)),
        ("secret-piece:tok:hex", HEXUPPER.encode(piece).into_bytes()),
        (
            "secret-piece:tok:json-escape",
            each(piece, |b| format!("\\u{b:04x}")),
        ),
        (
            "secret-piece:tok:html-entity",
            each(piece, |b| format!("&#{b};")),
        ),
        (
            "secret-piece:tok:x-escape",
            each(piece, |b| format!("\\x{b:02x}")),
        ),
    ];
    for (rule, form) in table {
        for at in 0..=32 {
            let hay = embed(&mut r, &form, at, 32);
            let got = d.scan(&hay, "body").map(|h| h.rule);
            assert_eq!(got.as_deref(), Some(rule), "at {at}");
        }
    }
}

#[test]
fn near_misses_are_not_found() {
    // A short secret (no piece matching): a form one character off, or
    // with characters the decoders do not turn into the secret's, is
    // nothing.
    let d = dlp(SHORT);
    let v = SHORT.as_bytes();
    let flip = |mut t: Vec<u8>, i: usize| {
        t[i] = if t[i] == b'0' { b'1' } else { b'0' };
        t
    };
    let hex = HEXLOWER.encode(v).into_bytes();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("raw, case changed", v.to_ascii_uppercase()),
        ("hex, one digit off", flip(hex.clone(), 17)),
        ("hex, one byte short", hex[..hex.len() - 2].to_vec()),
        (
            "json, one escape off",
            flip(each(v, |b| format!("\\u{b:04x}")), 3),
        ),
        (
            "json, escaped backslash",
            each(v, |b| format!("\\\\u{b:04x}")),
        ),
        (
            "json, a newline inside",
            [&v[..5], b"\\n", &v[5..]].concat(),
        ),
        (
            "html, wrong digits",
            each(v, |b| format!("&#{};", u32::from(b) + 1)),
        ),
        (
            "html, unknown name",
            [&v[..5], b"&minus;", &v[6..]].concat(),
        ),
        (
            "html, non-ASCII dash",
            [&v[..5], b"&#8208;", &v[6..]].concat(),
        ),
        (
            "x-escape, one digit",
            each(v, |b| format!("\\x{:x}", b >> 4)),
        ),
        (
            "base64(hex), one character off",
            flip(BASE64.encode(&hex).into_bytes(), 10),
        ),
        (
            "hex(base64), one character off",
            flip(
                HEXLOWER.encode(BASE64.encode(v).as_bytes()).into_bytes(),
                11,
            ),
        ),
    ];
    // The base32 of a near value (first byte changed).
    let mut near = v.to_vec();
    near[0] ^= 1;
    cases.push(("base32 of a near value", BASE32.encode(&near).into_bytes()));
    for (what, form) in cases {
        assert_eq!(d.scan(&form, "body"), None, "{what}");
        let mut s = StreamScanner::new(d.clone());
        assert_eq!(form.chunks(5).find_map(|c| s.push(c)), None, "{what}");
    }
}

#[test]
fn stacked_forms_left_out_are_not_found() {
    // The documented limits: base32 as the outer layer, uppercase hex as
    // the inner one (a short secret: no pieces to find them by).
    let d = dlp(SHORT);
    let v = SHORT.as_bytes();
    let hex_upper = HEXUPPER.encode(v);
    for (what, form) in [
        ("base32(hex)", BASE32.encode(HEXLOWER.encode(v).as_bytes())),
        ("base32(base64)", BASE32.encode(BASE64.encode(v).as_bytes())),
        ("hex(HEX)", HEXLOWER.encode(hex_upper.as_bytes())),
        ("base64(HEX)", BASE64.encode(hex_upper.as_bytes())),
    ] {
        assert_eq!(d.scan(form.as_bytes(), "body"), None, "{what}");
    }
}

#[test]
fn random_text_with_escapes_gives_no_hit() {
    // 4 MiB over hex digits, base32 and base64 letters, and the escape
    // characters: no false hit, whole or streamed.
    let d = dlp(VALUE);
    let mut r = Rand(0x2545_f491_4f6c_dd1d);
    let alphabet = b"0123456789abcdefABCDEFxyzXYZ234567+/=_-\\&#;u{}% \n";
    let hay = r.text(4 << 20, alphabet);
    assert_eq!(d.scan(&hay, "body"), None);
    let mut s = StreamScanner::new(d.clone());
    assert_eq!(hay.chunks(64 << 10).find_map(|c| s.push(c)), None);
}

#[test]
fn stacked_forms_are_the_documented_combinations() {
    // Outer encodings of inner ones (docs/security.md), and no other;
    // base64url ones only where their text differs from base64's (here
    // only for the URL-encoded inner text).
    let forms = secrets::forms(&[Secret {
        name: "tok".into(),
        value: "~~~?>>>?~~~?>>>?~~~?".into(),
    }]);
    let names: std::collections::BTreeSet<&str> = forms
        .iter()
        .map(|f| f.encoding)
        .filter(|e| e.contains('('))
        .collect();
    let mut want = std::collections::BTreeSet::new();
    for outer in ["base64", "base64url", "hex"] {
        for inner in ["base32", "base64", "base64url", "hex", "url"] {
            want.insert(format!("{outer}({inner})"));
        }
    }
    let mut want: std::collections::BTreeSet<&str> = want.iter().map(String::as_str).collect();
    want.retain(|n| !n.starts_with("base64url(") || *n == "base64url(url)");
    assert_eq!(names, want);
}
