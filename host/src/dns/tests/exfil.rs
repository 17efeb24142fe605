//! Exfiltration limits: real names pass, tunnels are blocked, and the
//! unique-name budget works over a window with an injected clock.

use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType as T;

use super::support::{manifest, manifest_with_names};
use crate::dns::exfil::{looks_encoded, normalized_entropy, registered_domain, NameBudget};
use crate::dns::{Policy, Rule};

#[test]
fn real_names_pass_and_tunnels_are_blocked() {
    let m = manifest_with_names(
        "\"*.githubusercontent.com\", \"*.amazonaws.com\", \"*.npmjs.org\"",
        "",
    );
    let p = Policy::from_manifest(&m);
    let cases: &[(&str, Option<Rule>)] = &[
        ("api.github.com", None),
        ("registry.npmjs.org", None),
        ("files.pythonhosted.org", None),
        ("d1a2b3c4d5e6f7.cloudfront.net", None),
        ("dq2k3l9m8n7b6v.cloudfront.net", None),
        ("objects.githubusercontent.com", None),
        ("release-assets.githubusercontent.com", None),
        ("raw.githubusercontent.com", None),
        ("s3.us-east-1.amazonaws.com", None),
        ("ec2-54-123-45-67.compute-1.amazonaws.com", None),
        ("my-bucket.s3-accelerate.dualstack.amazonaws.com", None),
        ("www.example.com", None),
        ("static-content-delivery.example.com", None),
        ("installationguide.example.com", None),
        // Tunnels.
        (
            "6a3f9c8e1d2b4a5f6e7d8c9b0a1f2e3d.x.example.com",
            Some(Rule::EncodedLabel),
        ),
        (
            "mfrggzdfmztwq2lknnwg23tpobyxe43u.example.com",
            Some(Rule::EncodedLabel),
        ),
        ("MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U.example.com", Some(Rule::EncodedLabel)),
        ("aGVsbG8gd29ybGQgdGhpcyBpcw.example.com", Some(Rule::EncodedLabel)),
        ("SGVsbG8tV29ybGQ_c2VjcmV0.example.com", Some(Rule::EncodedLabel)),
        ("mfrg-gzdf-mztw-q2lk-nnwg.example.com", Some(Rule::EncodedLabel)),
        ("deadbeefcafe0123.example.com", Some(Rule::EncodedLabel)),
        ("qwrtzpsdfghjklxc.example.com", Some(Rule::EncodedLabel)),
        (
            "thisisaverylonglabelthatgoesonandonandonx.example.com",
            Some(Rule::LabelLength),
        ),
        ("a.b.c.d.e.example.com", Some(Rule::LabelCount)),
        ("a.b.c.d.example.com", None),
        (
            "abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.example.com",
            Some(Rule::NameLength),
        ),
    ];
    for (name, want) in cases {
        assert_eq!(p.check_static(name, T::A).err(), *want, "{name}");
    }
}

#[test]
fn entropy_rule_fires_above_the_threshold() {
    // With the encoded-label detector out of the way, a label of many
    // distinct characters trips the entropy rule, and a repetitive one not.
    let m = manifest(
        "[dns.limits]\nencoded_label_min_len = 60\nentropy_min_len = 16\nmax_entropy = 0.85\n",
    );
    let p = Policy::from_manifest(&m);
    assert_eq!(
        p.check_static("qazwsxedcrfvtgbyhnujmikolp.example.com", T::A)
            .err(),
        Some(Rule::Entropy)
    );
    assert_eq!(
        p.check_static("aaaaaaaaaaaaaaaaaaaaaaaa.example.com", T::A)
            .err(),
        None
    );
}

#[test]
fn entropy_and_encoding_helpers() {
    assert!(normalized_entropy("abcdefghijklmnop") > 0.99);
    assert!(normalized_entropy("aaaaaaaaaaaaaaaa") < 0.01);
    assert_eq!(normalized_entropy("a"), 0.0);
    let cases: &[(&str, bool)] = &[
        ("6a3f9c8e1d2b4a5f", true),
        ("githubusercontent", false),
        ("d1a2b3c4d5e6f7", false), // shorter than 16
        ("a1b2c3d4e5f6g7h8i9", true),
        ("AbCdEfGhIjKlMnOp", true),
        ("applicationinsights", false),
    ];
    for (label, want) in cases {
        assert_eq!(looks_encoded(label, 16), *want, "{label}");
    }
}

#[test]
fn registered_domains_come_from_the_psl() {
    let cases = [
        ("a.b.example.com", "example.com"),
        ("www.example.co.uk", "example.co.uk"),
        ("d1.cloudfront.net", "d1.cloudfront.net"),
        ("x.y.s3.amazonaws.com", "y.s3.amazonaws.com"),
    ];
    for (name, want) in cases {
        assert_eq!(registered_domain(name), want, "{name}");
    }
}

#[test]
fn unique_name_budget_over_a_window() {
    let mut b = NameBudget::default();
    let w = Duration::from_secs(60);
    let t0 = Instant::now();
    // 3 unique names per registered domain.
    for i in 0..3 {
        let n = format!("n{i}.example.com");
        assert!(b.admit("example.com", &n, t0, w, 3), "{n}");
    }
    assert!(!b.admit("example.com", "n3.example.com", t0, w, 3));
    // Another registered domain has its own budget.
    assert!(b.admit("example.co.uk", "n3.example.co.uk", t0, w, 3));
    // Repeats are free.
    assert!(b.admit(
        "example.com",
        "n1.example.com",
        t0 + Duration::from_secs(30),
        w,
        3
    ));
    // n0 and n2 expire at 60s; n1 was refreshed at 30s.
    let t1 = t0 + Duration::from_secs(61);
    assert!(b.admit("example.com", "n4.example.com", t1, w, 3));
    assert!(b.admit("example.com", "n5.example.com", t1, w, 3));
    assert!(!b.admit("example.com", "n6.example.com", t1, w, 3));
}

#[test]
fn many_short_unique_names_are_blocked_by_the_budget() {
    let m = manifest("");
    let p = Policy::from_manifest(&m);
    let t0 = Instant::now();
    let allowed = (0..500)
        .filter(|i| {
            matches!(
                p.check(&format!("q{i}.example.com"), T::A, t0),
                crate::dns::Verdict::Allow { .. }
            )
        })
        .count();
    assert_eq!(allowed, 100);
}

#[test]
fn budget_domain_is_the_shorter_of_registered_domain_and_suffix() {
    use crate::dns::exfil::budget_domain;
    let cases = [
        ("d1.cloudfront.net", "cloudfront.net", "cloudfront.net"),
        ("a.b.example.com", "example.com", "example.com"),
        ("api.github.com", "api.github.com", "github.com"),
        (
            "x.deep.example.co.uk",
            "deep.example.co.uk",
            "example.co.uk",
        ),
    ];
    for (name, base, want) in cases {
        assert_eq!(budget_domain(name, base), want, "{name} under {base}");
    }
}

#[test]
fn cdn_names_share_one_budget() {
    let p = Policy::from_manifest(&manifest(""));
    let t0 = Instant::now();
    let allowed = (0..150)
        .filter(|i| {
            matches!(
                p.check(&format!("d{i:05}abcdefgh.cloudfront.net"), T::A, t0),
                crate::dns::Verdict::Allow { .. }
            )
        })
        .count();
    assert_eq!(allowed, 100);
}
