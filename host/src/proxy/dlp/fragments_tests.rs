use data_encoding::{BASE64URL_NOPAD, HEXLOWER, HEXUPPER};

use super::*;
use crate::proxy::dlp::secrets::url_encode;

const VALUE: &str = "hs9Kq2Vx7Lm4Pw8Zr3Tn6Yb1Qd";

fn matcher(value: &str) -> FragmentMatcher {
    FragmentMatcher::new(&[Secret {
        name: "tok".into(),
        value: value.into(),
    }])
    .unwrap()
}

/// Every way the tests send a piece: encoded alone, and inside a larger
/// encoded blob at each alignment.
fn encodings(piece: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        ("raw".to_string(), piece.to_vec()),
        ("url".into(), url_encode(piece, true)),
        ("hex".into(), HEXLOWER.encode(piece).into_bytes()),
        ("HEX".into(), HEXUPPER.encode(piece).into_bytes()),
    ];
    for pre in ["", "a", "ab", "abc", "abcd"] {
        let mut input = pre.as_bytes().to_vec();
        input.extend_from_slice(piece);
        input.extend_from_slice(b"tail");
        out.push((
            format!("base64 {pre:?}"),
            data_encoding::BASE64.encode(&input).into_bytes(),
        ));
        out.push((
            format!("base64url {pre:?}"),
            BASE64URL_NOPAD.encode(&input).into_bytes(),
        ));
    }
    out
}

fn wrapped(enc: &[u8]) -> Vec<u8> {
    let mut hay = b"GET /upload?part=".to_vec();
    hay.extend_from_slice(enc);
    hay.extend_from_slice(b"&n=2 HTTP/1.1");
    hay
}

#[test]
fn every_piece_of_twelve_bytes_or_more_is_found_in_every_encoding() {
    let m = matcher(VALUE);
    let v = VALUE.as_bytes();
    for len in PIECE..=v.len() {
        for start in 0..=v.len() - len {
            for (what, enc) in encodings(&v[start..start + len]) {
                let found = m.find(&wrapped(&enc));
                assert!(
                    found.as_ref().is_some_and(|p| p.secret == "tok"),
                    "{what}: piece {start}..{} not found",
                    start + len
                );
            }
        }
    }
}

#[test]
fn base32_pieces_are_not_searched_for() {
    // The documented limit: a whole secret in base32 is found by the exact
    // matcher, a base32 piece is not.
    let m = matcher(VALUE);
    let piece = data_encoding::BASE32.encode(&VALUE.as_bytes()[..16]);
    assert_eq!(m.find(&wrapped(piece.as_bytes())), None);
}

#[test]
fn shorter_pieces_are_not_found() {
    // The stated limit, and proof the matcher does not fire on less. (Not
    // base64: an 11-byte piece's last character may, by chance, equal
    // the secret's own, and then 11 bytes are rightly found.)
    let m = matcher(VALUE);
    let v = VALUE.as_bytes();
    for start in 0..=v.len() - (PIECE - 1) {
        let piece = &v[start..start + PIECE - 1];
        for (what, enc) in [
            ("raw", piece.to_vec()),
            ("hex", HEXLOWER.encode(piece).into_bytes()),
            ("url", url_encode(piece, true)),
        ] {
            assert_eq!(m.find(&wrapped(&enc)), None, "{what} at {start}");
        }
    }
}

#[test]
fn the_public_prefix_is_not_a_piece() {
    let table: &[(&str, usize)] = &[
        ("ghp_0123456789abcdefghijABCDEFGHIJ012345", 4),
        ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123", 13),
        ("github_pat_11ABCDEFG0123456789_abcdefghij", 11),
        ("xoxb-123456-abcdefABCDEFabcdef", 12),
        ("sk_live_abcdefghijklmnopqrstuvwx", 8),
        ("AKIAIOSFODNN7EXAMPLE", 4),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig", 3),
        (VALUE, 0),
        ("hunter2-very-secret-value", 0),
        ("", 0),
    ];
    for (value, want) in table {
        assert_eq!(public_prefix(value.as_bytes()), *want, "{value}");
    }
    let key = "sk-ant-api03-Zq8vN2pL5xR7tW1yB4cF9gH3jK6mD0sA";
    let m = matcher(key);
    // Every Anthropic key starts so: not a piece of this one.
    assert_eq!(m.find(b"docs: keys look like sk-ant-api03-... here"), None);
    assert!(m.find(&key.as_bytes()[13..13 + PIECE]).is_some());
    assert!(m.find(&key.as_bytes()[30..]).is_some());
}

#[test]
fn short_secrets_get_no_piece_matching() {
    assert!(matcher("0123456789abcdefghi").is_empty());
    assert!(matcher("ghp_0123456789abcdefghi").is_empty());
    assert!(!matcher(VALUE).is_empty());
    assert!(FragmentMatcher::new(&[]).unwrap().is_empty());
    assert_eq!(FragmentMatcher::new(&[]).unwrap().find(b"anything"), None);
}

#[test]
fn random_text_does_not_match() {
    // 4 MiB of text over the secret's own alphabets: no false piece.
    let m = matcher(VALUE);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/%-_";
    let hay: Vec<u8> = (0..4 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            alphabet[(x % alphabet.len() as u64) as usize]
        })
        .collect();
    assert_eq!(m.find(&hay), None);
}

#[test]
fn a_block_that_is_a_prefix_of_another_is_still_checked() {
    // Two secrets whose blocks share starts: each piece is still found.
    let m = FragmentMatcher::new(&[
        Secret {
            name: "a".into(),
            value: "abcdefabcdefXYZ0123456789".into(),
        },
        Secret {
            name: "b".into(),
            value: "abcdefQRSTUVWXYZ9876543210".into(),
        },
    ])
    .unwrap();
    let p = m.find(b"..abcdefQRSTUV..").unwrap();
    assert_eq!(p.secret, "b");
    let p = m.find(b"..defabcdefXYZ0..").unwrap();
    assert_eq!(p.secret, "a");
}
