//! How a log a guest can write to is capped: kept up to a limit, then one
//! notice, then nothing more (the writer is still read, so it never
//! blocks). One count for every such log: `agent.log` and `console.log`
//! (`launch::session`, `launch::console`), the background launch's log
//! (`launch::caplog`, on a thread of its own), and QEMU's and the daemons'
//! logs (`vmm::daemon_log`); [`CappedLog`] writes the async ones.

use tokio::io::AsyncWriteExt;

/// Most bytes kept of `agent.log`, `console.log` and the launch log.
pub const LOG_LIMIT: u64 = 64 << 20;

/// What a capped log has kept so far.
#[derive(Debug)]
pub struct Cap {
    what: String,
    limit: u64,
    kept: u64,
    full: bool,
}

/// What to do with bytes offered to a [`Cap`].
#[derive(Debug, PartialEq, Eq)]
pub struct Admit {
    /// How many of them to write (a prefix).
    pub take: usize,
    /// The notice to write after them: the cap was reached just now.
    pub notice: Option<String>,
}

impl Cap {
    /// A log named `what` in its notice, kept up to `limit` bytes.
    pub fn new(what: impl Into<String>, limit: u64) -> Cap {
        Cap {
            what: what.into(),
            limit,
            kept: 0,
            full: false,
        }
    }

    /// `n` more bytes came: how many of them to keep.
    pub fn offer(&mut self, n: usize) -> Admit {
        if self.full {
            return Admit {
                take: 0,
                notice: None,
            };
        }
        let room = usize::try_from(self.limit - self.kept).unwrap_or(usize::MAX);
        let take = n.min(room);
        self.kept += take as u64;
        let notice = (take < n).then(|| {
            self.full = true;
            let size = if self.limit >= 1 << 20 && self.limit.is_multiple_of(1 << 20) {
                format!("{} MiB", self.limit >> 20)
            } else {
                format!("{} bytes", self.limit)
            };
            format!(
                "\n[bot-bottle: {} is full ({size}); the rest is not kept]\n",
                self.what
            )
        });
        Admit { take, notice }
    }

    /// The log cannot be written (a full disk): keep nothing more.
    pub fn stop(&mut self) {
        self.full = true;
    }

    /// Bytes admitted so far: all written, unless a write failed (after
    /// which [`Cap::stop`] admits nothing more).
    pub fn kept(&self) -> u64 {
        self.kept
    }
}

/// An async log file written through a [`Cap`]: after the notice, or a
/// failed write (a full disk), it keeps nothing more.
#[derive(Debug)]
pub struct CappedLog {
    file: Option<tokio::fs::File>,
    cap: Cap,
}

impl CappedLog {
    /// Append to `file` (none: keep nothing) up to `limit` bytes; `what`
    /// names it in the notice.
    pub fn new(file: Option<std::fs::File>, what: impl Into<String>, limit: u64) -> CappedLog {
        CappedLog {
            file: file.map(tokio::fs::File::from_std),
            cap: Cap::new(what, limit),
        }
    }

    /// Append `b`, unless the limit is reached.
    pub async fn put(&mut self, b: &[u8]) {
        let Some(f) = &mut self.file else { return };
        let admit = self.cap.offer(b.len());
        if f.write_all(&b[..admit.take]).await.is_err() {
            self.file = None;
            return;
        }
        if let Some(notice) = admit.notice {
            let _ = f.write_all(notice.as_bytes()).await;
            let _ = f.flush().await;
            self.file = None;
        }
    }

    /// Write out what is buffered.
    pub async fn flush(&mut self) {
        if let Some(f) = &mut self.file {
            let _ = f.flush().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_prefix_up_to_the_limit_then_one_notice_then_nothing() {
        let mut c = Cap::new("x.log", 10);
        assert_eq!(c.offer(4).take, 4);
        let a = c.offer(8);
        assert_eq!(a.take, 6);
        assert_eq!(
            a.notice.as_deref(),
            Some("\n[bot-bottle: x.log is full (10 bytes); the rest is not kept]\n")
        );
        assert_eq!(
            c.offer(5),
            Admit {
                take: 0,
                notice: None
            }
        );
        assert_eq!(c.kept(), 10);
        let mut m = Cap::new("agent.log", LOG_LIMIT);
        assert!(m.offer(usize::MAX).notice.unwrap().contains("(64 MiB)"));
    }

    /// Chunks that are no whole fraction of the limit: the log ends at the
    /// limit exactly (the crossing chunk cut), then one notice, and
    /// nothing after it however much more comes.
    #[tokio::test]
    async fn a_capped_log_fills_to_its_limit_exactly_then_one_notice() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("agent.log");
        let file = crate::hardening::create_private(&path).unwrap();
        let mut log = CappedLog::new(Some(file), "agent.log", LOG_LIMIT);
        let chunk = vec![b'y'; 1_000_003];
        for _ in 0..(LOG_LIMIT / chunk.len() as u64 + 3) {
            log.put(&chunk).await;
        }
        log.put(b"").await;
        log.flush().await;
        let text = std::fs::read(&path).unwrap();
        let notice = "\n[bot-bottle: agent.log is full (64 MiB); the rest is not kept]\n";
        assert_eq!(text.len() as u64, LOG_LIMIT + notice.len() as u64);
        assert!(text[..LOG_LIMIT as usize].iter().all(|&b| b == b'y'));
        assert_eq!(&text[LOG_LIMIT as usize..], notice.as_bytes());
    }
}
