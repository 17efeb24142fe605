//! The audit log: one JSON line per request, handed to the OS before the
//! response goes back to the guest. A line that cannot be written (a full
//! disk, or the log at its cap, [`crate::audit_cap`]) refuses the request.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

/// One audit line.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Record {
    /// RFC 3339, UTC.
    pub time: String,
    /// Method (`CONNECT` for tunnels).
    pub method: String,
    /// Host.
    pub host: String,
    /// Path and query as sent (for refusals by DLP, the path only).
    pub path: String,
    /// `allow` or `deny`.
    pub verdict: &'static str,
    /// Rule that decided a refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Status returned to the client.
    pub status: u16,
    /// Request body bytes.
    pub bytes_up: u64,
    /// Milliseconds spent deciding and (for allowed requests) until the
    /// response head arrived.
    pub duration_ms: u64,
    /// What was overwritten in the response (`RULE in PLACE`; verdict
    /// `redact` lines are for the body, the request's line for the head).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<String>,
}

/// The current time, RFC 3339.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An append-only audit file.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<Appender>,
    /// Largest the file may grow to, bytes.
    cap: u64,
}

/// The file and its length (ours alone to grow).
#[derive(Debug)]
struct Appender {
    file: File,
    len: u64,
}

/// The audit log cannot be written.
#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {source}")]
pub struct AuditError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

impl AuditLog {
    /// Open (append, create with mode 0600) `path`, capped at
    /// `BOTTLE_AUDIT_MAX_BYTES` ([`crate::audit_cap`]).
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let cap = crate::audit_cap::from_env().map_err(|e| AuditError {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        AuditLog::open_capped(path, cap)
    }

    /// [`AuditLog::open`] with the cap given.
    pub fn open_capped(path: &Path, cap: u64) -> Result<AuditLog, AuditError> {
        let err = |source| AuditError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = crate::hardening::open_private_append(path).map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        Ok(AuditLog {
            path: path.to_path_buf(),
            file: Mutex::new(Appender { file, len }),
            cap,
        })
    }

    /// Write one line and flush it.
    pub fn write(&self, rec: &Record) -> Result<(), AuditError> {
        let err = |source| AuditError {
            path: self.path.clone(),
            source,
        };
        // Room for a typical line, so it is not regrown while written.
        let mut line = Vec::with_capacity(256);
        serde_json::to_writer(&mut line, rec).map_err(|e| err(e.into()))?;
        line.push(b'\n');
        let mut guard = self
            .file
            .lock()
            .map_err(|_| err(std::io::Error::other("poisoned lock")))?;
        let Appender { file: f, len } = &mut *guard;
        if len.saturating_add(line.len() as u64) > self.cap {
            return Err(err(crate::audit_cap::full(self.cap)));
        }
        // One write(2) per line and no stat: on the hot path the line is
        // handed to the OS and that is all (no fsync; see docs/proxy.md).
        let mut written = 0;
        let res = loop {
            match f.write(&line[written..]) {
                Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    if written == line.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if res.is_err() && written > 0 {
            // A full disk can take part of the line: cut that part off
            // (appends are ours alone, under the lock), so the log never
            // holds a torn line.
            if let Ok(now) = f.metadata().map(|m| m.len()) {
                let _ = f.set_len(now.saturating_sub(written as u64));
            }
        }
        if res.is_ok() {
            *len += line.len() as u64;
        }
        res.map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_and_failures_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let rec = Record {
            time: now(),
            method: "GET".into(),
            host: "a.test".into(),
            path: "/x".into(),
            verdict: "deny",
            rule: Some("host-not-allowed".into()),
            status: 403,
            ..Record::default()
        };
        log.write(&rec).unwrap();
        log.write(&rec).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["rule"], "host-not-allowed");
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));

        // /dev/full refuses every write: the caller must fail closed.
        let full = AuditLog::open(Path::new("/dev/full")).unwrap();
        assert!(full.write(&rec).is_err());
    }

    /// At its cap the log refuses the line whole (no partial line), says
    /// why, and keeps refusing; a log opened again counts what is there.
    #[test]
    fn the_cap_refuses_whole_lines_and_counts_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let rec = Record {
            time: now(),
            method: "GET".into(),
            host: "a.test".into(),
            path: "/x".into(),
            verdict: "allow",
            status: 200,
            ..Record::default()
        };
        let one = {
            let log = AuditLog::open_capped(&path, u64::MAX).unwrap();
            log.write(&rec).unwrap();
            std::fs::metadata(&path).unwrap().len()
        };
        // Room for two more lines after the one already there.
        let log = AuditLog::open_capped(&path, 3 * one + one / 2).unwrap();
        log.write(&rec).unwrap();
        log.write(&rec).unwrap();
        for _ in 0..2 {
            let e = log.write(&rec).unwrap_err().to_string();
            assert!(e.contains("BOTTLE_AUDIT_MAX_BYTES"), "{e}");
            assert!(e.contains(&path.display().to_string()), "{e}");
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * one);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    }
}
