//! Fuzz `bottle_host::manifest::parse` on arbitrary UTF-8. A manifest that
//! parses must describe itself, and its DNS allowlist must hold only
//! normalised, non-IP patterns that match their own names. An error must
//! name the file and a line inside it.
#![no_main]

use std::path::Path;

use bottle_host::manifest::{self, is_ip_literal, normalize_name, HostPattern, ManifestError};
use libfuzzer_sys::fuzz_target;

const FILE: &str = "/fuzz/bottle.toml";

fuzz_target!(|src: &str| {
    match manifest::parse(src, Path::new(FILE)) {
        Ok(m) => {
            assert!(!m.describe().is_empty());
            for p in m.dns_allowlist() {
                let base = p.base();
                assert!(!is_ip_literal(base), "IP literal {base:?} in the allowlist");
                assert_eq!(normalize_name(base).as_deref(), Ok(base), "not normalised");
                assert_eq!(HostPattern::parse(&p.to_string()), Ok(p.clone()));
                match &p {
                    HostPattern::Exact(n) => assert!(p.matches(n)),
                    HostPattern::Suffix(s) => {
                        assert!(!p.matches(s));
                        assert!(p.matches(&format!("a.{s}")));
                    }
                }
            }
        }
        Err(e) => {
            let text = e.to_string();
            assert!(text.starts_with(FILE), "error without the file: {text}");
            let lines = src.matches('\n').count() + 1;
            if let ManifestError::Syntax { line, .. } | ManifestError::Invalid { line, .. } = e {
                assert!((1..=lines).contains(&line), "line {line} of {lines}");
            }
        }
    }
});
