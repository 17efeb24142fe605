//! Byte-level work on DNS messages: parsing a query, answering locally by
//! copying the client's header and question, and patching a cached answer
//! template (id, flags, question case, TTLs, OPT) without re-encoding.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// Length of the DNS header.
pub const HEADER_LEN: usize = 12;

/// The OPT record we add to answers of EDNS queries: root name, type 41,
/// UDP payload 4096, no extended rcode, version 0, no flags, no options.
pub const OPT_RR: [u8; 11] = [0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0];

/// Longest name on the wire, bytes (RFC 1035).
const MAX_WIRE_NAME: usize = 255;

/// Record type of the EDNS OPT pseudo-record.
const TYPE_OPT: u16 = 41;

/// A query that parsed and has exactly one question.
#[derive(Debug)]
pub struct Query<'a> {
    /// The whole query as received.
    pub wire: &'a [u8],
    /// Offset just past the question name.
    pub qname_end: usize,
    /// Offset just past the question.
    pub question_end: usize,
    /// The question name in presentation form, case as sent, with a
    /// trailing dot. Bytes other than letters, digits, `-` and `_` appear as
    /// `?`, so such names never pass the allowlist.
    pub name: String,
    /// The question type.
    pub rtype: RecordType,
    /// The question class (1 is IN).
    pub class: u16,
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

fn u16_at(buf: &[u8], pos: usize) -> Result<u16, Reject> {
    match buf.get(pos..pos + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(Reject::FormErr),
    }
}

/// Parse `wire` as a single-question query. Hand-written (no allocation
/// but the name): this runs for every query, cached or not.
pub fn parse(wire: &[u8]) -> Result<Query<'_>, Reject> {
    if wire.len() < HEADER_LEN || wire[2] & 0x80 != 0 {
        // Too short, or a response rather than a query.
        return Err(Reject::FormErr);
    }
    if (wire[2] >> 3) & 0x0f != 0 {
        return Err(Reject::NotImp);
    }
    if u16_at(wire, 4)? != 1 {
        return Err(Reject::FormErr);
    }
    let (name, qname_end) = read_qname(wire)?;
    let rtype = RecordType::from(u16_at(wire, qname_end)?);
    let class = u16_at(wire, qname_end + 2)?;
    let question_end = qname_end + 4;
    // Walk the other sections, looking for OPT in the additional one.
    let an_ns = usize::from(u16_at(wire, 6)?) + usize::from(u16_at(wire, 8)?);
    let ar = usize::from(u16_at(wire, 10)?);
    let mut pos = question_end;
    let mut edns = false;
    for i in 0..an_ns + ar {
        pos = skip_name(wire, pos).ok_or(Reject::FormErr)?;
        let rrtype = u16_at(wire, pos)?;
        let rdlen = usize::from(u16_at(wire, pos + 8)?);
        pos += 10 + rdlen;
        if pos > wire.len() {
            return Err(Reject::FormErr);
        }
        edns |= i >= an_ns && rrtype == TYPE_OPT;
    }
    Ok(Query {
        wire,
        qname_end,
        question_end,
        name,
        rtype,
        class,
        edns,
    })
}

/// The question name at offset 12 (no compression allowed there), as text,
/// and the offset just past it.
fn read_qname(wire: &[u8]) -> Result<(String, usize), Reject> {
    let mut name = String::with_capacity(64);
    let mut pos = HEADER_LEN;
    loop {
        let len = usize::from(*wire.get(pos).ok_or(Reject::FormErr)?);
        if len == 0 {
            pos += 1;
            break;
        }
        if len & 0xc0 != 0 {
            return Err(Reject::FormErr);
        }
        let label = wire.get(pos + 1..pos + 1 + len).ok_or(Reject::FormErr)?;
        for &b in label {
            let ok = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            name.push(if ok { char::from(b) } else { '?' });
        }
        name.push('.');
        pos += 1 + len;
        // The name on the wire, the root label's byte included.
        if pos - HEADER_LEN + 1 > MAX_WIRE_NAME {
            return Err(Reject::FormErr);
        }
    }
    if name.is_empty() {
        name.push('.');
    }
    Ok((name, pos))
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
