//! The callback side of the host client: submitting a batch of queries
//! whose answers go to callbacks (UDP), delivering the answers of one read,
//! and timing callbacks out; each group of callbacks ends with the flush
//! hook.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bottle_shared::frame::encode_message_into;
use bottle_shared::message::DnsRequest;

use super::{max_frame, Call, HostClient, InFlightOwned, QueryError, Submission, Waiter};

impl HostClient {
    /// Send `batch` to the host in one write; each answer, or the reason
    /// there is none (lost connection, timeout), goes to its `done`.
    /// While disconnected, the batch is handed back untouched.
    pub fn submit(&self, batch: Vec<Submission>) -> Result<(), Vec<Submission>> {
        let now = Instant::now();
        let deadline = now + self.inner.timings.query_timeout;
        let mut frames = Vec::with_capacity(batch.len() * 64);
        let mut refused = Vec::new();
        let mut st = self.lock();
        let Some(conn) = st.conn.clone() else {
            return Err(batch);
        };
        let was_idle = st.calls == 0;
        for Submission {
            transport,
            wire,
            done,
        } in batch
        {
            let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
            let msg = DnsRequest::Query {
                id,
                transport,
                wire,
            };
            match encode_message_into(&msg, max_frame(), &mut frames) {
                Ok(()) => {}
                Err(_) => {
                    refused.push(done);
                    continue;
                }
            }
            let call = Call {
                done,
                started: now,
                deadline,
                _in_flight: InFlightOwned::new(&self.inner.stats),
            };
            st.pending.insert(id, Waiter::Call(call));
            st.calls += 1;
        }
        let wake = was_idle && st.calls > 0;
        drop(st);
        if wake {
            self.inner.sweep.notify_one();
        }
        // If this connection is already gone, its pending entries were
        // failed with it.
        if !frames.is_empty() {
            let _ = conn.send(frames);
        }
        if !refused.is_empty() {
            for done in refused {
                done(Err(QueryError::TooLarge));
            }
            self.flush();
        }
        Ok(())
    }

    /// Deliver answers to their waiting queries (those that still wait),
    /// taking the lock once, then run the flush hook.
    pub(super) fn deliver(&self, answers: &mut Vec<(u32, Vec<u8>)>) {
        let mut waiters = Vec::with_capacity(answers.len());
        {
            let mut st = self.lock();
            for (id, wire) in answers.drain(..) {
                match st.take(id) {
                    Some(w) => waiters.push((w, wire)),
                    None => {
                        tracing::debug!(id, "dns-stub: answer for no waiting query (timed out?)");
                    }
                }
            }
        }
        let now = Instant::now();
        for (waiter, wire) in waiters {
            match waiter {
                Waiter::Task(tx) => {
                    let _ = tx.send(wire);
                }
                Waiter::Call(c) => {
                    self.inner
                        .stats
                        .latency(now.saturating_duration_since(c.started));
                    (c.done)(Ok(wire));
                }
            }
        }
        self.flush();
    }

    /// Fail the callbacks whose time is up at `now`.
    pub(super) fn expire(&self, now: Instant) {
        let expired: Vec<Call> = {
            let mut st = self.lock();
            let ids: Vec<u32> = st
                .pending
                .iter()
                .filter(|(_, w)| matches!(w, Waiter::Call(c) if c.deadline <= now))
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| match st.take(id) {
                    Some(Waiter::Call(c)) => Some(c),
                    _ => None,
                })
                .collect()
        };
        if expired.is_empty() {
            return;
        }
        let limit = self.inner.timings.query_timeout;
        for c in expired {
            (c.done)(Err(QueryError::Timeout(limit)));
        }
        self.flush();
    }
}
