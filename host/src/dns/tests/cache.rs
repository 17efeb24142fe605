//! Cache: TTLs clamped to the manifest's bounds, counted down on hits,
//! negative answers cached with the floor, entries expiring.

use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode as R;
use hickory_proto::rr::{Name, RecordType as T};

use super::support::{addrs, handler, manifest, parse, query, rt, FakeUpstream};
use crate::dns::cache::{clamp_ttl, Cache, CachedAnswer};
use crate::dns::wire;

#[test]
fn clamp_table() {
    let cases = [
        (0, 5, 3600, 5),
        (1, 5, 3600, 5),
        (300, 5, 3600, 300),
        (86_400, 5, 3600, 3600),
        (7, 10, 5, 10),
    ];
    for (ttl, min, max, want) in cases {
        assert_eq!(clamp_ttl(ttl, min, max), want, "{ttl} in {min}..={max}");
    }
}

#[test]
fn answers_carry_clamped_ttls_and_hits_skip_the_upstream() {
    let up = FakeUpstream::with(vec![
        (
            "short.example.com",
            T::A,
            addrs("short.example.com", 1, &["93.184.216.34"]),
        ),
        (
            "long.example.com",
            T::A,
            addrs("long.example.com", 999_999, &["93.184.216.35"]),
        ),
        (
            "mid.example.com",
            T::A,
            addrs("mid.example.com", 120, &["93.184.216.36"]),
        ),
    ]);
    let m = manifest("cache_min_ttl = 30\ncache_max_ttl = 600\n");
    let h = handler(&m, up.clone());
    let cases = [
        ("short.example.com.", 30),
        ("long.example.com.", 600),
        ("mid.example.com.", 120),
    ];
    rt().block_on(async {
        for (name, want) in cases {
            for round in 0..3 {
                let a = parse(&h.handle(&query(round, name, T::A, false)).await);
                let ttl = a.answers()[0].ttl();
                // A hit within the same second keeps the TTL (or one less).
                assert!(
                    ttl == want || ttl + 1 == want,
                    "{name}: ttl {ttl}, want {want}"
                );
            }
        }
    });
    assert_eq!(up.calls(), 3, "one upstream call per name");
}

#[test]
fn negative_answers_are_cached_with_the_floor() {
    let up = FakeUpstream::with(vec![]); // NXDOMAIN for everything, TTL 30
    let m = manifest("cache_min_ttl = 60\n");
    let h = handler(&m, up.clone());
    rt().block_on(async {
        for id in 0..3 {
            let a = parse(&h.handle(&query(id, "gone.example.com.", T::A, true)).await);
            assert_eq!(a.response_code(), R::NXDomain);
            assert_eq!(a.id(), id);
        }
    });
    assert_eq!(up.calls(), 1);
}

#[test]
fn entries_count_down_and_expire() {
    let name = Name::from_ascii("www.example.com.").unwrap();
    let records = addrs("www.example.com", 100, &["93.184.216.34", "93.184.216.35"])
        .unwrap()
        .records;
    let t0 = Instant::now();
    let a = CachedAnswer::build(&name, T::A, R::NoError, records, 0, (5, 3600), false, t0).unwrap();
    let cache = Cache::new();
    cache.insert("www.example.com", T::A, a.into(), t0);
    let q = query(3, "WWW.example.com.", T::A, false);
    let pq = wire::parse(&q).unwrap();
    let cases = [
        (0, Some(100)),
        (40, Some(60)),
        (99, Some(1)),
        (100, None),
        (500, None),
    ];
    for (after, want) in cases {
        let now = t0 + Duration::from_secs(after);
        let got = cache.get("www.example.com", T::A, now).map(|hit| {
            let m = parse(&hit.render(&pq, now));
            assert_eq!(m.answers().len(), 2);
            assert!(m.answers().iter().all(|r| r.ttl() == m.answers()[0].ttl()));
            m.answers()[0].ttl()
        });
        assert_eq!(got, want, "after {after}s");
    }
    assert!(cache.get("www.example.com", T::AAAA, t0).is_none());
    assert!(cache.get("other.example.com", T::A, t0).is_none());
}

#[test]
fn concurrent_misses_share_one_upstream_query() {
    let up = super::support::FakeUpstream {
        delay: Duration::from_millis(200),
        ..Default::default()
    };
    up.answers.lock().unwrap().insert(
        ("slow.example.com".into(), T::A),
        addrs("slow.example.com", 300, &["93.184.216.34"]),
    );
    let up = std::sync::Arc::new(up);
    let h = std::sync::Arc::new(handler(&manifest(""), up.clone()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0..20u16)
            .map(|id| {
                let h = std::sync::Arc::clone(&h);
                tokio::spawn(async move {
                    parse(&h.handle(&query(id, "slow.example.com.", T::A, false)).await)
                })
            })
            .collect();
        for (id, t) in tasks.into_iter().enumerate() {
            let m = t.await.unwrap();
            assert_eq!(m.id(), id as u16);
            assert_eq!(m.answers().len(), 1);
        }
    });
    assert_eq!(up.calls(), 1);
}
