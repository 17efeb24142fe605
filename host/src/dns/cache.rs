//! The answer cache, keyed by (lowercased name, type).
//!
//! Each entry holds a pre-encoded response (header, question, answers).
//! A hit copies it and patches the id, the flags, the question's case and
//! the remaining TTLs in place: no DNS encoding on the warm path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query as DnsQuery, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};

use super::wire::{self, Query, OPT_RR};

/// Most entries kept; when full, expired ones go first, then arbitrary ones.
pub const MAX_ENTRIES: usize = 20_000;

/// One cached answer, ready to send.
#[derive(Debug)]
pub struct CachedAnswer {
    template: Vec<u8>,
    ttl_offsets: Vec<usize>,
    ttls: Vec<u32>,
    /// The response code.
    pub rcode: ResponseCode,
    /// A/AAAA addresses in the answer, for the audit log.
    pub addrs: Vec<IpAddr>,
    /// Were private A/AAAA answers dropped?
    pub filtered: bool,
    stored: Instant,
    /// When this entry stops being served.
    pub expires: Instant,
}

/// Clamp a TTL into `min..=max`.
pub fn clamp_ttl(ttl: u32, min: u32, max: u32) -> u32 {
    ttl.max(min).min(max.max(min))
}

impl CachedAnswer {
    /// Encode an answer for `name`/`rtype` with `records` (TTLs clamped to
    /// `min..=max`; for no records, `negative_ttl` clamped the same way).
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        name: &Name,
        rtype: RecordType,
        rcode: ResponseCode,
        mut records: Vec<Record>,
        negative_ttl: u32,
        (min, max): (u32, u32),
        filtered: bool,
        now: Instant,
    ) -> Option<CachedAnswer> {
        for r in &mut records {
            r.set_ttl(clamp_ttl(r.ttl(), min, max));
        }
        let ttl = records
            .iter()
            .map(Record::ttl)
            .min()
            .unwrap_or_else(|| clamp_ttl(negative_ttl, min, max));
        let addrs = records
            .iter()
            .filter_map(|r| r.data().ip_addr())
            .collect::<Vec<_>>();
        let ttls = records.iter().map(Record::ttl).collect();
        let mut msg = Message::new();
        msg.set_id(0)
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_recursion_available(true)
            .set_response_code(rcode)
            .add_query(DnsQuery::query(name.clone(), rtype))
            .add_answers(records);
        let template = msg.to_vec().ok()?;
        let ttl_offsets = wire::answer_ttl_offsets(&template)?;
        Some(CachedAnswer {
            template,
            ttl_offsets,
            ttls,
            rcode,
            addrs,
            filtered,
            stored: now,
            expires: now + Duration::from_secs(u64::from(ttl)),
        })
    }

    /// The response to `q` at `now`: the template with `q`'s id, flags and
    /// question name, TTLs counted down, and an OPT record for EDNS.
    pub fn render(&self, q: &Query<'_>, now: Instant) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.template.len() + OPT_RR.len());
        out.extend_from_slice(&self.template);
        out[..2].copy_from_slice(&q.wire[..2]);
        out[2] = 0x80 | (q.wire[2] & 0x01);
        // The question name in the client's case (same length: same name).
        let qname = &q.wire[wire::HEADER_LEN..q.qname_end];
        if out.len() >= q.qname_end {
            let slot = &mut out[wire::HEADER_LEN..q.qname_end];
            if slot.eq_ignore_ascii_case(qname) {
                slot.copy_from_slice(qname);
            }
        }
        let elapsed =
            u32::try_from(now.saturating_duration_since(self.stored).as_secs()).unwrap_or(u32::MAX);
        for (off, ttl) in self.ttl_offsets.iter().zip(&self.ttls) {
            out[*off..*off + 4].copy_from_slice(&ttl.saturating_sub(elapsed).to_be_bytes());
        }
        if q.edns {
            out[10..12].copy_from_slice(&1u16.to_be_bytes());
            out.extend_from_slice(&OPT_RR);
        }
        out
    }
}

/// The entries of one name, by type (a name rarely has more than three).
type ByType = Vec<(RecordType, Arc<CachedAnswer>)>;

/// The cache. Shared by all connections.
#[derive(Debug, Default)]
pub struct Cache {
    map: RwLock<HashMap<String, ByType>>,
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The live entry for (`name`, `rtype`); `name` is lowercase.
    pub fn get(&self, name: &str, rtype: RecordType, now: Instant) -> Option<Arc<CachedAnswer>> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.get(name)?
            .iter()
            .find(|(t, a)| *t == rtype && a.expires > now)
            .map(|(_, a)| Arc::clone(a))
    }

    /// Store an answer.
    pub fn insert(&self, name: &str, rtype: RecordType, answer: Arc<CachedAnswer>, now: Instant) {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_ENTRIES && !map.contains_key(name) {
            map.retain(|_, v| {
                v.retain(|(_, a)| a.expires > now);
                !v.is_empty()
            });
            if map.len() >= MAX_ENTRIES {
                if let Some(k) = map.keys().next().cloned() {
                    map.remove(&k);
                }
            }
        }
        let v = map.entry(name.to_string()).or_default();
        v.retain(|(t, _)| *t != rtype);
        v.push((rtype, answer));
    }

    /// Number of names cached.
    pub fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Is the cache empty?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
