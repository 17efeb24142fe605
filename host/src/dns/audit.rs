//! The audit trail: one JSON line per decision, flushed per line.
//!
//! Without a file, each decision is logged through `tracing` only. With a
//! file, a line that cannot be written fails closed: [`Audit::record`]
//! says so, the handler answers SERVFAIL instead, and [`Audit::failing`]
//! stays set (no query goes upstream) until a line is written again.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use serde::Serialize;

/// One decision.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    /// RFC 3339 UTC time.
    pub time: String,
    /// The name as asked.
    pub name: &'a str,
    /// The record type.
    #[serde(rename = "type")]
    pub rtype: String,
    /// What the client got: `answer`, `nxdomain`, `refused`, `servfail`,
    /// `formerr`, `notimp`.
    pub verdict: &'a str,
    /// The rule that fired, if any.
    pub rule: Option<&'a str>,
    /// A/AAAA addresses in the answer.
    pub answers: &'a [IpAddr],
    /// Was the answer served from the cache?
    pub cached: bool,
    /// Time spent answering, microseconds.
    pub latency_us: u64,
}

/// Where audit records go.
#[derive(Debug, Default)]
pub struct Audit {
    file: Option<Mutex<File>>,
    /// The last write failed.
    failing: AtomicBool,
}

/// The audit log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {source}")]
pub struct AuditError {
    path: String,
    source: std::io::Error,
}

impl Audit {
    /// Log through `tracing` only.
    pub fn tracing_only() -> Audit {
        Audit::default()
    }

    /// Append to `path` (created if missing).
    pub fn to_file(path: &Path) -> Result<Audit, AuditError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| AuditError {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Audit {
            file: Some(Mutex::new(file)),
            failing: AtomicBool::new(false),
        })
    }

    /// Is anyone listening (a file, or `tracing` at debug level)? Lets the
    /// hot path skip building records nobody reads.
    pub fn enabled(&self) -> bool {
        self.file.is_some() || tracing::enabled!(tracing::Level::DEBUG)
    }

    /// Did the last write to the file fail? While it did, the handler
    /// sends nothing upstream.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Record one decision. `false` means the file could not be written
    /// (full disk, I/O error): the caller must not give the answer out.
    #[must_use]
    pub fn record(&self, rec: &AuditRecord<'_>) -> bool {
        tracing::debug!(
            name = rec.name,
            rtype = %rec.rtype,
            verdict = rec.verdict,
            rule = rec.rule.unwrap_or("-"),
            cached = rec.cached,
            latency_us = rec.latency_us,
            "dns decision"
        );
        let Some(file) = &self.file else { return true };
        let mut line = match serde_json::to_vec(rec) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("audit: cannot encode record: {e}");
                return false;
            }
        };
        line.push(b'\n');
        // One write per line on an O_APPEND file: lines never interleave.
        let mut f = file.lock().unwrap_or_else(PoisonError::into_inner);
        let before = f.metadata().map(|m| m.len()).ok();
        let ok = match f.write_all(&line).and_then(|()| f.flush()) {
            Ok(()) => true,
            Err(e) => {
                // A full disk can take part of the line: cut it off, so
                // the log never holds a torn line.
                if let Some(len) = before {
                    let _ = f.set_len(len);
                }
                if !self.failing() {
                    tracing::error!(
                        "dns audit log: write failed: {e}; answering SERVFAIL \
                         (nothing is resolved) until the log can be written"
                    );
                }
                false
            }
        };
        if self.failing.swap(!ok, Ordering::Relaxed) && ok {
            tracing::warn!("dns audit log: writable again, resolving");
        }
        ok
    }
}

/// `t` as RFC 3339 UTC with microseconds, e.g. `2026-11-23T15:20:47.123456Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
