//! `listener::finish`: the reply a client gets for the host's answer.
//! Cases found by the `dns_stub_answer` fuzz target are kept here.

use crate::dns::listener::{finish, Outcome};
use crate::dns::wire;
use crate::dns::QueryError;

/// A query header for `a.test` A, id 0x3d00, RD set.
fn query() -> Vec<u8> {
    let mut q = vec![0x3d, 0x00, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(b"\x01a\x04test\x00\x00\x01\x00\x01");
    q
}

#[test]
fn a_host_answer_with_qr_clear_becomes_servfail() {
    // Fuzz crash c43146ec: the host's 12 bytes had QR clear; the stub
    // passed them on, and the client would have dropped them and waited.
    let host = vec![
        0x13, 0x81, 0x27, 0x02, 0xab, 0x00, 0x3d, 0x00, 0x13, 0x81, 0, 0,
    ];
    for udp in [false, true] {
        let (reply, outcome) = finish(&query(), udp, Ok(host.clone()));
        assert_eq!(outcome, Outcome::NotAResponse);
        assert_eq!(wire::id(&reply), 0x3d00);
        assert_eq!(reply[2] & 0x80, 0x80, "QR");
        assert_eq!(wire::rcode(&reply), 2, "SERVFAIL");
    }
}

#[test]
fn outcomes_table() {
    let mut answer = query();
    answer[2] |= 0x80;
    let cases: Vec<(Result<Vec<u8>, QueryError>, Outcome)> = vec![
        (Ok(answer.clone()), Outcome::Answered { truncated: false }),
        (Ok(vec![0x80; 5]), Outcome::Runt(5)),
        (
            Err(QueryError::ConnectionLost),
            Outcome::Failed(QueryError::ConnectionLost),
        ),
    ];
    for (result, want) in cases {
        let (reply, outcome) = finish(&query(), true, result);
        assert_eq!(outcome, want);
        assert_eq!(wire::id(&reply), 0x3d00);
    }
    // An answer under another id goes out under the client's.
    let mut other = answer.clone();
    other[..2].copy_from_slice(&[0xff, 0xff]);
    let (reply, _) = finish(&query(), false, Ok(other));
    assert_eq!(reply, answer);
}
