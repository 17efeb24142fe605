//! Table-driven policy tests: (name, type) → verdict and rule.

use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType as T;

use super::support::manifest;
use crate::dns::{Policy, Rule, Verdict};

#[test]
fn allowlist_and_type_table() {
    let p = Policy::from_manifest(&manifest(""));
    let cases: &[(&str, T, Option<Rule>)] = &[
        ("api.github.com", T::A, None),
        ("API.GitHub.COM", T::AAAA, None),
        ("api.github.com.", T::A, None),
        ("x.api.github.com", T::A, Some(Rule::NotAllowlisted)),
        ("github.com", T::A, Some(Rule::NotAllowlisted)),
        ("www.example.com", T::A, None),
        ("a.b.example.com", T::HTTPS, None),
        ("example.com", T::A, Some(Rule::NotAllowlisted)),
        ("badexample.com", T::A, Some(Rule::NotAllowlisted)),
        ("example.com.evil.net", T::A, Some(Rule::NotAllowlisted)),
        ("www.example.com.evil.net", T::A, Some(Rule::NotAllowlisted)),
        ("shop.bücher.de", T::A, None),
        ("shop.xn--bcher-kva.de", T::A, None),
        ("SHOP.XN--BCHER-KVA.DE.", T::A, None),
        ("bücher.de", T::A, Some(Rule::NotAllowlisted)),
        ("registry.npmjs.org", T::A, None),
        ("files.pythonhosted.org", T::AAAA, None),
        ("d1a2b3c4d5e6f7.cloudfront.net", T::A, None),
        ("cloudfront.net", T::A, Some(Rule::NotAllowlisted)),
        // Names that fail normalisation are denied.
        ("", T::A, Some(Rule::NotAllowlisted)),
        ("a..example.com", T::A, Some(Rule::NotAllowlisted)),
        ("-a.example.com", T::A, Some(Rule::NotAllowlisted)),
        ("a b.example.com", T::A, Some(Rule::NotAllowlisted)),
        ("10.0.0.1", T::A, Some(Rule::NotAllowlisted)),
        // Record types.
        ("api.github.com", T::TXT, Some(Rule::RecordType)),
        ("api.github.com", T::NULL, Some(Rule::RecordType)),
        ("api.github.com", T::MX, Some(Rule::RecordType)),
        ("api.github.com", T::ANY, Some(Rule::RecordType)),
        ("api.github.com", T::AXFR, Some(Rule::RecordType)),
        ("api.github.com", T::CNAME, None),
        // Not allowlisted wins over the type.
        ("evil.net", T::TXT, Some(Rule::NotAllowlisted)),
    ];
    for (name, t, want) in cases {
        let got = p.check_static(name, *t).err();
        assert_eq!(got, *want, "{name:?} {t}");
    }
}

#[test]
fn check_counts_against_the_budget_and_normalises() {
    let m = manifest("[dns.limits]\nunique_names_per_window = 2\nwindow_secs = 10\n");
    let p = Policy::from_manifest(&m);
    let t0 = Instant::now();
    assert_eq!(
        p.check("WWW.Example.com.", T::A, t0),
        Verdict::Allow {
            name: "www.example.com".into()
        }
    );
    assert!(matches!(
        p.check("b.example.com", T::A, t0),
        Verdict::Allow { .. }
    ));
    assert_eq!(
        p.check("c.example.com", T::A, t0),
        Verdict::Deny(Rule::UniqueNameBudget)
    );
    // The same names again are not new.
    assert!(matches!(
        p.check("www.example.com", T::AAAA, t0),
        Verdict::Allow { .. }
    ));
    // After the window, new names pass again.
    let later = t0 + Duration::from_secs(11);
    assert!(matches!(
        p.check("c.example.com", T::A, later),
        Verdict::Allow { .. }
    ));
    // Denied names never count.
    assert_eq!(
        p.check("evil.net", T::A, t0),
        Verdict::Deny(Rule::NotAllowlisted)
    );
}
