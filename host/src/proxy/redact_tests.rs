use super::*;
use data_encoding::{BASE32, BASE64, BASE64URL, HEXLOWER, HEXUPPER};

const SECRET: &str = "rt-Kp3vQ9zX1mW7nB5cL2dF8gH4";

fn redactor() -> Arc<Redactor> {
    Redactor::new(&[Secret {
        name: "token".into(),
        value: SECRET.into(),
    }])
    .unwrap()
}

/// Filler that cannot form any part of the secret's encodings.
fn filler(n: usize) -> Vec<u8> {
    (0..n).map(|i| b"{} ,:\n"[i % 6]).collect()
}

fn forms() -> Vec<(&'static str, Vec<u8>)> {
    let v = SECRET.as_bytes();
    let mixed: Vec<u8> = HEXLOWER
        .encode(v)
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            if i % 2 == 0 {
                b.to_ascii_uppercase()
            } else {
                b
            }
        })
        .collect();
    vec![
        ("raw", v.to_vec()),
        ("hex", HEXLOWER.encode(v).into_bytes()),
        ("hex", HEXUPPER.encode(v).into_bytes()),
        ("hex", mixed),
        ("base64", BASE64.encode(v).into_bytes()),
        ("base64url", BASE64URL.encode(v).into_bytes()),
        ("base32", BASE32.encode(v).into_bytes()),
        ("base32", BASE32.encode(v).to_ascii_lowercase().into_bytes()),
        (
            "url",
            v.iter()
                .flat_map(|b| format!("%{b:02X}").into_bytes())
                .collect(),
        ),
    ]
}

fn run_stream(r: &Arc<Redactor>, data: &[u8], chunk: usize) -> (Vec<u8>, Vec<String>) {
    let mut s = StreamRedactor::new(Arc::clone(r));
    let mut out = Vec::new();
    let mut hits = Vec::new();
    for c in data.chunks(chunk.max(1)) {
        let (o, h) = s.push(c);
        assert!(s.held() <= r.hold(), "held {} > {}", s.held(), r.hold());
        out.extend_from_slice(&o);
        hits.extend(h);
    }
    let (o, h) = s.finish();
    out.extend_from_slice(&o);
    hits.extend(h);
    (out, hits)
}

#[test]
fn every_form_at_every_offset_and_seam_is_overwritten_in_place() {
    let r = redactor();
    for (name, form) in forms() {
        for offset in 0..24 {
            let mut data = filler(offset);
            data.extend_from_slice(&form);
            data.extend_from_slice(&filler(17));
            for chunk in [1, 5, 16, 4096] {
                let (out, hits) = run_stream(&r, &data, chunk);
                assert_eq!(
                    out.len(),
                    data.len(),
                    "{name} offset {offset} chunk {chunk}"
                );
                assert_eq!(&out[..offset], &data[..offset], "{name}: bytes before");
                assert_eq!(&out[offset + form.len()..], &data[offset + form.len()..]);
                // Whole-value base64/base32 end in a character that also
                // encodes padding bits, and `=`: those are not the secret's.
                let region = &out[offset..offset + form.len()];
                let kept = region.iter().rev().take_while(|&&b| b != MARK).count();
                let padding = form.iter().rev().take_while(|&&b| b == b'=').count();
                let allowed = if padding > 0 { padding + 1 } else { 0 };
                assert!(
                    kept <= allowed && region[..region.len() - kept].iter().all(|&b| b == MARK),
                    "{name} offset {offset} chunk {chunk}: {:?}",
                    String::from_utf8_lossy(&out)
                );
                assert!(!hits.is_empty(), "{name}: no rule reported");
                assert!(hits.iter().all(|h| h.contains(":token:")), "{hits:?}");
            }
        }
    }
}

#[test]
fn a_piece_of_twelve_bytes_is_overwritten_and_eleven_are_not() {
    let r = redactor();
    let v = SECRET.as_bytes();
    let tail = &v[3..]; // after the `rt-` text, well inside the secret
    for start in 0..tail.len() - 12 {
        let piece = &tail[start..start + 12];
        let mut data = filler(9);
        data.extend_from_slice(piece);
        data.extend_from_slice(&filler(9));
        let (out, hits) = run_stream(&r, &data, 4);
        assert!(out[9..21].iter().all(|&b| b == MARK), "piece at {start}");
        assert!(hits.iter().any(|h| h.starts_with("secret-piece:token:")));
        let short = &tail[start..start + 11];
        let mut data = filler(9);
        data.extend_from_slice(short);
        let (out, hits) = run_stream(&r, &data, 4);
        assert_eq!(out, data, "11 bytes at {start} were redacted");
        assert!(hits.is_empty());
    }
}

#[test]
fn text_without_secrets_passes_unchanged() {
    let r = redactor();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let data: Vec<u8> = (0..(1 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/= \n"
                [(x % 67) as usize]
        })
        .collect();
    let (out, hits) = run_stream(&r, &data, 16 * 1024);
    assert!(hits.is_empty(), "{hits:?}");
    assert_eq!(out, data);
}

#[test]
fn no_secrets_means_nothing_to_do() {
    let r = Redactor::new(&[]).unwrap();
    assert!(r.is_empty());
    let mut b = SECRET.as_bytes().to_vec();
    assert!(r.redact_all(&mut b).is_empty());
    assert_eq!(b, SECRET.as_bytes());
}

#[test]
fn finds_agrees_with_redact_all() {
    let r = redactor();
    let tail = &SECRET.as_bytes()[3..];
    let mut cases: Vec<Vec<u8>> = forms().into_iter().map(|(_, f)| f).collect();
    cases.extend([
        tail[..12].to_vec(),
        tail[..11].to_vec(),
        b"nginx/1.22.1".to_vec(),
        b"Sun, 30 Nov 2026 23:17:45 GMT".to_vec(),
        Vec::new(),
    ]);
    for case in cases {
        let mut copy = case.clone();
        let redacted = !r.redact_all(&mut copy).is_empty();
        assert_eq!(
            r.finds(&case),
            redacted,
            "{:?}",
            String::from_utf8_lossy(&case)
        );
    }
}
