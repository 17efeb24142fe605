use super::*;
use data_encoding::{BASE32, HEXUPPER};

fn secret(v: &str) -> Secret {
    Secret {
        name: "tok".into(),
        value: v.into(),
    }
}

#[test]
fn found_in_every_encoding_and_alignment() {
    let value = "s3cr3t/Value+with=odd&chars";
    let m = SecretMatcher::new(&[secret(value)]).unwrap();
    let v = value.as_bytes();
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("raw".into(), v.to_vec()),
        ("url".into(), url_encode(v, true)),
        ("url-lower".into(), url_encode(v, false)),
        ("hex".into(), HEXLOWER.encode(v).into_bytes()),
        ("HEX".into(), HEXUPPER.encode(v).into_bytes()),
    ];
    for pre in ["", "a", "ab", "abc", "user:", "abcd"] {
        let mut input = pre.as_bytes().to_vec();
        input.extend_from_slice(v);
        input.extend_from_slice(b"tail");
        cases.push((
            format!("base64 {pre:?}"),
            data_encoding::BASE64.encode(&input).into(),
        ));
        cases.push((
            format!("base64url {pre:?}"),
            BASE64URL_NOPAD.encode(&input).into(),
        ));
        if pre.is_empty() {
            cases.push((format!("base32 {pre:?}"), BASE32.encode(&input).into()));
        }
    }
    for (what, enc) in cases {
        let mut hay = b"prefix ".to_vec();
        hay.extend_from_slice(&enc);
        hay.extend_from_slice(b" suffix");
        let f = m.find(&hay);
        assert!(f.is_some(), "{what}: {}", String::from_utf8_lossy(&enc));
        assert_eq!(f.unwrap().secret, "tok");
    }
    assert!(m.find(b"nothing to see here, s3cr3t/Valu").is_none());
}

#[test]
fn no_secrets_matches_nothing() {
    let m = SecretMatcher::new(&[]).unwrap();
    assert!(m.find(b"anything").is_none());
    assert_eq!(m.longest(), 0);
}
