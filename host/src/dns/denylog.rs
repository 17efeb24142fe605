//! The operator's view of denials: one `info` line the first time a
//! (name, type, rule) is refused in a window, then a count of its repeats
//! when the window closes.
//!
//! A client retrying a refused name thousands of times a second would
//! otherwise cost a formatted, written log line per query. The complete
//! record of every decision is the audit log ([`super::audit`]); this only
//! keeps standard error readable and cheap.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use super::policy::Rule;

/// How long repeats of one denial are counted before they are reported.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Distinct denials tracked per window; past this, each is logged at once.
pub const MAX_KEYS: usize = 4096;

/// One denial's repeats in the current window.
#[derive(Debug)]
struct Seen {
    rtype: Option<RecordType>,
    rule: Rule,
    verdict: &'static str,
    repeats: u64,
}

#[derive(Debug)]
struct State {
    started: Instant,
    keys: usize,
    by_name: HashMap<String, Vec<Seen>>,
}

/// Denial lines with repeats folded into counts.
#[derive(Debug)]
pub struct DenialLog {
    state: Mutex<State>,
}

impl DenialLog {
    /// An empty log whose first window starts `now`.
    pub fn new(now: Instant) -> DenialLog {
        DenialLog {
            state: Mutex::new(State {
                started: now,
                keys: 0,
                by_name: HashMap::new(),
            }),
        }
    }

    /// Note one denial at `now`. Returns true if a line was logged for it
    /// (its first occurrence in the window), false if it was counted.
    pub fn note(
        &self,
        name: &str,
        rtype: Option<RecordType>,
        verdict: &'static str,
        rule: Rule,
        now: Instant,
    ) -> bool {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if now.saturating_duration_since(st.started) >= WINDOW {
            report(&mut st, now);
        }
        if let Some(list) = st.by_name.get_mut(name) {
            if let Some(s) = list.iter_mut().find(|s| s.rtype == rtype && s.rule == rule) {
                s.repeats += 1;
                return false;
            }
        }
        if st.keys < MAX_KEYS {
            st.keys += 1;
            st.by_name.entry(name.to_string()).or_default().push(Seen {
                rtype,
                rule,
                verdict,
                repeats: 0,
            });
        }
        drop(st);
        tracing::info!("dns: {name} {}: {verdict} (rule {rule})", type_str(rtype));
        true
    }

    /// Report the repeats counted so far and start a new window at `now`.
    pub fn flush(&self, now: Instant) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        report(&mut st, now);
    }

    /// Report if the current window has closed by `now`.
    pub fn tick(&self, now: Instant) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if now.saturating_duration_since(st.started) >= WINDOW {
            report(&mut st, now);
        }
    }
}

fn type_str(rtype: Option<RecordType>) -> String {
    rtype.map(|t| t.to_string()).unwrap_or_default()
}

/// Log the repeats of the window that ends at `now`, then reset.
fn report(st: &mut State, now: Instant) {
    let secs = now.saturating_duration_since(st.started).as_secs_f32();
    for (name, list) in st.by_name.drain() {
        for s in list.into_iter().filter(|s| s.repeats > 0) {
            tracing::info!(
                "dns: {name} {}: {} (rule {}) {} more times in {secs:.0}s",
                type_str(s.rtype),
                s.verdict,
                s.rule,
                s.repeats
            );
        }
    }
    st.keys = 0;
    st.started = now;
}
