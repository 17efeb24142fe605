//! Addresses learned from allowed answers, shared with the egress proxy.
//!
//! The proxy can then check that a connection to `host` at `ip` goes to an
//! address this resolver actually handed out for `host`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// Past this many names, expired ones are swept on the next insert.
const MAX_NAMES: usize = 10_000;

/// Name → addresses with expiry. Cheap to clone; clones share the table.
#[derive(Clone, Debug, Default)]
pub struct LearnedAddrs {
    inner: Arc<Mutex<HashMap<String, HashMap<IpAddr, Instant>>>>,
}

impl LearnedAddrs {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Remember that `host` (normalised) resolved to `ips` until `expires`.
    pub fn learn(&self, host: &str, ips: &[IpAddr], expires: Instant) {
        if ips.is_empty() {
            return;
        }
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if map.len() >= MAX_NAMES && !map.contains_key(host) {
            map.retain(|_, ips| {
                ips.retain(|_, e| *e > now);
                !ips.is_empty()
            });
        }
        let entry = map.entry(host.to_string()).or_default();
        entry.retain(|_, e| *e > now);
        for ip in ips {
            let e = entry.entry(canonical(*ip)).or_insert(expires);
            *e = (*e).max(expires);
        }
    }

    /// Did this resolver hand out `ip` for `host`, and is it still valid?
    /// `host` is normalised here (case, trailing dot, IDN).
    pub fn is_learned(&self, host: &str, ip: IpAddr) -> bool {
        self.is_learned_at(host, ip, Instant::now())
    }

    /// [`Self::is_learned`] at a given time (for tests).
    pub fn is_learned_at(&self, host: &str, ip: IpAddr, now: Instant) -> bool {
        let Ok(host) = crate::manifest::normalize_name(host) else {
            return false;
        };
        let map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&host)
            .and_then(|ips| ips.get(&canonical(ip)))
            .is_some_and(|e| *e > now)
    }
}

/// IPv4-mapped IPv6 addresses compare equal to their IPv4 form.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}
