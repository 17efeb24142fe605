//! The little DNS wire handling the stub does itself: header checks, the
//! client's UDP size limit, truncation, and SERVFAIL built from a query.
//!
//! Policy lives on the host; the guest only parses what it needs to answer
//! its own clients correctly.

use hickory_proto::op::{Message, MessageType, ResponseCode};

/// Size of a DNS header; anything shorter is dropped.
pub const HEADER_LEN: usize = 12;
/// UDP payload limit without EDNS (RFC 1035).
pub const MIN_UDP: usize = 512;
/// Largest EDNS payload size the stub honours.
pub const MAX_UDP: usize = 4096;

/// What the stub thinks of a packet from a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A query worth forwarding.
    Query,
    /// Shorter than a header: dropped without an answer.
    TooShort,
    /// The QR bit is set: a response, not a query; dropped.
    NotAQuery,
}

/// Check a client's packet before forwarding it.
pub fn classify(packet: &[u8]) -> Verdict {
    if packet.len() < HEADER_LEN {
        Verdict::TooShort
    } else if packet[2] & 0x80 != 0 {
        Verdict::NotAQuery
    } else {
        Verdict::Query
    }
}

/// The message id of a packet at least [`HEADER_LEN`] long.
pub fn id(packet: &[u8]) -> u16 {
    u16::from_be_bytes([packet[0], packet[1]])
}

/// The 4-bit response code of a packet at least [`HEADER_LEN`] long.
pub fn rcode(packet: &[u8]) -> u8 {
    packet[3] & 0x0f
}

/// The largest UDP answer the client of `query` accepts: 512, or its EDNS
/// payload size clamped to 512..=4096. A query that does not parse gets 512.
///
/// This is on every UDP query's path, so it walks the wire format to the
/// OPT record instead of decoding the whole message.
pub fn udp_limit(query: &[u8]) -> usize {
    edns_payload(query).map_or(MIN_UDP, |p| usize::from(p).clamp(MIN_UDP, MAX_UDP))
}

/// The payload size of the first OPT record in the additional section.
fn edns_payload(m: &[u8]) -> Option<u16> {
    let count = |at: usize| {
        Some(usize::from(u16::from_be_bytes([
            *m.get(at)?,
            *m.get(at + 1)?,
        ])))
    };
    let (qd, an, ns, ar) = (count(4)?, count(6)?, count(8)?, count(10)?);
    let mut at = HEADER_LEN;
    for _ in 0..qd {
        at = skip_name(m, at)? + 4;
    }
    for i in 0..an + ns + ar {
        at = skip_name(m, at)?;
        let rtype = count(at)?;
        let class = count(at + 2)?;
        let rdlen = count(at + 8)?;
        if i >= an + ns && rtype == OPT_TYPE {
            return u16::try_from(class).ok();
        }
        at += 10 + rdlen;
    }
    None
}

/// Record type of OPT.
const OPT_TYPE: usize = 41;

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(m: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *m.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return m.get(at + 1).map(|_| at + 2),
            l if l & 0xc0 == 0 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
}

/// Fit `answer` into `limit` bytes for a UDP client: unchanged if it fits,
/// else a truncated message (TC set, question and OPT only, same id) so the
/// client retries over TCP.
pub fn fit_udp(answer: Vec<u8>, limit: usize) -> (Vec<u8>, bool) {
    if answer.len() <= limit {
        return (answer, false);
    }
    let truncated = Message::from_vec(&answer)
        .ok()
        .and_then(|m| m.truncate().to_vec().ok())
        .filter(|t| t.len() <= limit)
        .unwrap_or_else(|| bare_header(&answer, |flags| flags | 0x02, None));
    (truncated, true)
}

/// A SERVFAIL answer to `query`, echoing its id, opcode, RD bit and
/// question when it parses; otherwise just the patched header.
pub fn servfail(query: &[u8]) -> Vec<u8> {
    if let Ok(q) = Message::from_vec(query) {
        let mut m = Message::error_msg(q.id(), q.op_code(), ResponseCode::ServFail);
        m.set_message_type(MessageType::Response)
            .set_recursion_desired(q.recursion_desired())
            .set_recursion_available(true)
            .set_checking_disabled(q.checking_disabled())
            .add_queries(q.queries().iter().cloned());
        if let Ok(v) = m.to_vec() {
            return v;
        }
    }
    bare_header(query, |flags| flags | 0x80, Some(2))
}

/// The first 12 bytes of `packet` with every count zeroed, the flags byte
/// (byte 2) passed through `flags`, and the rcode replaced when given.
fn bare_header(packet: &[u8], flags: impl Fn(u8) -> u8, rcode: Option<u8>) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_LEN];
    let n = packet.len().min(HEADER_LEN);
    h[..n].copy_from_slice(&packet[..n]);
    h[2] = flags(h[2]);
    if let Some(rc) = rcode {
        h[3] = (h[3] & 0xf0) | (rc & 0x0f);
    }
    h[4..].fill(0);
    h
}

/// Put `id` into the header of `packet` (at least [`HEADER_LEN`] long).
pub fn set_id(packet: &mut [u8], id: u16) {
    packet[..2].copy_from_slice(&id.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Query};
    use hickory_proto::rr::{rdata::A, Name, RData, Record, RecordType};
    use std::str::FromStr;

    fn query(id: u16, name: &str, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(id)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    fn answer(q: &[u8], n: usize) -> Vec<u8> {
        let q = Message::from_vec(q).unwrap();
        let mut m = Message::new();
        m.set_id(q.id())
            .set_message_type(MessageType::Response)
            .add_queries(q.queries().iter().cloned());
        let name = q.queries()[0].name().clone();
        for i in 0..n {
            let last = u8::try_from(i % 250).unwrap();
            m.add_answer(Record::from_rdata(
                name.clone(),
                60,
                RData::A(A::new(203, 0, 113, last)),
            ));
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn classify_table() {
        let q = query(1, "a.test.", None);
        let mut resp = q.clone();
        resp[2] |= 0x80;
        let cases: &[(&[u8], Verdict)] = &[
            (&[], Verdict::TooShort),
            (&[0; 11], Verdict::TooShort),
            (&q, Verdict::Query),
            (&resp, Verdict::NotAQuery),
        ];
        for (packet, want) in cases {
            assert_eq!(classify(packet), *want, "{packet:?}");
        }
    }

    #[test]
    fn udp_limit_table() {
        let cases: &[(Option<u16>, usize)] = &[
            (None, 512),
            (Some(100), 512),
            (Some(512), 512),
            (Some(1232), 1232),
            (Some(4096), 4096),
            (Some(65000), 4096),
        ];
        for (edns, want) in cases {
            assert_eq!(udp_limit(&query(7, "a.test.", *edns)), *want, "{edns:?}");
        }
        assert_eq!(udp_limit(&[0; 12][..]), 512, "header only, no question");
        assert_eq!(udp_limit(&[0xff; 40][..]), 512, "garbage");
        let mut cut = query(7, "a.test.", Some(1232));
        cut.truncate(cut.len() - 3);
        assert_eq!(udp_limit(&cut), 512, "OPT record cut short");
        // The same as hickory's full decode, for assorted queries.
        for (name, size) in [
            ("x.", 600u16),
            ("a.b.c.d.e.test.", 1400),
            ("xn--bcher-kva.test.", 3000),
        ] {
            let q = query(1, name, Some(size));
            let full = Message::from_vec(&q).unwrap();
            assert_eq!(
                udp_limit(&q),
                usize::from(full.extensions().as_ref().unwrap().max_payload())
            );
        }
    }

    #[test]
    fn truncation_table() {
        // (records in the answer, client limit, expect truncated)
        let cases: &[(usize, usize, bool)] = &[
            (1, 512, false),
            (20, 512, false),
            (40, 512, true),
            (40, 1232, false),
            (200, 1232, true),
            (200, 4096, false),
        ];
        for &(records, limit, want_tc) in cases {
            let q = query(0xbeef, "many.test.", None);
            let a = answer(&q, records);
            let (out, tc) = fit_udp(a.clone(), limit);
            assert_eq!(tc, want_tc, "{records} records, limit {limit}");
            assert!(out.len() <= limit, "{} > {limit}", out.len());
            let m = Message::from_vec(&out).unwrap();
            assert_eq!(m.id(), 0xbeef);
            assert_eq!(m.truncated(), want_tc);
            if want_tc {
                assert!(m.answers().is_empty());
                assert_eq!(m.queries().len(), 1, "question kept");
            } else {
                assert_eq!(out, a, "fitting answers pass through unchanged");
            }
        }
    }

    #[test]
    fn unparsable_oversize_answer_becomes_bare_tc_header() {
        let mut junk = vec![0xab; 1000];
        junk[2] = 0x80;
        let (out, tc) = fit_udp(junk, 512);
        assert!(tc);
        assert_eq!(out.len(), HEADER_LEN);
        assert_eq!(id(&out), 0xabab);
        assert_eq!(out[2] & 0x02, 0x02, "TC bit");
        assert!(out[4..].iter().all(|b| *b == 0), "counts zeroed");
    }

    #[test]
    fn servfail_echoes_the_question() {
        let q = query(0x1234, "x.test.", Some(1232));
        let sf = Message::from_vec(&servfail(&q)).unwrap();
        assert_eq!(sf.id(), 0x1234);
        assert_eq!(sf.message_type(), MessageType::Response);
        assert_eq!(sf.response_code(), ResponseCode::ServFail);
        assert!(sf.recursion_desired());
        assert_eq!(sf.queries()[0].name().to_string(), "x.test.");

        let raw = servfail(&[0x42, 0x43, 0x01, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(raw.len(), HEADER_LEN);
        assert_eq!(id(&raw), 0x4243);
        assert_eq!(raw[2] & 0x80, 0x80, "QR");
        assert_eq!(rcode(&raw), 2);
        assert_eq!(&raw[4..6], &[0, 0]);
    }
}
