//! The `dns_stub_answer` checks: the guest stub's reply to a client once
//! the host answered ([`bottle_guest::dns::listener::finish`]).
//!
//! Input layout: byte 0 holds flags (bit 0: the client used UDP; bit 1:
//! build a well-formed query instead of taking raw bytes; bit 2: the
//! host's bytes are a postcard `DnsResponse`, matched to the pending query
//! by request id 1 as the host client does; bit 3: the host did not answer
//! at all). Built query: bytes 1–2 are its EDNS size (0: no EDNS), 3–4
//! its id. Raw query: byte 1 is its length. The rest is what the host
//! sent.

use bottle_guest::dns::listener::{finish, Outcome};
use bottle_guest::dns::wire;
use bottle_guest::dns::QueryError;
use bottle_shared::message::{decode, DnsResponse};
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};

/// The request id the fuzzed query was sent under.
const PENDING_ID: u32 = 1;

/// Run one input.
pub fn check_stub_answer(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let udp = flags & 1 != 0;
    let (query, host) = if flags & 2 != 0 {
        let Some((head, host)) = split(rest, 4) else {
            return;
        };
        let edns = u16::from_be_bytes([head[0], head[1]]);
        let id = u16::from_be_bytes([head[2], head[3]]);
        (built_query(id, edns), host)
    } else {
        let Some((&len, rest)) = rest.split_first() else {
            return;
        };
        let Some((q, host)) = split(rest, usize::from(len)) else {
            return;
        };
        (q.to_vec(), host)
    };
    // The listener only forwards packets classified as queries.
    if wire::classify(&query) != wire::Verdict::Query {
        return;
    }
    let result = if flags & 8 != 0 {
        Err(QueryError::ConnectionLost)
    } else if flags & 4 != 0 {
        // The host client delivers an answer only to the id it waits on;
        // anything else leaves the query to time out.
        match decode::<DnsResponse>(host) {
            Ok(DnsResponse::Answer { id, wire }) if id == PENDING_ID => Ok(wire),
            _ => Err(QueryError::Timeout(std::time::Duration::from_secs(3))),
        }
    } else {
        Ok(host.to_vec())
    };
    let sent = result.as_ref().ok().cloned();
    let (reply, outcome) = finish(&query, udp, result);

    assert!(
        reply.len() >= wire::HEADER_LEN,
        "reply shorter than a header"
    );
    assert_eq!(wire::id(&reply), wire::id(&query), "reply under another id");
    assert_eq!(reply[2] & 0x80, 0x80, "reply without QR");
    if udp {
        let limit = wire::udp_limit(&query);
        assert!(
            reply.len() <= limit,
            "{} bytes over the limit {limit}",
            reply.len()
        );
    }
    match outcome {
        Outcome::Answered { truncated } => {
            let mut ans = sent.expect("answered without an answer");
            wire::set_id(&mut ans, wire::id(&query));
            if truncated {
                assert!(udp, "TCP answers are never truncated");
                assert_eq!(reply[2] & 0x02, 0x02, "truncated without TC");
                assert!(
                    ans.len() > wire::udp_limit(&query),
                    "a fitting answer was cut"
                );
            } else {
                assert_eq!(reply, ans, "a fitting answer was changed");
            }
        }
        Outcome::Runt(_) | Outcome::NotAResponse | Outcome::Failed(_) => {
            assert_eq!(wire::rcode(&reply), 2, "no SERVFAIL for a failed query");
        }
    }
}

fn split(b: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (b.len() >= n).then(|| b.split_at(n))
}

fn built_query(id: u16, edns: u16) -> Vec<u8> {
    let mut m = Message::new();
    let name = Name::from_ascii("a.test.").expect("a valid name");
    m.set_id(id)
        .set_recursion_desired(true)
        .add_query(Query::query(name, RecordType::A));
    if edns != 0 {
        let mut e = Edns::new();
        e.set_max_payload(edns);
        m.set_edns(e);
    }
    m.to_vec().expect("a simple query encodes")
}
