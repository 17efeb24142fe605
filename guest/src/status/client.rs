//! Reading a snapshot from the status socket and printing it for people.

use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::Snapshot;

/// The status could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// Nobody listens on the socket.
    #[error("the bottle-guest init is not running (no status socket at {path})")]
    NotRunning {
        /// The socket path.
        path: String,
        /// Why the connection failed.
        #[source]
        source: std::io::Error,
    },
    /// The answer could not be read or parsed.
    #[error("bad answer from the init's status socket: {0}")]
    BadAnswer(String),
}

/// Fetch the raw JSON text from the init at `path`.
pub fn fetch_raw(path: &Path) -> Result<String, StatusError> {
    let mut s = UnixStream::connect(path).map_err(|source| StatusError::NotRunning {
        path: path.display().to_string(),
        source,
    })?;
    let bad = |e: std::io::Error| StatusError::BadAnswer(e.to_string());
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(bad)?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(bad)?;
    Ok(text)
}

/// Fetch and parse a snapshot.
pub fn fetch(path: &Path) -> Result<Snapshot, StatusError> {
    serde_json::from_str(&fetch_raw(path)?).map_err(|e| StatusError::BadAnswer(e.to_string()))
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Render a snapshot for a terminal.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let counters = |v: &Option<serde_json::Value>| match v {
        Some(v) => v.to_string(),
        None => "not running".to_string(),
    };
    let _ = writeln!(
        out,
        "{}  up {:.1}s",
        s.software,
        s.uptime_ms as f64 / 1000.0
    );
    let _ = writeln!(
        out,
        "host     {} ({}, peer {} protocol {})",
        s.host.address,
        s.host.state,
        s.host.peer_software.as_deref().unwrap_or("-"),
        s.host.peer_protocol.as_deref().unwrap_or("-"),
    );
    let _ = writeln!(out, "dns      {}", counters(&s.dns));
    let _ = writeln!(out, "egress   {}", counters(&s.egress));
    let ca = if s.ca_installed.is_empty() {
        "not installed".to_string()
    } else {
        s.ca_installed.join(", ")
    };
    let _ = writeln!(out, "ca       {ca}");
    let _ = writeln!(out, "orphans  {} reaped", s.orphans_reaped);
    for p in &s.processes {
        let _ = writeln!(
            out,
            "{:<8} pid {} state {:?} restarts {} last exit {}",
            p.name,
            opt(p.pid),
            p.state,
            p.restarts,
            opt(p.last_exit)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{Board, ProcessStatus};
    use crate::supervise::State;

    #[test]
    fn snapshot_round_trips_and_renders() {
        let board = Board::new(std::time::Instant::now());
        board.set_ca(vec!["/etc/bot-bottle/ca.pem".into()]);
        board.set_stats(
            Some(std::sync::Arc::new(|| serde_json::json!({"queries": 3}))),
            None,
        );
        board.set_agent(
            ProcessStatus {
                name: "agent".into(),
                pid: Some(42),
                state: State::Running,
                restarts: 1,
                last_exit: Some(3),
            },
            2,
        );
        let snap = board.snapshot();
        let back: Snapshot = serde_json::from_str(&serde_json::to_string(&snap).unwrap()).unwrap();
        assert_eq!(back, snap);
        assert!(snap.agent_started_ms.is_some());
        let text = render(&snap);
        for want in [
            "queries",
            "egress   not running",
            "pid 42",
            "restarts 1",
            "2 reaped",
            "ca.pem",
        ] {
            assert!(text.contains(want), "{want:?} missing in\n{text}");
        }
    }

    #[test]
    fn a_missing_socket_says_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let err = fetch(&dir.path().join("none.sock")).unwrap_err();
        assert!(err.to_string().contains("not running"), "{err}");
    }
}
