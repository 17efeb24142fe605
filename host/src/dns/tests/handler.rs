//! The handler's answers: FORMERR, NOTIMP, REFUSED, NXDOMAIN, SERVFAIL,
//! case and id preservation, EDNS, the rebinding floor, and no panics on
//! arbitrary bytes.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode as R};
use hickory_proto::rr::{Name, RecordType as T};
use proptest::prelude::*;

use super::support::{addrs, answer_ips, handler, manifest, parse, query, rt, FakeUpstream};

#[test]
fn local_verdicts_table() {
    let up = FakeUpstream::with(vec![(
        "www.example.com",
        T::A,
        addrs("www.example.com", 300, &["93.184.216.34"]),
    )]);
    let h = handler(&manifest(""), up.clone());
    let cases: &[(&str, T, R)] = &[
        ("www.example.com.", T::A, R::NoError),
        ("evil.net.", T::A, R::NXDomain),
        ("example.com.evil.net.", T::A, R::NXDomain),
        ("badexample.com.", T::A, R::NXDomain),
        ("www.example.com.", T::TXT, R::Refused),
        ("www.example.com.", T::NULL, R::Refused),
        ("www.example.com.", T::MX, R::Refused),
        ("www.example.com.", T::ANY, R::Refused),
        ("www.example.com.", T::AXFR, R::Refused),
        (
            "6a3f9c8e1d2b4a5f6e7d8c9b0a1f2e3d.x.example.com.",
            T::A,
            R::NXDomain,
        ),
        (
            "mfrggzdfmztwq2lknnwg23tpobyxe43u.example.com.",
            T::A,
            R::NXDomain,
        ),
    ];
    rt().block_on(async {
        for (i, (name, t, want)) in cases.iter().enumerate() {
            let id = 1000 + i as u16;
            let ans = parse(&h.handle(&query(id, name, *t, false)).await);
            assert_eq!(ans.response_code(), *want, "{name} {t}");
            assert_eq!(ans.id(), id);
            assert_eq!(ans.message_type(), MessageType::Response);
            assert!(ans.recursion_available());
            assert!(ans.recursion_desired());
            assert_eq!(ans.queries().len(), 1);
            assert_eq!(ans.queries()[0].query_type(), *t);
        }
    });
    // Only the allowed query went upstream.
    assert_eq!(up.calls(), 1);
}

#[test]
fn garbage_and_malformed_queries() {
    let h = handler(&manifest(""), FakeUpstream::with(vec![]));
    rt().block_on(async {
        // Shorter than a header: FORMERR with id 0.
        let a = h.handle(&[0x12]).await;
        assert_eq!(a.len(), 12);
        let m = parse(&a);
        assert_eq!((m.id(), m.response_code()), (0, R::FormErr));
        // Header only, bogus counts: FORMERR with the id.
        let a = parse(&h.handle(&[0xab, 0xcd, 1, 0, 0, 5, 0, 0, 0, 0, 0, 0]).await);
        assert_eq!((a.id(), a.response_code()), (0xabcd, R::FormErr));
        // Zero questions.
        let a = parse(&h.handle(&[0, 7, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]).await);
        assert_eq!((a.id(), a.response_code()), (7, R::FormErr));
        // Two questions.
        let mut m = Message::new();
        m.set_id(9).set_op_code(OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii("a.example.com.").unwrap(),
            T::A,
        ));
        m.add_query(Query::query(
            Name::from_ascii("b.example.com.").unwrap(),
            T::A,
        ));
        let a = parse(&h.handle(&m.to_vec().unwrap()).await);
        assert_eq!((a.id(), a.response_code()), (9, R::FormErr));
        // A response instead of a query.
        let mut q = query(11, "www.example.com.", T::A, false);
        q[2] |= 0x80;
        let a = parse(&h.handle(&q).await);
        assert_eq!((a.id(), a.response_code()), (11, R::FormErr));
        // Truncated question.
        let q = query(12, "www.example.com.", T::A, false);
        let a = parse(&h.handle(&q[..q.len() - 3]).await);
        assert_eq!((a.id(), a.response_code()), (12, R::FormErr));
    });
}

#[test]
fn non_query_opcodes_get_notimp() {
    let h = handler(&manifest(""), FakeUpstream::with(vec![]));
    rt().block_on(async {
        for (op, code) in [
            (OpCode::Status, 2u8),
            (OpCode::Notify, 4),
            (OpCode::Update, 5),
        ] {
            let mut q = query(21, "www.example.com.", T::A, false);
            q[2] = (q[2] & !0x78) | (code << 3);
            let a = parse(&h.handle(&q).await);
            assert_eq!(a.response_code(), R::NotImp, "{op:?}");
            assert_eq!(a.op_code(), op);
            assert_eq!(a.id(), 21);
        }
    });
}

#[test]
fn case_id_and_edns_are_preserved() {
    let up = FakeUpstream::with(vec![(
        "www.example.com",
        T::A,
        addrs("www.example.com", 300, &["93.184.216.34"]),
    )]);
    let h = handler(&manifest(""), up);
    rt().block_on(async {
        for name in ["WwW.ExAmPlE.cOm.", "www.example.com.", "WWW.EXAMPLE.COM."] {
            for edns in [false, true] {
                let q = query(0x4242, name, T::A, edns);
                let a = h.handle(&q).await;
                let m = parse(&a);
                assert_eq!(m.id(), 0x4242);
                assert_eq!(m.queries()[0].name().to_ascii(), name, "case of {name}");
                assert_eq!(
                    m.answers()[0].name().to_ascii(),
                    name,
                    "owner case of {name}"
                );
                assert_eq!(
                    answer_ips(&m),
                    vec!["93.184.216.34".parse::<IpAddr>().unwrap()]
                );
                assert_eq!(m.extensions().is_some(), edns, "OPT for edns={edns}");
            }
        }
        // Local answers keep case and EDNS too.
        let a = parse(&h.handle(&query(5, "EVIL.net.", T::A, true)).await);
        assert_eq!(a.queries()[0].name().to_ascii(), "EVIL.net.");
        assert!(a.extensions().is_some());
        assert_eq!(a.response_code(), R::NXDomain);
    });
}

#[test]
fn private_answers_are_dropped_and_learned_addresses_recorded() {
    let entries = vec![
        (
            "mixed.example.com",
            T::A,
            addrs(
                "mixed.example.com",
                300,
                &["127.0.0.1", "140.82.112.5", "169.254.169.254"],
            ),
        ),
        (
            "mixed.example.com",
            T::AAAA,
            addrs(
                "mixed.example.com",
                300,
                &["::ffff:10.0.0.1", "fd00::1", "2606:4700::1111"],
            ),
        ),
        (
            "lan.example.com",
            T::A,
            addrs("lan.example.com", 300, &["192.168.1.10"]),
        ),
    ];
    let h = handler(&manifest(""), FakeUpstream::with(entries.clone()));
    let learned = h.learned();
    rt().block_on(async {
        let a = parse(&h.handle(&query(1, "mixed.example.com.", T::A, false)).await);
        assert_eq!(
            answer_ips(&a),
            vec!["140.82.112.5".parse::<IpAddr>().unwrap()]
        );
        let a = parse(
            &h.handle(&query(2, "mixed.example.com.", T::AAAA, false))
                .await,
        );
        assert_eq!(
            answer_ips(&a),
            vec!["2606:4700::1111".parse::<IpAddr>().unwrap()]
        );
        let a = parse(&h.handle(&query(3, "lan.example.com.", T::A, false)).await);
        assert_eq!(a.response_code(), R::NoError);
        assert!(a.answers().is_empty());
    });
    let cases: &[(&str, &str, bool)] = &[
        ("mixed.example.com", "140.82.112.5", true),
        ("MIXED.example.com.", "140.82.112.5", true),
        ("mixed.example.com", "::ffff:140.82.112.5", true),
        ("mixed.example.com", "2606:4700::1111", true),
        ("mixed.example.com", "127.0.0.1", false),
        ("other.example.com", "140.82.112.5", false),
        ("lan.example.com", "192.168.1.10", false),
    ];
    for (host, ip, want) in cases {
        assert_eq!(
            learned.is_learned(host, ip.parse().unwrap()),
            *want,
            "{host} {ip}"
        );
    }
    // With allow_private_answers, they are kept.
    let m = manifest("allow_private_answers = true\n");
    let h = handler(&m, FakeUpstream::with(entries));
    rt().block_on(async {
        let a = parse(&h.handle(&query(1, "lan.example.com.", T::A, false)).await);
        assert_eq!(
            answer_ips(&a),
            vec!["192.168.1.10".parse::<IpAddr>().unwrap()]
        );
    });
}

#[test]
fn upstream_failure_is_servfail_and_not_cached() {
    let up = FakeUpstream::with(vec![("www.example.com", T::A, Err("boom".into()))]);
    let h = handler(&manifest(""), up.clone());
    rt().block_on(async {
        for id in 1..=2 {
            let a = parse(&h.handle(&query(id, "www.example.com.", T::A, true)).await);
            assert_eq!((a.id(), a.response_code()), (id, R::ServFail));
        }
    });
    assert_eq!(up.calls(), 2);
}

#[test]
fn audit_log_has_one_json_line_per_decision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let up = FakeUpstream::with(vec![(
        "www.example.com",
        T::A,
        addrs("www.example.com", 300, &["93.184.216.34"]),
    )]);
    let h = crate::dns::Handler::new(
        &manifest(""),
        up,
        crate::dns::Audit::to_file(&path).unwrap(),
    );
    rt().block_on(async {
        h.handle(&query(1, "www.example.com.", T::A, false)).await;
        h.handle(&query(2, "www.example.com.", T::A, false)).await;
        h.handle(&query(3, "evil.net.", T::A, false)).await;
        h.handle(&query(4, "www.example.com.", T::TXT, false)).await;
    });
    h.flush();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    let want = [
        ("www.example.com.", "answer", None, false),
        ("www.example.com.", "answer", None, true),
        ("evil.net.", "nxdomain", Some("not-allowlisted"), false),
        ("www.example.com.", "refused", Some("record-type"), false),
    ];
    for (l, (name, verdict, rule, cached)) in lines.iter().zip(want) {
        assert_eq!(l["name"], name);
        assert_eq!(l["verdict"], verdict);
        assert_eq!(l["rule"].as_str(), rule);
        assert_eq!(l["cached"], cached);
        assert!(l["latency_us"].is_u64());
        let t = l["time"].as_str().unwrap();
        assert!(
            t.len() == 27 && t.ends_with('Z') && &t[10..11] == "T",
            "{t}"
        );
    }
    assert_eq!(lines[0]["answers"][0], "93.184.216.34");
    assert_eq!(lines[0]["type"], "A");
}

#[test]
fn audit_lines_reach_the_file_within_the_flush_interval_and_on_drop() {
    use crate::dns::audit::FLUSH_INTERVAL;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let lines = || {
        std::fs::read_to_string(&path)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let h = crate::dns::Handler::new(
        &manifest(""),
        FakeUpstream::with(vec![]),
        crate::dns::Audit::to_file(&path).unwrap(),
    );
    rt().block_on(h.handle(&query(1, "evil.net.", T::A, false)));
    // Buffered, not lost: the flusher writes it without being asked.
    let start = std::time::Instant::now();
    while lines() < 1 {
        assert!(
            start.elapsed() < FLUSH_INTERVAL * 20,
            "no audit line after {:?}",
            start.elapsed()
        );
        std::thread::sleep(FLUSH_INTERVAL / 10);
    }
    // Lines still buffered when the handler goes away are written.
    for id in 2..=100 {
        rt().block_on(h.handle(&query(id, "evil.net.", T::A, false)));
    }
    drop(h);
    assert_eq!(lines(), 100);
}

#[test]
fn audit_names_are_escaped_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let audit = crate::dns::Audit::to_file(&path).unwrap();
    let name = "a\"b\\c\u{1}.";
    let ok = audit.record(&crate::dns::audit::AuditRecord {
        name,
        rtype: None,
        verdict: "formerr",
        rule: Some("malformed"),
        answers: &["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
        cached: false,
        latency_us: 3,
    });
    assert!(ok);
    drop(audit);
    let text = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(v["name"], name);
    assert_eq!(v["type"], "");
    assert_eq!(v["answers"][1], "2001:db8::1");
    assert_eq!(v["latency_us"], 3);
}

#[test]
fn rfc3339_formatting() {
    use std::time::{Duration, SystemTime};
    let cases = [
        (0u64, 0u32, "1970-01-01T00:00:00.000000Z"),
        (951_782_400, 0, "2000-02-29T00:00:00.000000Z"),
        (1_795_447_247, 123_456_000, "2026-11-23T15:20:47.123456Z"),
    ];
    for (secs, nanos, want) in cases {
        let t = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
        assert_eq!(crate::dns::audit::rfc3339(t), want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let h = handler(&manifest(""), FakeUpstream::with(vec![]));
        let out = rt().block_on(h.handle(&bytes));
        prop_assert!(out.len() >= 12);
        prop_assert!(out[2] & 0x80 != 0, "QR set");
        if bytes.len() >= 12 {
            prop_assert_eq!(&out[..2], &bytes[..2]);
        }
    }

    #[test]
    fn mutated_queries_never_panic(pos in 0usize..40, val in any::<u8>()) {
        let h = handler(&manifest(""), FakeUpstream::with(vec![]));
        let mut q = query(77, "www.example.com.", T::A, true);
        let p = pos % q.len();
        q[p] = val;
        let out = rt().block_on(h.handle(&q));
        prop_assert!(out.len() >= 12);
    }
}

#[test]
fn non_in_class_is_refused() {
    let up = FakeUpstream::with(vec![]);
    let h = handler(&manifest(""), up.clone());
    let mut q = query(31, "www.example.com.", T::A, false);
    let n = q.len();
    q[n - 1] = 3; // CHAOS
    let a = parse(&rt().block_on(h.handle(&q)));
    assert_eq!((a.id(), a.response_code()), (31, R::Refused));
    assert_eq!(up.calls(), 0);
}

#[test]
fn an_unwritable_audit_log_fails_closed() {
    // /dev/full takes the open but refuses every write (ENOSPC).
    let up = FakeUpstream::with(vec![(
        "www.example.com",
        T::A,
        addrs("www.example.com", 300, &["93.184.216.34"]),
    )]);
    let audit = crate::dns::Audit::to_file(std::path::Path::new("/dev/full")).unwrap();
    let h = crate::dns::Handler::new(&manifest(""), up.clone(), audit);
    rt().block_on(async {
        let cases = [
            (1, "www.example.com.", T::A),
            (2, "www.example.com.", T::A),
            (3, "evil.net.", T::A),
            (4, "www.example.com.", T::TXT),
        ];
        for (id, name, rtype) in cases {
            let a = parse(&h.handle(&query(id, name, rtype, false)).await);
            assert_eq!((a.id(), a.response_code()), (id, R::ServFail), "{name}");
            assert!(a.answers().is_empty(), "{name}: an unaudited answer");
        }
        // Malformed: SERVFAIL too, under its id.
        let a = h.handle(&[0xab, 0xcd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).await;
        assert_eq!((a[..2].to_vec(), a[3] & 0x0f), (vec![0xab, 0xcd], 2));
    });
    // Only the first query reached the upstream: after its line failed,
    // nothing more is resolved.
    assert_eq!(up.calls(), 1);
}
