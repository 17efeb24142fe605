//! Fuzz `bottle_host::manifest::parse` on arbitrary UTF-8. A manifest that
//! parses must describe itself, keep every documented limit
//! (docs/manifest.md), and its DNS allowlist must hold only normalised,
//! non-IP patterns that match their own names. An error must name the file
//! and a line inside it.
#![no_main]

use std::path::Path;

use bottle_host::manifest::{
    self, is_ip_literal, normalize_name, HostPattern, Manifest, ManifestError,
};
use libfuzzer_sys::fuzz_target;

const FILE: &str = "/fuzz/bottle.toml";

fuzz_target!(|src: &str| {
    match manifest::parse(src, Path::new(FILE)) {
        Ok(m) => {
            assert!(!m.describe().is_empty());
            invariants(&m);
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

/// The limits docs/manifest.md promises for a valid manifest.
fn invariants(m: &Manifest) {
    assert!((1..=64).contains(&m.vm.cpus));
    assert!((64..=65536).contains(&m.vm.memory_mib));
    let a = &m.agent;
    // An empty command means the image's Entrypoint + Cmd.
    assert!(a.command.is_empty() || !a.command[0].is_empty());
    assert!(a.workdir.as_deref().is_none_or(|w| w.starts_with('/')));
    assert!(m.mounts.len() <= 16);
    for mnt in &m.mounts {
        assert!(mnt.guest.starts_with('/') && mnt.guest != "/");
        assert!(mnt.host.is_absolute() && mnt.host != std::path::Path::new("/"));
    }
    assert!((1..=a.restart.backoff_max_ms).contains(&a.restart.backoff_initial_ms));
    assert_ne!(m.egress.proxy_port, 0);
    assert!(m.egress.max_body_bytes > 0);
    for r in &m.egress.routes {
        assert!(!r.ports.is_empty() && !r.ports.contains(&0));
        assert!(r.paths.iter().all(|p| p.starts_with('/')));
        if let Some(i) = &r.inject {
            assert!(m.secrets.contains_key(&i.secret), "inject names no secret");
            assert!(i.format.contains("{secret}"));
            assert!(!i.render("s").contains(['\r', '\n']));
        }
    }
    let d = &m.dns;
    assert!(
        d.cache_min_ttl <= d.cache_max_ttl,
        "cache floor above ceiling"
    );
    assert!(d.limits.max_label_len <= 63 && d.limits.max_name_len <= 253);
    assert!((0.0..=1.0).contains(&d.limits.max_entropy));
    assert!(d.limits.window_secs > 0);
}
