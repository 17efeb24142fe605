//! The guest console (kernel messages and `bottle-guest`'s log): written
//! to the bottle's `console.log`, and to the launcher's standard error
//! with `--console`, with the last few KiB kept for error reports (a VM
//! that dies before its agent starts is explained by its console). It
//! never shares standard output with the agent. The root agent can write
//! the console (`ttyS0`), so `console.log` stops at the agent log's
//! limit ([`LOG_LIMIT`](super::session::LOG_LIMIT)) with a notice; the
//! console is still drained, its tail kept, and shown with `--console`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::session::LOG_LIMIT;
use crate::log_cap::CappedLog;
use crate::vmm::Console;

/// Bytes of console output kept for reports.
pub const TAIL_BYTES: usize = 8 * 1024;

/// The end of the console output so far.
#[derive(Clone, Debug, Default)]
pub struct Tail(Arc<Mutex<VecDeque<u8>>>);

impl Tail {
    fn push(&self, b: &[u8]) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        t.extend(b);
        let extra = t.len().saturating_sub(TAIL_BYTES);
        t.drain(..extra);
    }

    /// The kept text, lossily decoded.
    pub fn text(&self) -> String {
        let t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (a, b) = t.as_slices();
        String::from_utf8_lossy(&[a, b].concat()).into_owned()
    }
}

/// Copy `console` to `log` (up to [`LOG_LIMIT`](super::session::LOG_LIMIT))
/// and to standard error when `show`, until it ends, keeping a [`Tail`].
pub fn forward(
    mut console: Console,
    tail: Tail,
    log: Option<std::fs::File>,
    show: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut log = CappedLog::new(log, "console.log", LOG_LIMIT);
        let mut err = tokio::io::stderr();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match console.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tail.push(&buf[..n]);
                    // A full disk or a closed terminal must not stop the VM.
                    log.put(&buf[..n]).await;
                    if show {
                        let _ = err.write_all(&buf[..n]).await;
                        let _ = err.flush().await;
                    }
                }
            }
        }
        log.flush().await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end() {
        let t = Tail::default();
        t.push(&vec![b'a'; TAIL_BYTES]);
        t.push(b"the end");
        let s = t.text();
        assert_eq!(s.len(), TAIL_BYTES);
        assert!(s.ends_with("aathe end"));
    }

    /// The guest console (`ttyS0`, writable by the root agent) is capped
    /// like the agent's own output, at `session::LOG_LIMIT`; the console
    /// is still read to its end, and its tail kept.
    #[tokio::test]
    async fn console_log_is_bounded_like_the_agent_log() {
        use crate::launch::session::LOG_LIMIT;
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("console.log");
        let log = crate::hardening::create_private(&path).unwrap();
        let guest = tokio::io::repeat(b'x')
            .take(LOG_LIMIT + (16 << 20))
            .chain(&b"the end"[..]);
        let tail = Tail::default();
        let task = forward(Box::new(guest), tail.clone(), Some(log), false);
        tokio::time::timeout(std::time::Duration::from_secs(120), task)
            .await
            .expect("the console was not drained")
            .unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(
            len <= LOG_LIMIT + 4096,
            "console.log grew to {len} bytes, past the agent log's limit"
        );
        assert!(tail.text().ends_with("xthe end"));
        let end = std::fs::read(&path).unwrap().split_off(len as usize - 200);
        assert!(
            String::from_utf8_lossy(&end).contains("console.log is full (64 MiB)"),
            "no notice at the end of console.log"
        );
    }
}
