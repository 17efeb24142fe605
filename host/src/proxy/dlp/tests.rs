//! DLP tests: chunk seams, targets, and the prefix-window prefilter
//! agreeing with a full `RegexSet` scan.

use super::*;

fn dlp() -> Arc<Dlp> {
    Dlp::new(&[Secret {
        name: "demo".into(),
        value: "hunter2-very-secret-value".into(),
    }])
    .unwrap()
}

#[test]
fn secret_split_at_every_seam_is_found() {
    let d = dlp();
    let secret = b"hunter2-very-secret-value";
    let mut body = vec![b'x'; 5000];
    body.extend_from_slice(secret);
    body.extend(vec![b'y'; 3000]);
    let at = 5000;
    // Split the body in two at every point inside the secret, and also
    // into many tiny chunks.
    for cut in at..=at + secret.len() {
        let mut s = StreamScanner::new(d.clone());
        let hit = s.push(&body[..cut]).or_else(|| s.push(&body[cut..]));
        // Whole, or (when one side holds 12 bytes of it) as a piece.
        let rule = hit.unwrap().rule;
        assert!(
            rule == "secret:demo:raw" || rule == "secret-piece:demo:raw",
            "cut at {cut}: {rule}"
        );
    }
    for size in [1, 3, 7, 64] {
        let mut s = StreamScanner::new(d.clone());
        let hit = body.chunks(size).find_map(|c| s.push(c));
        assert!(hit.is_some(), "chunks of {size}");
    }
    let mut s = StreamScanner::new(d.clone());
    assert!(vec![b'z'; 100_000]
        .chunks(4096)
        .find_map(|c| s.push(c))
        .is_none());
    assert_eq!(s.scanned(), 100_000);
}

#[test]
fn a_secret_split_over_two_requests_is_found_in_each() {
    // Each request is scanned on its own; each half is a piece.
    let d = dlp();
    let value = "hunter2-very-secret-value";
    let (a, b) = value.split_at(value.len() / 2);
    for half in [a, b] {
        let hit = d.scan_target(&format!("/part?d={half}"));
        assert_eq!(
            hit.map(|h| h.rule).as_deref(),
            Some("secret-piece:demo:raw"),
            "{half}"
        );
    }
    let hex = data_encoding::HEXLOWER.encode(b.as_bytes());
    let hit = d.scan(format!("{{\"d\":\"{hex}\"}}").as_bytes(), "body");
    assert_eq!(
        hit.map(|h| h.rule).as_deref(),
        Some("secret-piece:demo:hex")
    );
    // 11 bytes are not a piece.
    assert_eq!(d.scan_target("/part?d=hunter2-ver"), None);
}

#[test]
fn prefiltered_rules_equal_a_full_scan() {
    let d = dlp();
    let set = rules::compile();
    let filler = "lorem ipsum sk- AKIA eyJ xox -----BEGIN ".repeat(40);
    for (i, (name, _)) in rules::RULES.iter().enumerate() {
        let sample = match *name {
            "aws-access-key-id" => "AKIAIOSFODNN7EXAMPLE",
            "github-token" => "ghp_0123456789abcdefghijABCDEFGHIJ012345",
            "github-fine-grained-pat" => "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCD",
            "anthropic-api-key" => "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123",
            "openai-api-key" => "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH",
            "slack-token" => "xoxb-123456789012-abcdefABCDEF",
            "stripe-key" => "sk_live_abcdefghijklmnopqrstuvwx",
            "google-api-key" => "AIzaSyA-abcdefghijklmnopqrstuvwxyz01234",
            "private-key" => "-----BEGIN EC PRIVATE KEY-----",
            "jwt" => "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            other => panic!("no sample for {other}"),
        };
        for hay in [
            sample.to_string(),
            format!("{filler} {sample} {filler}"),
            format!("{filler}{sample}"),
        ] {
            let full = set.matches(hay.as_bytes()).iter().next();
            assert_eq!(full, Some(i), "{name}");
            assert_eq!(d.rules_match(hay.as_bytes()), full, "{name}");
        }
    }
    assert_eq!(d.rules_match(filler.as_bytes()), None);
}

#[test]
fn targets_are_scanned_decoded() {
    let d = dlp();
    let table: &[(&str, Option<&str>)] = &[
        (
            "/search?q=hunter2-very-secret-value",
            Some("secret:demo:raw"),
        ),
        (
            "/q=hunter2%2Dvery%2Dsecret%2Dvalue",
            Some("secret:demo:raw"),
        ),
        (
            "/q=hunter2%252Dvery%252Dsecret%252Dvalue",
            Some("secret:demo:raw"),
        ),
        ("/q=AKIAIOSFODNN7EXAMPLE", Some("aws-access-key-id")),
        ("/v1/messages?beta=true", None),
    ];
    for (target, want) in table {
        let got = d.scan_target(target).map(|h| h.rule);
        assert_eq!(got.as_deref(), *want, "{target}");
    }
    assert_eq!(percent_decode(b"a%4"), b"a%4");
    assert_eq!(percent_decode(b"%41%zz+"), b"A%zz ");
}

proptest::proptest! {
    /// The windowed rule scan finds a rule exactly when a `RegexSet` scan of
    /// the whole text does, on text built from prefixes and rule pieces
    /// (overlapping prefixes, prefixes cut by others, matches at the ends).
    #[test]
    fn windowed_rules_agree_with_a_full_scan(
        parts in proptest::collection::vec(0usize..18, 0..60)
    ) {
        const PIECES: &[&str] = &[
            "AKIA", "sk-", "ant-", "api03-", "ghp_", "eyJ", "xox", "b-",
            "1234567890", "abcdefghij", "ABCDEFGHIJKLMNOP", "T3BlbkFJ", ".",
            " ", "-", "_", "github_pat_", "-----BEGIN RSA PRIVATE KEY-----",
        ];
        let d = dlp();
        let hay: String = parts.iter().map(|&i| PIECES[i]).collect();
        let full = d.set.is_match(hay.as_bytes());
        proptest::prop_assert_eq!(d.rules_match(hay.as_bytes()).is_some(), full, "{}", hay);
    }
}
