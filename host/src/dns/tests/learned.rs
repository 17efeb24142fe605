//! Learned addresses: shared between clones, normalised names, expiry.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::dns::LearnedAddrs;

#[test]
fn learned_addresses_are_shared_and_expire() {
    let l = LearnedAddrs::new();
    let proxy_view = l.clone();
    let t0 = Instant::now();
    let ip: IpAddr = "140.82.112.5".parse().unwrap();
    let v6: IpAddr = "2606:4700::1111".parse().unwrap();
    l.learn("api.github.com", &[ip, v6], t0 + Duration::from_secs(10));
    let cases: &[(&str, IpAddr, u64, bool)] = &[
        ("api.github.com", ip, 0, true),
        ("API.GitHub.com.", ip, 9, true),
        ("api.github.com", v6, 5, true),
        (
            "api.github.com",
            "::ffff:140.82.112.5".parse().unwrap(),
            0,
            true,
        ),
        ("api.github.com", ip, 10, false),
        ("api.github.com", "140.82.112.6".parse().unwrap(), 0, false),
        ("github.com", ip, 0, false),
        ("not a name", ip, 0, false),
    ];
    for (host, ip, after, want) in cases {
        let now = t0 + Duration::from_secs(*after);
        assert_eq!(
            proxy_view.is_learned_at(host, *ip, now),
            *want,
            "{host} {ip} +{after}s"
        );
    }
    // A later answer extends the expiry.
    l.learn("api.github.com", &[ip], t0 + Duration::from_secs(100));
    assert!(proxy_view.is_learned_at("api.github.com", ip, t0 + Duration::from_secs(50)));
    assert!(!proxy_view.is_learned_at("api.github.com", v6, t0 + Duration::from_secs(50)));
}
