//! The host end of the agent's session channel (port 6004): the agent's
//! standard output and error to ours, separately; our standard input (or
//! typed keys) to the agent; window size changes.
//!
//! Memory is bounded on both directions: output is written to our stdout
//! before the next frame is read (a slow reader of `launch`'s output
//! slows the agent, never grows a buffer), and input is read from our
//! stdin in 32 KiB chunks through a queue of four.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bottle_shared::channel::Channel;
use bottle_shared::io::{accept_hello, linger_close, read_message, write_message};
use bottle_shared::message::{SessionInput, SessionOutput, SESSION_CHUNK};
use bottle_shared::transport::BoxStream;
use bottle_shared::Role;
use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::terminal::{self, Escape, Typed};

const SOFTWARE: &str = concat!("bottle-host ", env!("CARGO_PKG_VERSION"));

/// How long the guest has to say which session a connection carries.
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(5);

/// How the session is wired on this side.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wiring {
    /// The guest has a terminal.
    pub tty: bool,
    /// Our standard input goes to the agent.
    pub stdin: bool,
    /// Our terminal is in raw mode (`-it`): Ctrl-C and friends are bytes
    /// for the guest, and the escape sequence stops the bottle.
    pub raw: bool,
}

/// Accept the guest's session: hello, then `Attach` for session 0. A
/// connection that is not one is closed without leaving its peer hanging.
pub async fn accept(mut s: BoxStream) -> Result<BoxStream> {
    match attach(&mut s).await {
        Ok(()) => Ok(s),
        Err(e) => {
            linger_close(&mut s).await;
            Err(e)
        }
    }
}

/// Drop a session connection beyond the first (only the init's exists).
pub async fn refuse(mut s: BoxStream) {
    linger_close(&mut s).await;
}

async fn attach(s: &mut BoxStream) -> Result<()> {
    let max = Channel::Session.max_frame();
    accept_hello(s, Role::Host, Channel::Session, SOFTWARE)
        .await
        .context("session hello")?;
    let first = tokio::time::timeout(ATTACH_TIMEOUT, read_message::<_, SessionOutput>(s, max))
        .await
        .context("no attach on the session channel")?
        .context("session channel")?;
    match first {
        Some(SessionOutput::Attach { session: 0 }) => Ok(()),
        other => bail!("the session channel began with {other:?}, not the agent's attach"),
    }
}

/// Run the session until the guest's output is done. `stop` is notified
/// when the user types the escape sequence.
pub fn spawn(s: BoxStream, wiring: Wiring, stop: Arc<Notify>) -> JoinHandle<()> {
    let (rd, wr) = tokio::io::split(s);
    let input = tokio::spawn(input(wr, wiring, stop));
    tokio::spawn(async move {
        output(rd).await;
        input.abort();
    })
}

async fn output(mut rd: ReadHalf<BoxStream>) {
    let max = Channel::Session.max_frame();
    let mut out = tokio::io::stdout();
    let mut err = tokio::io::stderr();
    loop {
        match read_message::<_, SessionOutput>(&mut rd, max).await {
            Ok(Some(SessionOutput::Stdout(b))) => put(&mut out, &b).await,
            Ok(Some(SessionOutput::Stderr(b))) => put(&mut err, &b).await,
            Ok(Some(SessionOutput::Done)) | Ok(None) => break,
            Ok(Some(other)) => tracing::debug!(?other, "session: ignored"),
            Err(e) => {
                terminal::notice(&format!("bottle: session channel: {e}"));
                break;
            }
        }
    }
}

async fn put(w: &mut (impl AsyncWrite + Unpin), b: &[u8]) {
    // Whoever reads our output going away must not stop the agent.
    let _ = w.write_all(b).await;
    let _ = w.flush().await;
}

/// Our standard input, read on a thread of its own (a blocking read of a
/// terminal or pipe cannot be cancelled; the thread ends with the
/// process), in chunks through a bounded queue.
fn stdin_chunks() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut buf = vec![0u8; SESSION_CHUNK];
            let mut stdin = std::io::stdin().lock();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                }
            }
        })
        .map(|_| ())
        .unwrap_or_else(|e| tracing::warn!(error = %e, "cannot read standard input"));
    rx
}

async fn input(mut wr: WriteHalf<BoxStream>, wiring: Wiring, stop: Arc<Notify>) {
    let max = Channel::Session.max_frame();
    let mut chunks = if wiring.stdin {
        Some(stdin_chunks())
    } else {
        None
    };
    let mut winch = if wiring.tty {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok()
    } else {
        None
    };
    let mut escape = Escape::default();
    loop {
        let msg = tokio::select! {
            c = async { chunks.as_mut()?.recv().await }, if chunks.is_some() => match c {
                Some(b) if wiring.raw => match escape.feed(&b) {
                    Typed::Send(b) => SessionInput::Stdin(b),
                    Typed::Stop(b) => {
                        let _ = write_message(&mut wr, &SessionInput::Stdin(b), max).await;
                        terminal::notice("bottle: escape sequence; stopping the bottle");
                        stop.notify_one();
                        chunks = None;
                        continue;
                    }
                },
                Some(b) => SessionInput::Stdin(b),
                None => {
                    chunks = None;
                    SessionInput::StdinEof
                }
            },
            w = async { winch.as_mut()?.recv().await }, if winch.is_some() => match (w, terminal::size()) {
                (Some(()), Some((rows, cols))) => SessionInput::Resize { rows, cols },
                (Some(()), None) => continue,
                (None, _) => {
                    winch = None;
                    continue;
                }
            },
            else => std::future::pending().await,
        };
        if let SessionInput::Stdin(b) = &msg {
            if b.is_empty() {
                continue;
            }
        }
        if write_message(&mut wr, &msg, max).await.is_err() {
            return;
        }
    }
}
