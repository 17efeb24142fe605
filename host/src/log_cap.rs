//! How a log a guest can write to is capped: kept up to a limit, then one
//! notice, then nothing more (the writer is still read, so it never
//! blocks). One count for every such log: `agent.log` and `console.log`
//! (`launch::session`), the background launch's log (`launch::caplog`),
//! and QEMU's and the daemons' logs (`vmm::daemon_log`).

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
}
