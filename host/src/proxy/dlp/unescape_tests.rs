use super::*;

fn all() -> ByteSet {
    let mut s = ByteSet::new();
    s.add(&(0..=255).collect::<Vec<u8>>());
    s
}

fn dec(s: &str) -> String {
    String::from_utf8(unescape(s.as_bytes(), &all()).0).unwrap()
}

#[test]
fn each_escape_decodes() {
    let table: &[(&str, &str)] = &[
        // JSON / JavaScript
        (r"\u0073\u0065", "se"),
        (r"\u004A\u004a", "JJ"),
        (r#"\"\\\/\'"#, "\"\\/'"),
        (r"a\b\f\n\r\tz", "a\u{8}\u{c}\n\r\tz"),
        (r"\ud83d\ude00!", "\u{1f600}!"),
        (r"\ud83dx", "\u{fffd}x"),
        (r"\ude00", "\u{fffd}"),
        (r"\ud83d\u0041", "\u{fffd}A"),
        (r"\u{73}\u{1F600}\u{000073}", "s\u{1f600}s"),
        (r"\u{}\u{1234567}\u{110000}", r"\u{}\u{1234567}\u{110000}"),
        (r"\\u0073", r"\u0073"),
        // \xNN
        (r"\x73\x5F\x5f", "s__"),
        (r"\x7\xzz\q", r"\x7\xzz\q"),
        // numeric references
        ("&#115;&#x73;&#X73;&#0000115;&#x0000073;", "sssss"),
        ("&#115&#x73 &#X5f_", "ss __"),
        (
            "&#0;&#xD800;&#99999999999999;&#x110000;",
            "\u{fffd}\u{fffd}\u{fffd}\u{fffd}",
        ),
        ("&#;&#x;&#xg;&# ", "&#;&#x;&#xg;&# "),
        // named references
        ("&lowbar;&sol;&plus;&equals;&period;&fjlig;", "_/+=.fj"),
        ("&amp;&AMP;&lt;&gt;&quot;&apos;", "&&<>\"'"),
        ("&amp &ampere &lt3", "& &ere <3"),
        (
            "&sol &nosuchname; &eacute; & x",
            "&sol &nosuchname; &eacute; & x",
        ),
        ("plain text, no escapes", "plain text, no escapes"),
        (r"trailing \", r"trailing \"),
        ("trailing &", "trailing &"),
    ];
    for (input, want) in table {
        assert_eq!(dec(input), *want, "{input}");
    }
}

#[test]
fn kinds_name_the_escapes_that_mattered() {
    let table: &[(&str, Option<&str>)] = &[
        ("plain", None),
        (r"\u0073", Some("json-escape")),
        (r"\u{73}\/", Some("json-escape")),
        ("&#115;&sol;", Some("html-entity")),
        (r"\x73", Some("x-escape")),
        (
            r"\x73&#115;\u0073",
            Some("json-escape+html-entity+x-escape"),
        ),
    ];
    for (input, want) in table {
        let kinds = unescape(input.as_bytes(), &all()).1;
        assert_eq!(kinds.name().as_deref(), *want, "{input}");
    }
}

#[test]
fn every_named_reference_decodes() {
    for (name, value) in NAMED {
        assert_eq!(dec(&format!("&{name};")), *value, "{name}");
        assert!(name.len() <= LONGEST_NAME);
    }
}

#[test]
fn useful_says_whether_an_escape_decoded_to_a_useful_byte() {
    let mut useful = ByteSet::new();
    useful.add(b"abc");
    let table: &[(&str, bool)] = &[
        ("abc", false),
        (r"line\nline \u00e9 &amp; &lt; \x0a", false),
        (r"\u0061", true),
        ("&#98;", true),
        (r"\x63", true),
        (r"\u0064", false),
    ];
    for (input, want) in table {
        assert_eq!(
            !unescape(input.as_bytes(), &useful).1.is_empty(),
            *want,
            "{input}"
        );
    }
}

#[test]
fn pending_escapes_stay_short() {
    // A numeric reference cut inside a long run of zeros or digits keeps
    // at most a few bytes, and decodes as if whole.
    for text in [
        format!("&#x{}73;", "0".repeat(100_000)),
        format!("&#{}; tail", "9".repeat(100_000)),
    ] {
        let mut d = Unescaper::new();
        let mut out = Vec::new();
        let bytes = text.as_bytes();
        for chunk in bytes.chunks(1000) {
            d.push(chunk, false, &all(), &mut out);
            assert!(d.pending.len() <= 16, "{}", d.pending.len());
        }
        d.push(&[], true, &all(), &mut out);
        assert_eq!(out, unescape(bytes, &all()).0);
    }
}

#[test]
fn finish_preview_decodes_what_is_pending() {
    let mut d = Unescaper::new();
    let mut out = Vec::new();
    d.push(b"ab&#115", false, &all(), &mut out);
    assert_eq!(out, b"ab");
    assert!(d.is_pending());
    let mut preview = Vec::new();
    assert_eq!(d.finish_preview(&all(), &mut preview), Kinds::HTML);
    assert_eq!(preview, b"s");
    // The preview changed nothing: the reference goes on.
    d.push(b"6;", false, &all(), &mut out);
    assert_eq!(out, "ab\u{484}".as_bytes());
    assert!(!d.is_pending());
}

proptest::proptest! {
    /// Chunked decoding equals whole decoding, wherever the cuts fall.
    #[test]
    fn chunked_equals_whole(
        parts in proptest::collection::vec(0usize..24, 0..80),
        cuts in proptest::collection::vec(0usize..400, 0..12),
    ) {
        const PIECES: &[&str] = &[
            "\\", "&", "#", "x", "X", "u", "{", "}", ";", "0", "00", "7", "3",
            "d83d", "de00", "0073", "lowbar", "amp", "DiacriticalGrave", "a",
            "\\u", "&#", "&#x", " ",
        ];
        let text: String = parts.iter().map(|&i| PIECES[i]).collect();
        let bytes = text.as_bytes();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut d = Unescaper::new();
        let mut out = Vec::new();
        let mut from = 0;
        for c in cuts {
            d.push(&bytes[from..c], false, &all(), &mut out);
            from = c;
        }
        d.push(&bytes[from..], true, &all(), &mut out);
        proptest::prop_assert_eq!(out, unescape(bytes, &all()).0, "{}", text);
    }
}
