//! The guest console (kernel messages and `bottle-guest`'s log): written
//! to the bottle's `console.log`, and to the launcher's standard error
//! with `--console`, with the last few KiB kept for error reports (a VM
//! that dies before its agent starts is explained by its console). It
//! never shares standard output with the agent.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// Copy `console` to `log` (and standard error when `show`) until it
/// ends, keeping a [`Tail`].
pub fn forward(
    mut console: Console,
    tail: Tail,
    log: Option<std::fs::File>,
    show: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut log = log.map(tokio::fs::File::from_std);
        let mut err = tokio::io::stderr();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match console.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tail.push(&buf[..n]);
                    // A full disk or a closed terminal must not stop the VM.
                    if let Some(f) = &mut log {
                        let _ = f.write_all(&buf[..n]).await;
                    }
                    if show {
                        let _ = err.write_all(&buf[..n]).await;
                        let _ = err.flush().await;
                    }
                }
            }
        }
        if let Some(f) = &mut log {
            let _ = f.flush().await;
        }
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
}
