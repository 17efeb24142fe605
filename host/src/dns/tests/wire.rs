//! The hand-written query parser against hickory-built and hand-made bytes.

use hickory_proto::op::{Edns, Message, Query as DnsQuery};
use hickory_proto::rr::{Name, RData, Record, RecordType as T};

use super::support::query;
use crate::dns::wire::{answer_ttl_offsets, parse, skip_name, Reject};

#[test]
fn parses_what_hickory_builds() {
    let cases: &[(&str, T, bool)] = &[
        ("www.example.com.", T::A, false),
        ("WwW.ExAmPlE.CoM.", T::AAAA, true),
        ("_svc._tcp.example.com.", T::SVCB, true),
        (".", T::A, false),
    ];
    for (name, t, edns) in cases {
        let wire = query(1, name, *t, *edns);
        let q = parse(&wire).unwrap();
        assert_eq!(q.name, *name);
        assert_eq!(q.rtype, *t);
        assert_eq!(q.class, 1);
        assert_eq!(q.edns, *edns, "{name}");
        assert_eq!(q.question_end, q.qname_end + 4);
    }
}

#[test]
fn rejects_and_oddities_table() {
    let ok = query(1, "a.example.com.", T::A, false);
    let mut compressed_qname = ok[..12].to_vec();
    compressed_qname.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let mut long_label = ok[..12].to_vec();
    long_label.extend_from_slice(&[64]);
    long_label.extend_from_slice(&[b'a'; 64]);
    long_label.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut too_long = ok[..12].to_vec();
    for _ in 0..5 {
        too_long.push(60);
        too_long.extend_from_slice(&[b'a'; 60]);
    }
    too_long.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut bad_ar = ok.clone();
    bad_ar[11] = 1; // claims an additional record that is not there
    let cases: Vec<(&str, Vec<u8>, Reject)> = vec![
        ("empty", vec![], Reject::FormErr),
        ("truncated header", ok[..11].to_vec(), Reject::FormErr),
        (
            "truncated question",
            ok[..ok.len() - 1].to_vec(),
            Reject::FormErr,
        ),
        ("compressed qname", compressed_qname, Reject::FormErr),
        ("64-byte label", long_label, Reject::FormErr),
        ("name over 255", too_long, Reject::FormErr),
        ("missing additional", bad_ar, Reject::FormErr),
    ];
    for (what, wire, want) in cases {
        assert_eq!(parse(&wire).err(), Some(want), "{what}");
    }
    // Odd bytes in a label become '?', so the name never passes the policy.
    let mut odd = ok[..12].to_vec();
    odd.extend_from_slice(&[3, b'a', b'.', 0xc3, 3, b'c', b'o', b'm', 0, 0, 1, 0, 1]);
    assert_eq!(parse(&odd).unwrap().name, "a??.com.");
}

#[test]
fn opt_counts_only_in_the_additional_section() {
    // An OPT-typed record in the answer section is not EDNS.
    let mut m = Message::new();
    m.add_query(DnsQuery::query(
        Name::from_ascii("a.example.com.").unwrap(),
        T::A,
    ));
    m.add_answer(Record::from_rdata(
        Name::from_ascii("a.example.com.").unwrap(),
        60,
        RData::A(std::net::Ipv4Addr::new(1, 2, 3, 4).into()),
    ));
    let wire = m.to_vec().unwrap();
    assert!(!parse(&wire).unwrap().edns);
    m.set_edns(Edns::new());
    assert!(parse(&m.to_vec().unwrap()).unwrap().edns);
}

#[test]
fn name_skipping_and_ttl_offsets() {
    assert_eq!(skip_name(&[0], 0), Some(1));
    assert_eq!(skip_name(&[1, b'a', 0], 0), Some(3));
    assert_eq!(skip_name(&[0xc0, 0x0c], 0), Some(2));
    assert_eq!(skip_name(&[0xc0], 0), None);
    assert_eq!(skip_name(&[0x40, 0], 0), None);
    assert_eq!(skip_name(&[5, b'a'], 0), None);
    let mut m = Message::new();
    let n = Name::from_ascii("a.example.com.").unwrap();
    m.add_query(DnsQuery::query(n.clone(), T::A));
    for ttl in [10, 20] {
        m.add_answer(Record::from_rdata(
            n.clone(),
            ttl,
            RData::A(std::net::Ipv4Addr::new(1, 2, 3, 4).into()),
        ));
    }
    let wire = m.to_vec().unwrap();
    let offs = answer_ttl_offsets(&wire).unwrap();
    let ttls: Vec<u32> = offs
        .iter()
        .map(|o| u32::from_be_bytes(wire[*o..*o + 4].try_into().unwrap()))
        .collect();
    assert_eq!(ttls, vec![10, 20]);
}

#[test]
fn names_over_255_wire_bytes_are_formerr() {
    // Found by the `dns_host_query` fuzz target: a 256-byte name was
    // accepted, and the refusal echoing it did not parse.
    let with_name = |labels: &[usize]| {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for &n in labels {
            q.push(u8::try_from(n).unwrap());
            q.extend(std::iter::repeat_n(b'a', n));
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    };
    let at_limit = with_name(&[63, 63, 63, 61]); // 255 bytes with the root
    let q = parse(&at_limit).unwrap();
    assert_eq!(q.question_end, at_limit.len());
    assert!(Message::from_vec(&at_limit).is_ok(), "hickory agrees");
    let over = with_name(&[63, 63, 63, 62]); // 256
    assert!(Message::from_vec(&over).is_err(), "hickory agrees");
    assert_eq!(parse(&over).unwrap_err(), Reject::FormErr);
}
