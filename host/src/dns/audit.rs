//! The audit trail: one JSON line per decision.
//!
//! Lines are formatted by hand into a shared buffer (no per-line
//! allocation) and written out when the buffer passes [`FLUSH_BYTES`], by a
//! flusher thread at least every [`FLUSH_INTERVAL`], on [`Audit::flush`],
//! and when the [`Audit`] is dropped. Each write holds whole lines, so on
//! an `O_APPEND` file lines never interleave or split.
//!
//! Without a file, each decision is logged through `tracing` only. With a
//! file, a write that fails (full disk, I/O error, or the log at its cap,
//! [`crate::audit_cap`]) fails closed: what was
//! written of it is cut off (no torn line), the lines are kept for the
//! next attempt, [`Audit::failing`] is set, and [`Audit::record`] returns
//! `false` (after retrying the kept lines) so the handler answers SERVFAIL
//! and sends nothing upstream until a write succeeds again. Answers fresh from the
//! upstream are written through at once (the handler flushes after each
//! cache miss), so none is given out unaudited; denials and cache hits
//! answered from the buffer when a write fails (at most [`FLUSH_INTERVAL`]
//! or [`FLUSH_BYTES`] of them) are retried, not dropped. At the cap, a
//! decision whose line would not fit is refused before it is given out,
//! so every line buffered fits and is written.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use hickory_proto::rr::RecordType;

/// Buffered audit bytes that trigger a write at once.
pub const FLUSH_BYTES: usize = 64 * 1024;

/// Longest a decision waits in the buffer before it reaches the file.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// One decision.
#[derive(Debug)]
pub struct AuditRecord<'a> {
    /// The name as asked.
    pub name: &'a str,
    /// The record type (none when the query did not parse).
    pub rtype: Option<RecordType>,
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

/// The file and the lines not yet written to it.
#[derive(Debug)]
struct Sink {
    state: Mutex<SinkState>,
    /// The last write failed; cleared by the next one that succeeds.
    failing: AtomicBool,
}

#[derive(Debug)]
struct SinkState {
    file: File,
    /// Largest the file may grow to ([`crate::audit_cap`]).
    cap: u64,
    /// The file's length (ours alone to grow).
    len: u64,
    buf: String,
    /// The time stamp's whole-second part, formatted once per second.
    stamp: Stamp,
}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, SinkState> {
        // Every operation leaves the buffer holding whole lines.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SinkState {
    /// Write the buffer out; `false` if that failed (the buffer is kept).
    fn write_out(&mut self, failing: &AtomicBool) -> bool {
        if self.buf.is_empty() {
            return !failing.load(Ordering::Relaxed);
        }
        // `record` keeps buffered lines under the cap; this holds the
        // line should anything else ever buffer.
        let at_cap = self.len.saturating_add(self.buf.len() as u64) > self.cap;
        let res = if at_cap {
            // Refused whole, as on a full disk: the lines stay buffered.
            Err(crate::audit_cap::full(self.cap))
        } else {
            self.file.write_all(self.buf.as_bytes())
        };
        match res {
            Ok(()) => {
                self.len += self.buf.len() as u64;
                self.buf.clear();
                if failing.swap(false, Ordering::Relaxed) {
                    tracing::warn!("dns audit log: writable again, resolving");
                }
                true
            }
            Err(e) => {
                // A full disk can take part of the buffer: cut it off, so
                // the log never holds a torn line; the lines stay buffered.
                let _ = self.file.set_len(self.len);
                if !failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        "dns audit log: write failed: {e}; answering SERVFAIL \
                         (nothing is resolved) until the log can be written"
                    );
                }
                false
            }
        }
    }
}

/// Where audit records go.
#[derive(Debug, Default)]
pub struct Audit {
    sink: Option<Arc<Sink>>,
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
        Audit { sink: None }
    }

    /// Append to `path` (created if missing), capped at
    /// `BOTTLE_AUDIT_MAX_BYTES` ([`crate::audit_cap`]). Starts the flusher
    /// thread, which ends shortly after the `Audit` is dropped.
    pub fn to_file(path: &Path) -> Result<Audit, AuditError> {
        let cap = crate::audit_cap::from_env().map_err(|e| AuditError {
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        Audit::to_file_capped(path, cap)
    }

    /// [`Audit::to_file`] with the cap given.
    pub fn to_file_capped(path: &Path, cap: u64) -> Result<Audit, AuditError> {
        let err = |source| AuditError {
            path: path.display().to_string(),
            source,
        };
        // 0600: the decisions are the bottle owner's alone.
        let file = crate::hardening::open_private_append(path).map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        let sink = Arc::new(Sink {
            state: Mutex::new(SinkState {
                file,
                cap,
                len,
                buf: String::with_capacity(FLUSH_BYTES + 1024),
                stamp: Stamp::default(),
            }),
            failing: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&sink);
        std::thread::Builder::new()
            .name("dns-audit-flush".into())
            .spawn(move || flusher(&weak))
            .map_err(err)?;
        Ok(Audit { sink: Some(sink) })
    }

    /// Is anyone listening (a file, or `tracing` at debug level)? Lets the
    /// hot path skip building records nobody reads.
    pub fn enabled(&self) -> bool {
        self.sink.is_some() || tracing::enabled!(tracing::Level::DEBUG)
    }

    /// Did the last write to the file fail? While it did, the handler
    /// sends nothing upstream.
    pub fn failing(&self) -> bool {
        self.sink
            .as_ref()
            .is_some_and(|s| s.failing.load(Ordering::Relaxed))
    }

    /// Record one decision, stamped with the current time. `false` means
    /// the log cannot be written (see the module docs): the caller must
    /// not give the answer out.
    #[must_use]
    pub fn record(&self, rec: &AuditRecord<'_>) -> bool {
        tracing::debug!(
            name = rec.name,
            rtype = ?rec.rtype,
            verdict = rec.verdict,
            rule = rec.rule.unwrap_or("-"),
            cached = rec.cached,
            latency_us = rec.latency_us,
            "dns decision"
        );
        let Some(sink) = &self.sink else { return true };
        let now = SystemTime::now();
        let mut st = sink.lock();
        // While failing, each decision first retries the kept lines: the
        // first one after the disk has room again finds out, and its own
        // line is written through with them.
        let recovering = sink.failing.load(Ordering::Relaxed);
        if recovering && !st.write_out(&sink.failing) {
            return false;
        }
        let st = &mut *st;
        let start = st.buf.len();
        write_line(&mut st.buf, &mut st.stamp, now, rec);
        if st.len.saturating_add(st.buf.len() as u64) > st.cap {
            // Past the cap: this decision is not given out (its line goes),
            // and the lines before it, answers already given, all fit.
            st.buf.truncate(start);
            let wrote = st.write_out(&sink.failing);
            if !sink.failing.swap(true, Ordering::Relaxed) && wrote {
                tracing::error!(
                    "dns audit log: {}; answering SERVFAIL (nothing is resolved)",
                    crate::audit_cap::full(st.cap)
                );
            }
            return false;
        }
        if recovering || st.buf.len() >= FLUSH_BYTES {
            return st.write_out(&sink.failing);
        }
        true
    }

    /// Write every buffered line to the file now; `false` if that failed.
    pub fn flush(&self) -> bool {
        match &self.sink {
            Some(sink) => sink.lock().write_out(&sink.failing),
            None => true,
        }
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// The flusher thread: write what is buffered every [`FLUSH_INTERVAL`]
/// until the sink is gone.
fn flusher(sink: &Weak<Sink>) {
    loop {
        std::thread::sleep(FLUSH_INTERVAL);
        let Some(sink) = sink.upgrade() else { return };
        let _ = sink.lock().write_out(&sink.failing);
    }
}

/// The last whole second formatted, e.g. `2026-11-23T15:20:47.`: lines
/// written within the same second reuse it and only add the microseconds.
#[derive(Debug, Default)]
pub(crate) struct Stamp {
    secs: Option<u64>,
    text: String,
}

impl Stamp {
    /// Append `t` as RFC 3339 UTC with microseconds to `out`.
    fn write(&mut self, out: &mut String, t: SystemTime) {
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        if self.secs != Some(d.as_secs()) {
            self.text.clear();
            write_rfc3339(
                &mut self.text,
                SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs()),
            );
            // Keep "...SS." and drop the zero microseconds and the "Z".
            self.text.truncate(self.text.len() - 7);
            self.secs = Some(d.as_secs());
        }
        out.push_str(&self.text);
        push_padded(out, u64::from(d.subsec_micros()), 6);
        out.push('Z');
    }
}

/// Append `n` in decimal, zero-padded to `width` digits.
fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(digits.len() - width.min(digits.len()));
    for &d in &digits[start..] {
        out.push(char::from(d));
    }
}

/// Append `n` in decimal.
fn push_u64(out: &mut String, n: u64) {
    push_padded(out, n, 0);
}

/// Append `ip` in its usual text form.
fn push_ip(out: &mut String, ip: &IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u64(out, u64::from(*o));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Append `rec` as one JSON line stamped `time` to `out`.
pub(crate) fn write_line(
    out: &mut String,
    stamp: &mut Stamp,
    time: SystemTime,
    rec: &AuditRecord<'_>,
) {
    out.push_str("{\"time\":\"");
    stamp.write(out, time);
    out.push_str("\",\"name\":");
    push_json_str(out, rec.name);
    out.push_str(",\"type\":\"");
    if let Some(t) = rec.rtype {
        out.push_str(t.into());
    }
    out.push_str("\",\"verdict\":");
    push_json_str(out, rec.verdict);
    out.push_str(",\"rule\":");
    match rec.rule {
        Some(r) => push_json_str(out, r),
        None => out.push_str("null"),
    }
    out.push_str(",\"answers\":[");
    for (i, ip) in rec.answers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        push_ip(out, ip);
        out.push('"');
    }
    out.push_str(if rec.cached {
        "],\"cached\":true,\"latency_us\":"
    } else {
        "],\"cached\":false,\"latency_us\":"
    });
    push_u64(out, rec.latency_us);
    out.push_str("}\n");
}

/// Append `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    // Names from the wire parser never need escaping: copy them whole.
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `t` as RFC 3339 UTC with microseconds, e.g. `2026-11-23T15:20:47.123456Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let mut s = String::with_capacity(27);
    write_rfc3339(&mut s, t);
    s
}

fn write_rfc3339(out: &mut String, t: SystemTime) {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(i64::try_from(days).unwrap_or(0));
    let _ = write!(
        out,
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_micros()
    );
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
