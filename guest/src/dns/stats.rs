//! Counters of the DNS stub: lock-free atomics updated on the hot path, and
//! a serde snapshot for `bottle-guest status`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::wire;

/// Live counters, shared by the listeners and the host client.
#[derive(Debug, Default)]
pub struct Stats {
    queries_udp: AtomicU64,
    queries_tcp: AtomicU64,
    dropped: AtomicU64,
    answered: AtomicU64,
    refused: AtomicU64,
    nxdomain: AtomicU64,
    servfail: AtomicU64,
    truncated: AtomicU64,
    in_flight: AtomicU64,
    reconnects: AtomicU64,
    latency_last_us: AtomicU64,
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
    latency_max_us: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Queries received over UDP.
    pub queries_udp: u64,
    /// Queries received over TCP.
    pub queries_tcp: u64,
    /// Packets dropped unanswered (shorter than a header, or not a query).
    pub dropped: u64,
    /// Answers relayed from the host (any rcode).
    pub answered: u64,
    /// Of those, REFUSED.
    pub refused: u64,
    /// Of those, NXDOMAIN.
    pub nxdomain: u64,
    /// SERVFAIL answers: from the host, or made by the stub when the host
    /// failed, timed out or was away.
    pub servfail: u64,
    /// UDP answers sent truncated (TC) because they exceeded the client's
    /// limit.
    pub truncated: u64,
    /// Queries waiting for the host right now.
    pub in_flight: u64,
    /// Successful (re)connections to the host after the first.
    pub host_reconnects: u64,
    /// Latency of the last host answer, send to answer, microseconds.
    pub latency_last_us: u64,
    /// Mean host latency, microseconds.
    pub latency_avg_us: u64,
    /// Worst host latency, microseconds.
    pub latency_max_us: u64,
}

/// Response code values counted separately.
const RCODE_SERVFAIL: u8 = 2;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_REFUSED: u8 = 5;

impl Stats {
    /// A query arrived over UDP (`true`) or TCP (`false`).
    pub fn query(&self, udp: bool) {
        if udp {
            self.queries_udp.fetch_add(1, Relaxed);
        } else {
            self.queries_tcp.fetch_add(1, Relaxed);
        }
    }

    /// A packet was dropped without an answer.
    pub fn dropped(&self) {
        self.dropped.fetch_add(1, Relaxed);
    }

    /// The host answered with `answer`.
    pub fn answered(&self, answer: &[u8]) {
        self.answered.fetch_add(1, Relaxed);
        if answer.len() >= wire::HEADER_LEN {
            match wire::rcode(answer) {
                RCODE_SERVFAIL => self.servfail.fetch_add(1, Relaxed),
                RCODE_NXDOMAIN => self.nxdomain.fetch_add(1, Relaxed),
                RCODE_REFUSED => self.refused.fetch_add(1, Relaxed),
                _ => 0,
            };
        }
    }

    /// The stub answered SERVFAIL itself.
    pub fn servfail(&self) {
        self.servfail.fetch_add(1, Relaxed);
    }

    /// A UDP answer was truncated.
    pub fn truncated(&self) {
        self.truncated.fetch_add(1, Relaxed);
    }

    /// A query was sent to the host; the guard counts it in flight until
    /// dropped.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self)
    }

    /// The host client reconnected.
    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }

    /// Record one host round trip.
    pub fn latency(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.latency_last_us.store(us, Relaxed);
        self.latency_sum_us.fetch_add(us, Relaxed);
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_max_us.fetch_max(us, Relaxed);
    }

    /// Copy every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let count = self.latency_count.load(Relaxed);
        StatsSnapshot {
            queries_udp: self.queries_udp.load(Relaxed),
            queries_tcp: self.queries_tcp.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            answered: self.answered.load(Relaxed),
            refused: self.refused.load(Relaxed),
            nxdomain: self.nxdomain.load(Relaxed),
            servfail: self.servfail.load(Relaxed),
            truncated: self.truncated.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            host_reconnects: self.reconnects.load(Relaxed),
            latency_last_us: self.latency_last_us.load(Relaxed),
            latency_avg_us: self
                .latency_sum_us
                .load(Relaxed)
                .checked_div(count)
                .unwrap_or(0),
            latency_max_us: self.latency_max_us.load(Relaxed),
        }
    }
}

/// Counts one query in flight while alive.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Stats);

/// [`InFlight`] holding its own handle on the counters, for queries that
/// no task waits on.
#[derive(Debug)]
pub struct InFlightOwned(Arc<Stats>);

impl InFlightOwned {
    /// Count one query in flight until the guard is dropped.
    pub fn new(stats: &Arc<Stats>) -> InFlightOwned {
        stats.in_flight.fetch_add(1, Relaxed);
        InFlightOwned(Arc::clone(stats))
    }
}

impl Drop for InFlightOwned {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rcodes_are_counted_by_kind() {
        let s = Stats::default();
        let mut h = [0u8; 12];
        for (rc, n) in [(0u8, 2), (2, 1), (3, 3), (5, 4)] {
            h[3] = rc;
            for _ in 0..n {
                s.answered(&h);
            }
        }
        s.servfail();
        let snap = s.snapshot();
        assert_eq!(snap.answered, 10);
        assert_eq!(snap.servfail, 2);
        assert_eq!(snap.nxdomain, 3);
        assert_eq!(snap.refused, 4);
    }

    #[test]
    fn latency_and_in_flight() {
        let s = Stats::default();
        {
            let _a = s.in_flight();
            let _b = s.in_flight();
            assert_eq!(s.snapshot().in_flight, 2);
        }
        assert_eq!(s.snapshot().in_flight, 0);
        for us in [100, 300, 200] {
            s.latency(Duration::from_micros(us));
        }
        let snap = s.snapshot();
        assert_eq!(
            (
                snap.latency_last_us,
                snap.latency_avg_us,
                snap.latency_max_us
            ),
            (200, 200, 300)
        );
        let json = serde_json::to_string(&snap).unwrap();
        assert_eq!(serde_json::from_str::<StatsSnapshot>(&json).unwrap(), snap);
    }
}
