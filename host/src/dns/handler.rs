//! The handler: query wire bytes in, answer wire bytes out. Never panics,
//! whatever the bytes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::manifest::Manifest;

use super::audit::{Audit, AuditRecord};
use super::cache::{Cache, CachedAnswer};
use super::denylog::DenialLog;
use super::learned::LearnedAddrs;
use super::policy::{Policy, Rule, Verdict};
use super::rebind;
use super::upstream::Upstream;
use super::wire::{self, Reject};

/// DNS class IN.
const CLASS_IN: u16 = 1;

/// The name audited for a query refused because it holds a secret.
const WITHHELD: &str = "(withheld: holds a secret)";

/// One upstream query that concurrent misses wait on together.
type InFlight = tokio::sync::OnceCell<Option<Arc<CachedAnswer>>>;

/// A query allowed by the policy and not in the cache.
#[derive(Debug)]
pub struct NeedsUpstream {
    /// The normalised name.
    name: String,
    /// When the query arrived.
    start: Instant,
}

/// Answers DNS queries under one bottle's policy.
pub struct Handler {
    policy: Policy,
    upstream: Arc<dyn Upstream>,
    cache: Cache,
    inflight: Mutex<HashMap<(String, RecordType), Arc<InFlight>>>,
    learned: LearnedAddrs,
    audit: Audit,
    denials: DenialLog,
    allow_private_answers: bool,
    ttl_bounds: (u32, u32),
    timeout: Duration,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Handler {
    /// A handler for `manifest`'s DNS policy, resolving through `upstream`.
    pub fn new(manifest: &Manifest, upstream: Arc<dyn Upstream>, audit: Audit) -> Handler {
        Handler::with_policy(
            Policy::from_manifest(manifest),
            &manifest.dns,
            upstream,
            audit,
        )
    }

    /// A handler for `policy` with the cache and rebinding settings of `dns`.
    pub fn with_policy(
        policy: Policy,
        dns: &crate::manifest::DnsConfig,
        upstream: Arc<dyn Upstream>,
        audit: Audit,
    ) -> Handler {
        Handler {
            policy,
            upstream,
            cache: Cache::new(),
            inflight: Mutex::new(HashMap::new()),
            learned: LearnedAddrs::new(),
            audit,
            denials: DenialLog::new(Instant::now()),
            allow_private_answers: dns.allow_private_answers,
            ttl_bounds: (dns.cache_min_ttl, dns.cache_max_ttl),
            // hickory applies the timeout per attempt; this bounds the whole.
            timeout: Duration::from_millis(dns.timeout_ms.saturating_mul(2).max(1)),
        }
    }

    /// Also refuse names holding a host secret or credential
    /// ([`super::policy::Rule::Secret`]).
    pub fn scan_names(mut self, scan: super::policy::NameScan) -> Handler {
        self.policy = self.policy.with_name_scan(scan);
        self
    }

    /// Queries waiting for the upstream (tests: nothing is left behind).
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The addresses learned from allowed answers (shared, cloneable).
    pub fn learned(&self) -> LearnedAddrs {
        self.learned.clone()
    }

    /// Periodic upkeep (call every few seconds): report counted repeats of
    /// denials whose window has closed.
    pub fn tick(&self) {
        self.denials.tick(Instant::now());
    }

    /// Write out everything buffered: the audit log and the denial counts.
    /// Call before exiting.
    pub fn flush(&self) {
        self.denials.flush(Instant::now());
        self.audit.flush();
    }

    /// Did the rebinding floor drop addresses from the current answer for
    /// `name` (A or AAAA)? For the proxy's lookup, to tell a refusal from
    /// a name without addresses.
    pub fn private_dropped(&self, name: &str) -> bool {
        let now = Instant::now();
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        [RecordType::A, RecordType::AAAA]
            .into_iter()
            .any(|t| self.cache.get(&name, t, now).is_some_and(|a| a.filtered))
    }

    /// The answer to `query` (wire format). Always returns a DNS message.
    pub async fn handle(&self, query: &[u8]) -> Vec<u8> {
        match self.try_local(query) {
            Ok(answer) => answer,
            Err(miss) => self.resolve_miss(query, miss).await,
        }
    }

    /// Answer `query` without the upstream if possible: malformed, denied
    /// or cached. `Err` means it must go upstream via [`Self::resolve_miss`].
    /// Synchronous and cheap, so the server runs it inline.
    pub fn try_local(&self, query: &[u8]) -> Result<Vec<u8>, NeedsUpstream> {
        let start = Instant::now();
        if self.audit.failing() {
            return Ok(self.unaudited(query, start));
        }
        let q = match wire::parse(query) {
            Ok(q) => q,
            Err(reject) => {
                let (rcode, rule, verdict) = match reject {
                    Reject::FormErr => (ResponseCode::FormErr, Rule::Malformed, "formerr"),
                    Reject::NotImp => (ResponseCode::NotImp, Rule::Opcode, "notimp"),
                };
                if !self.log("", None, verdict, Some(rule), &[], false, start) {
                    return Ok(wire::bare_answer(query, ResponseCode::ServFail));
                }
                return Ok(wire::bare_answer(query, rcode));
            }
        };
        let raw = q.name.as_str();
        let verdict = if q.class == CLASS_IN {
            self.policy.check(raw, q.rtype, start)
        } else {
            Verdict::Deny(Rule::RecordType)
        };
        let name = match verdict {
            Verdict::Allow { name } => name,
            Verdict::Deny(rule) => {
                let (rcode, verdict) = if rule == Rule::RecordType {
                    (ResponseCode::Refused, "refused")
                } else {
                    (ResponseCode::NXDomain, "nxdomain")
                };
                // A name holding a secret is not written out, even here.
                let shown = if rule == Rule::Secret { WITHHELD } else { raw };
                if !self.log(shown, Some(q.rtype), verdict, Some(rule), &[], false, start) {
                    return Ok(wire::local_answer(&q, ResponseCode::ServFail));
                }
                return Ok(wire::local_answer(&q, rcode));
            }
        };
        if let Some(hit) = self.cache.get(&name, q.rtype, start) {
            let out = hit.render(&q, start);
            if !self.log_answer(raw, q.rtype, &hit, true, start) {
                return Ok(wire::local_answer(&q, ResponseCode::ServFail));
            }
            return Ok(out);
        }
        Err(NeedsUpstream { name, start })
    }

    /// Finish a query [`Self::try_local`] could not answer: resolve it
    /// upstream (SERVFAIL on failure), cache and answer.
    pub async fn resolve_miss(&self, query: &[u8], miss: NeedsUpstream) -> Vec<u8> {
        let NeedsUpstream { name, start } = miss;
        let Ok(q) = wire::parse(query) else {
            return wire::bare_answer(query, ResponseCode::FormErr);
        };
        let raw = q.name.as_str();
        match self.resolve(&name, q.rtype, start).await {
            Some(answer) => {
                let out = answer.render(&q, Instant::now());
                // A fresh upstream answer is written through at once (one
                // write per cache miss): if the log cannot take it, the
                // client gets SERVFAIL and nothing more goes upstream.
                if !self.log_answer(raw, q.rtype, &answer, false, start) || !self.audit.flush() {
                    return wire::local_answer(&q, ResponseCode::ServFail);
                }
                out
            }
            None => {
                let rule = Some(Rule::Upstream);
                let _ = self.log(raw, Some(q.rtype), "servfail", rule, &[], false, start);
                wire::local_answer(&q, ResponseCode::ServFail)
            }
        }
    }

    /// Resolve upstream, filter, cache and learn. `None` means SERVFAIL.
    /// Concurrent misses for the same (name, type) share one upstream query.
    async fn resolve(
        &self,
        name: &str,
        rtype: RecordType,
        now: Instant,
    ) -> Option<Arc<CachedAnswer>> {
        let key = (name.to_string(), rtype);
        let cell = {
            let mut map = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(map.entry(key.clone()).or_default())
        };
        // The entry goes when this waiter is done, or dropped (a proxy
        // lookup whose request the guest cancelled): no entry stays behind.
        let _leave = Leave {
            map: &self.inflight,
            key,
            cell: Arc::clone(&cell),
        };
        cell.get_or_init(|| self.resolve_once(name, rtype, now))
            .await
            .clone()
    }

    /// One upstream query for [`Self::resolve`].
    async fn resolve_once(
        &self,
        name: &str,
        rtype: RecordType,
        now: Instant,
    ) -> Option<Arc<CachedAnswer>> {
        let fqdn = Name::from_ascii(format!("{name}.")).ok()?;
        let resolved =
            tokio::time::timeout(self.timeout, self.upstream.resolve(fqdn.clone(), rtype));
        let ans = match resolved.await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                tracing::warn!("dns: {name} {rtype}: {e}");
                return None;
            }
            Err(_) => {
                tracing::warn!("dns: {name} {rtype}: upstream timed out");
                return None;
            }
        };
        let (records, filtered) = self.filter(ans.records);
        let answer = Arc::new(CachedAnswer::build(
            &fqdn,
            rtype,
            ans.rcode,
            records,
            ans.negative_ttl,
            self.ttl_bounds,
            filtered,
            now,
        )?);
        let ips: Vec<IpAddr> = answer.addrs.clone();
        self.learned.learn(name, &ips, answer.expires);
        self.cache.insert(name, rtype, Arc::clone(&answer), now);
        Some(answer)
    }

    /// Drop A/AAAA records in forbidden ranges unless private answers are
    /// allowed. Returns the records kept and whether any were dropped.
    fn filter(&self, records: Vec<Record>) -> (Vec<Record>, bool) {
        if self.allow_private_answers {
            return (records, false);
        }
        let before = records.len();
        let kept: Vec<Record> = records
            .into_iter()
            .filter(|r| match r.data() {
                RData::A(a) => !rebind::is_forbidden(IpAddr::V4(a.0)),
                RData::AAAA(a) => !rebind::is_forbidden(IpAddr::V6(a.0)),
                _ => true,
            })
            .collect();
        let dropped = kept.len() != before;
        (kept, dropped)
    }

    /// SERVFAIL for `query` while the audit log cannot be written; the
    /// attempt to record it tells whether the log works again.
    #[cold]
    fn unaudited(&self, query: &[u8], start: Instant) -> Vec<u8> {
        let Ok(q) = wire::parse(query) else {
            let _ = self.log(
                "",
                None,
                "servfail",
                Some(Rule::AuditLog),
                &[],
                false,
                start,
            );
            return wire::bare_answer(query, ResponseCode::ServFail);
        };
        let rule = Some(Rule::AuditLog);
        let _ = self.log(
            q.name.as_str(),
            Some(q.rtype),
            "servfail",
            rule,
            &[],
            false,
            start,
        );
        wire::local_answer(&q, ResponseCode::ServFail)
    }

    /// Record an answer; `false` if the audit log could not be written.
    #[must_use]
    fn log_answer(
        &self,
        name: &str,
        rtype: RecordType,
        a: &CachedAnswer,
        cached: bool,
        start: Instant,
    ) -> bool {
        let verdict = if a.rcode == ResponseCode::NXDomain {
            "nxdomain"
        } else {
            "answer"
        };
        let rule = a.filtered.then_some(Rule::PrivateAnswer);
        if a.filtered && !cached {
            tracing::warn!("dns: {name} {rtype}: private answers dropped (rule private-answer)");
        }
        self.log(name, Some(rtype), verdict, rule, &a.addrs, cached, start)
    }

    /// Record a decision; `false` if the audit log could not be written.
    #[allow(clippy::too_many_arguments)]
    #[must_use]
    fn log(
        &self,
        name: &str,
        rtype: Option<RecordType>,
        verdict: &'static str,
        rule: Option<Rule>,
        answers: &[IpAddr],
        cached: bool,
        start: Instant,
    ) -> bool {
        if let Some(r) = rule {
            if !matches!(r, Rule::PrivateAnswer | Rule::Upstream | Rule::AuditLog) {
                self.denials.note(name, rtype, verdict, r, start);
            }
        }
        if !self.audit.enabled() {
            return true;
        }
        self.audit.record(&AuditRecord {
            name,
            rtype,
            verdict,
            rule: rule.map(Rule::name),
            answers,
            cached,
            latency_us: u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
        })
    }
}

/// Takes a query's in-flight entry out of the map when dropped, if it is
/// still this one (waiters that came meanwhile keep their cell; a later
/// query starts a new one).
struct Leave<'a> {
    map: &'a Mutex<HashMap<(String, RecordType), Arc<InFlight>>>,
    key: (String, RecordType),
    cell: Arc<InFlight>,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map
            .get(&self.key)
            .is_some_and(|c| Arc::ptr_eq(c, &self.cell))
        {
            map.remove(&self.key);
        }
    }
}
