//! Byte-level work on DNS messages: parsing a query, answering locally by
//! copying the client's header and question, and patching a cached answer
//! template (id, flags, question case, TTLs, OPT) without re-encoding.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};

/// Length of the DNS header.
pub const HEADER_LEN: usize = 12;

/// The OPT record we add to answers of EDNS queries: root name, type 41,
/// UDP payload 4096, no extended rcode, version 0, no flags, no options.
pub const OPT_RR: [u8; 11] = [0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0];

/// A query that parsed and has exactly one question.
#[derive(Debug)]
pub struct Query<'a> {
    /// The whole query as received.
    pub wire: &'a [u8],
    /// Offset just past the question name.
    pub qname_end: usize,
    /// Offset just past the question.
    pub question_end: usize,
    /// The question name, case as sent.
    pub name: Name,
    /// The question type.
    pub rtype: RecordType,
    /// The question class.
    pub class: DNSClass,
    /// Did the query carry an OPT record?
    pub edns: bool,
}

/// Why a query gets no upstream answer at all.
#[derive(Debug, PartialEq, Eq)]
pub enum Reject {
    /// Unparseable, not a query, or not exactly one question.
    FormErr,
    /// Opcode other than QUERY.
    NotImp,
}

/// Parse `wire` as a single-question query.
pub fn parse(wire: &[u8]) -> Result<Query<'_>, Reject> {
    if wire.len() < HEADER_LEN {
        return Err(Reject::FormErr);
    }
    if wire[2] & 0x80 != 0 {
        // A response, not a query.
        return Err(Reject::FormErr);
    }
    if (wire[2] >> 3) & 0x0f != 0 {
        return Err(Reject::NotImp);
    }
    let msg = Message::from_vec(wire).map_err(|_| Reject::FormErr)?;
    if msg.message_type() != MessageType::Query || msg.op_code() != OpCode::Query {
        return Err(Reject::FormErr);
    }
    let [q] = msg.queries() else {
        return Err(Reject::FormErr);
    };
    let qname_end = skip_name(wire, HEADER_LEN).ok_or(Reject::FormErr)?;
    let question_end = qname_end + 4;
    if question_end > wire.len() {
        return Err(Reject::FormErr);
    }
    Ok(Query {
        wire,
        qname_end,
        question_end,
        name: q.name().clone(),
        rtype: q.query_type(),
        class: q.query_class(),
        edns: msg.extensions().is_some(),
    })
}

/// Offset just past the (possibly compressed) name at `pos`.
pub fn skip_name(buf: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *buf.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => pos += 1 + usize::from(len),
            0xc0 => return (pos + 2 <= buf.len()).then_some(pos + 2),
            _ => return None,
        }
    }
}

/// Response flags for a query whose flag byte was `qflags`: QR set, opcode
/// and RD echoed; RA set and `rcode` in the second byte.
fn flags(qflags: u8, rcode: ResponseCode) -> [u8; 2] {
    [
        0x80 | (qflags & 0x78) | (qflags & 0x01),
        0x80 | (u16::from(rcode) & 0x0f) as u8,
    ]
}

/// An answer with no records: the client's header and question (case and
/// all) with `rcode`, plus an OPT record if the query had one.
pub fn local_answer(q: &Query<'_>, rcode: ResponseCode) -> Vec<u8> {
    let mut out = Vec::with_capacity(q.question_end + OPT_RR.len());
    out.extend_from_slice(&q.wire[..q.question_end]);
    let [f0, f1] = flags(q.wire[2], rcode);
    out[2] = f0;
    out[3] = f1;
    out[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(q.edns)]);
    if q.edns {
        out.extend_from_slice(&OPT_RR);
    }
    out
}

/// An answer to something that did not parse: the id (0 if even the header
/// is unreadable) and `rcode`, no sections.
pub fn bare_answer(wire: &[u8], rcode: ResponseCode) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    if wire.len() >= HEADER_LEN {
        out[..2].copy_from_slice(&wire[..2]);
        let [f0, f1] = flags(wire[2], rcode);
        out[2] = f0;
        out[3] = f1;
    } else {
        let [f0, f1] = flags(0, rcode);
        out[2] = f0;
        out[3] = f1;
    }
    out
}

/// Offsets of the TTL field of every record in the answer section of the
/// encoded response `buf` (header, one question, answers).
pub fn answer_ttl_offsets(buf: &[u8]) -> Option<Vec<usize>> {
    let ancount = usize::from(u16::from_be_bytes([*buf.get(6)?, *buf.get(7)?]));
    let mut pos = skip_name(buf, HEADER_LEN)? + 4;
    let mut out = Vec::with_capacity(ancount);
    for _ in 0..ancount {
        pos = skip_name(buf, pos)?;
        let rdlen = usize::from(u16::from_be_bytes([*buf.get(pos + 8)?, *buf.get(pos + 9)?]));
        out.push(pos + 4);
        pos += 10 + rdlen;
        if pos > buf.len() {
            return None;
        }
    }
    Some(out)
}
