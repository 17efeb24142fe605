//! Our side of a session's input: standard input (or typed keys) to the
//! guest, window size changes, and the escape sequence (raw mode:
//! Ctrl-] q), which stops the bottle (`launch -it`) or hangs the process
//! up (`exec -it`).
//!
//! In raw mode the terminal is read on while a write to the guest is
//! pending, so a guest that does not read its input (a stuck agent, or
//! one that means to) cannot keep the escape sequence from being seen.
//! What is typed meanwhile waits here in order, up to [`MAX_AHEAD`]
//! bytes; beyond that it is dropped (as a terminal's own input buffer
//! drops what overflows it), since the guest can make the terminal type
//! (its answers to queries such as `ESC [ 6 n`). Piped input is not read
//! ahead: a large file waits for the guest (back-pressure), as before.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bottle_shared::channel::Channel;
use bottle_shared::io::write_message;
use bottle_shared::message::SessionInput;
use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, Notify};

use super::session::Wiring;
use super::terminal::{self, Escape, Typed};

/// After the escape sequence, how long what is still to go (what was
/// typed before it, the hang-up) may take to reach the guest.
pub const ESCAPE_FLUSH: Duration = Duration::from_secs(2);

/// In raw mode, how much of what is typed while the guest reads nothing
/// is kept for it, bytes.
pub const MAX_AHEAD: usize = 1 << 20;

/// What was read, turned into messages for the guest, in order.
#[derive(Default)]
struct Typing {
    escape: Escape,
    queue: VecDeque<SessionInput>,
    /// Bytes of standard input in `queue`.
    queued: usize,
    /// Typed input was dropped (at [`MAX_AHEAD`]) and the owner told.
    dropped: bool,
    /// The escape sequence was typed: nothing after it is read.
    escaped: bool,
}

impl Typing {
    /// A chunk of input (`None`: its end).
    fn take(&mut self, chunk: Option<Vec<u8>>, raw: bool) {
        match chunk {
            Some(b) if raw => match self.escape.feed(&b) {
                Typed::Send(b) => self.push(b),
                Typed::Stop(b) => {
                    self.push(b);
                    self.escaped = true;
                }
            },
            Some(b) => self.push(b),
            None => self.queue.push_back(SessionInput::StdinEof),
        }
    }

    fn push(&mut self, b: Vec<u8>) {
        if b.is_empty() {
            return;
        }
        // Only what is read ahead counts: the first chunk waits for no one.
        if !self.queue.is_empty() && self.queued + b.len() > MAX_AHEAD {
            if !self.dropped {
                self.dropped = true;
                terminal::notice("bottle: the bottle is not reading its input; typing dropped");
            }
            return;
        }
        self.queued += b.len();
        self.queue.push_back(SessionInput::Stdin(b));
    }

    /// The next message for the guest.
    fn pop(&mut self) -> Option<SessionInput> {
        let m = self.queue.pop_front()?;
        if let SessionInput::Stdin(b) = &m {
            self.queued -= b.len();
        }
        if self.queue.is_empty() {
            self.dropped = false; // a later overflow is told again
        }
        Some(m)
    }
}

/// Take the next chunk (if any are still coming) into `t`; `stop` is
/// notified, once, as soon as the escape sequence is seen.
fn took(
    t: &mut Typing,
    c: Option<Vec<u8>>,
    chunks: &mut Option<mpsc::Receiver<Vec<u8>>>,
    wiring: &Wiring,
    stop: &Notify,
) {
    if c.is_none() {
        *chunks = None;
    }
    let before = t.escaped;
    t.take(c, wiring.raw);
    if t.escaped && !before {
        *chunks = None;
        if wiring.hangup_on_escape {
            terminal::notice("bottle: escape sequence; hanging up");
        } else {
            terminal::notice("bottle: escape sequence; stopping the bottle");
        }
        stop.notify_one();
    }
}

async fn next_chunk(chunks: &mut Option<mpsc::Receiver<Vec<u8>>>) -> Option<Vec<u8>> {
    match chunks {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Feed the guest through `wr` from `chunks` (our standard input, if it
/// goes to the guest) and window size changes, until the input ends, the
/// escape sequence is typed, or the guest goes away.
pub(super) async fn run<W: AsyncWrite + Unpin>(
    mut wr: W,
    wiring: Wiring,
    stop: Arc<Notify>,
    mut chunks: Option<mpsc::Receiver<Vec<u8>>>,
) {
    let max = Channel::Session.max_frame();
    let mut winch = if wiring.tty {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok()
    } else {
        None
    };
    let mut t = Typing::default();
    while !t.escaped {
        let msg = match t.pop() {
            Some(m) => m,
            None => tokio::select! {
                c = next_chunk(&mut chunks), if chunks.is_some() => {
                    took(&mut t, c, &mut chunks, &wiring, &stop);
                    continue;
                }
                w = async { winch.as_mut()?.recv().await }, if winch.is_some() => match (w, terminal::size()) {
                    (Some(()), Some((rows, cols))) => SessionInput::Resize { rows, cols },
                    (Some(()), None) => continue,
                    (None, _) => {
                        winch = None;
                        continue;
                    }
                },
                else => std::future::pending().await,
            },
        };
        // The write, while (raw mode) the terminal is still read.
        let write = write_message(&mut wr, &msg, max);
        tokio::pin!(write);
        let written = loop {
            tokio::select! {
                r = &mut write => break r.is_ok(),
                c = next_chunk(&mut chunks), if wiring.raw && chunks.is_some() => {
                    took(&mut t, c, &mut chunks, &wiring, &stop);
                    if t.escaped {
                        // Whatever the guest does with this write, the
                        // rest is bounded by the flush below.
                        break tokio::time::timeout(ESCAPE_FLUSH, &mut write)
                            .await
                            .is_ok_and(|r| r.is_ok());
                    }
                }
            }
        };
        if !written {
            return;
        }
    }
    // The escape sequence: what was typed before it, then (exec) the
    // hang-up, if the guest takes them in time.
    let flush = async {
        while let Some(m) = t.pop() {
            write_message(&mut wr, &m, max).await?;
        }
        if wiring.hangup_on_escape {
            write_message(&mut wr, &SessionInput::Hangup, max).await?;
        }
        Ok::<(), bottle_shared::FrameError>(())
    };
    let _ = tokio::time::timeout(ESCAPE_FLUSH, flush).await;
}

#[cfg(test)]
#[path = "session_input_tests.rs"]
mod tests;
