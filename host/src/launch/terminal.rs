//! The host terminal during `launch -it`: raw mode for the session,
//! restored on every way out (normal return, error, a panic), the
//! window size, and the escape sequence that stops the bottle.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

/// Ctrl-]: the escape byte. `Ctrl-]` then `q` (or `.`) stops the bottle;
/// `Ctrl-]` twice sends one `Ctrl-]` to the guest.
pub const ESCAPE: u8 = 0x1d;

static RAW: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

/// Raw mode on the host terminal for as long as this lives.
#[derive(Debug)]
pub struct RawMode(());

impl RawMode {
    /// Put the terminal on standard input in raw mode.
    pub fn enter() -> std::io::Result<RawMode> {
        HOOK.call_once(|| {
            let prev = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                prev(info);
            }));
        });
        crossterm::terminal::enable_raw_mode()?;
        RAW.store(true, Ordering::SeqCst);
        Ok(RawMode(()))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

fn restore() {
    if RAW.swap(false, Ordering::SeqCst) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Print a line of `launch`'s own on standard error; in raw mode the line
/// ends with CR LF, since the terminal no longer adds the CR.
pub fn notice(msg: &str) {
    let end = if RAW.load(Ordering::SeqCst) {
        "\r\n"
    } else {
        "\n"
    };
    let mut e = std::io::stderr().lock();
    let _ = write!(e, "{msg}{end}");
    let _ = e.flush();
}

/// The size of the terminal on standard input or output, as (rows, cols).
pub fn size() -> Option<(u16, u16)> {
    if !std::io::stdin().is_terminal() && !std::io::stdout().is_terminal() {
        return None;
    }
    crossterm::terminal::size()
        .ok()
        .map(|(cols, rows)| (rows, cols))
}

/// The escape sequence filter on typed input.
#[derive(Debug, Default)]
pub struct Escape {
    pending: bool,
}

/// What typed input means.
#[derive(Debug, PartialEq, Eq)]
pub enum Typed {
    /// Bytes for the guest.
    Send(Vec<u8>),
    /// The bytes before the escape, then stop the bottle.
    Stop(Vec<u8>),
}

impl Escape {
    /// Filter one chunk of typed bytes.
    pub fn feed(&mut self, input: &[u8]) -> Typed {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.pending {
                self.pending = false;
                match b {
                    b'q' | b'.' => return Typed::Stop(out),
                    ESCAPE => out.push(ESCAPE),
                    other => {
                        out.push(ESCAPE);
                        out.push(other);
                    }
                }
            } else if b == ESCAPE {
                self.pending = true;
            } else {
                out.push(b);
            }
        }
        Typed::Send(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_then_q_stops_and_keeps_what_came_before() {
        let mut e = Escape::default();
        assert_eq!(e.feed(b"ls\r\x1dq rest"), Typed::Stop(b"ls\r".to_vec()));
        let mut e = Escape::default();
        assert_eq!(e.feed(b"\x1d"), Typed::Send(vec![]));
        assert_eq!(e.feed(b"."), Typed::Stop(vec![]));
    }

    #[test]
    fn escape_twice_sends_one_and_other_bytes_pass() {
        let mut e = Escape::default();
        assert_eq!(e.feed(b"a\x1d\x1db"), Typed::Send(b"a\x1db".to_vec()));
        assert_eq!(e.feed(b"\x1dx"), Typed::Send(b"\x1dx".to_vec()));
        assert_eq!(
            e.feed(b"\x03\x1a\x1c"),
            Typed::Send(b"\x03\x1a\x1c".to_vec())
        );
    }
}
