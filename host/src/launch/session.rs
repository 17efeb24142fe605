//! The host end of the agent's session channel (port 6004): the agent's
//! standard output and error to ours, separately; our standard input (or
//! typed keys) to the agent; window size changes.
//!
//! Memory is bounded on both directions: output is written to our stdout
//! before the next frame is read (a slow reader of `launch`'s output
//! slows the agent, never grows a buffer), and input is read from our
//! stdin in 256 KiB chunks through a queue of four (what is done with it:
//! `session_input.rs`).

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bottle_shared::channel::Channel;
use bottle_shared::io::{accept_hello, linger_close, read_message};
use bottle_shared::message::{ExecSpec, SessionOutput, SESSION_CHUNK};
use bottle_shared::transport::BoxStream;
use bottle_shared::Role;
use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use super::terminal;
use crate::log_cap::CappedLog;

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
    /// The escape sequence ends this session (`exec`: the process is hung
    /// up) instead of stopping the bottle.
    pub hangup_on_escape: bool,
}

/// Session connections whose hello and attach are read at once; more
/// wait for a slot (anything beyond is dropped).
pub const MAX_ATTACHING: usize = 8;
/// How long an `exec` waits for the guest's session.
pub const EXEC_ATTACH_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept a guest session: hello, then `Attach`; returns its id. A
/// connection that is not one is closed without leaving its peer hanging.
pub async fn accept(mut s: BoxStream) -> Result<(u32, BoxStream)> {
    match attach(&mut s).await {
        Ok(id) => Ok((id, s)),
        Err(e) => {
            linger_close(&mut s).await;
            Err(e)
        }
    }
}

/// `exec`s waiting for the guest to attach their session.
#[derive(Default)]
pub struct Execs {
    waiting: std::collections::HashMap<u32, oneshot::Sender<BoxStream>>,
}

impl Execs {
    /// Give `spec` a fresh random session id (never 0, never one in use)
    /// and remember who waits for it.
    pub fn expect(&mut self, mut spec: ExecSpec, reply: oneshot::Sender<BoxStream>) -> ExecSpec {
        self.waiting.retain(|_, w| !w.is_closed());
        let mut id = super::lifecycle::random_u32();
        while id == 0 || self.waiting.contains_key(&id) {
            id = super::lifecycle::random_u32();
        }
        spec.session = id;
        self.waiting.insert(id, reply);
        spec
    }

    /// The guest attached session `id`: hand it to its `exec`, or drop it
    /// (an id nobody waits for: a guess by the agent).
    pub fn attach(&mut self, id: u32, s: BoxStream) {
        match self.waiting.remove(&id) {
            Some(w) => {
                if let Err(s) = w.send(s) {
                    drop(tokio::spawn(refuse(s)));
                }
            }
            None => {
                tracing::warn!(id, "a session nobody asked for; dropped");
                drop(tokio::spawn(refuse(s)));
            }
        }
    }
}

/// Drop a session connection beyond the first (only the init's exists).
pub async fn refuse(mut s: BoxStream) {
    linger_close(&mut s).await;
}

async fn attach(s: &mut BoxStream) -> Result<u32> {
    let max = Channel::Session.max_frame();
    accept_hello(s, Role::Host, Channel::Session, SOFTWARE)
        .await
        .context("session hello")?;
    let first = tokio::time::timeout(ATTACH_TIMEOUT, read_message::<_, SessionOutput>(s, max))
        .await
        .context("no attach on the session channel")?
        .context("session channel")?;
    match first {
        Some(SessionOutput::Attach { session }) => Ok(session),
        other => bail!("the session channel began with {other:?}, not an attach"),
    }
}

/// Run the session until the guest's output is done. `stop` is notified
/// when the user types the escape sequence.
/// The agent's output is also appended to `log` (for `bottle-host logs`),
/// up to [`LOG_LIMIT`] bytes.
pub fn spawn(
    s: BoxStream,
    wiring: Wiring,
    stop: Arc<Notify>,
    log: Option<std::fs::File>,
) -> JoinHandle<Option<i32>> {
    let (rd, wr) = tokio::io::split(s);
    let chunks = wiring.stdin.then(stdin_chunks);
    let input = tokio::spawn(super::session_input::run(wr, wiring, stop, chunks));
    tokio::spawn(async move {
        let code = output(rd, log).await;
        input.abort();
        code
    })
}

/// Most bytes of agent output kept in a bottle's `agent.log`.
pub const LOG_LIMIT: u64 = crate::log_cap::LOG_LIMIT;

/// Copy the session's output to ours until `Done`; an exec'd process's
/// exit code, if one came.
async fn output(mut rd: ReadHalf<BoxStream>, log: Option<std::fs::File>) -> Option<i32> {
    let mut code = None;
    let max = Channel::Session.max_frame();
    let mut out = tokio::io::stdout();
    let mut err = tokio::io::stderr();
    let mut log = CappedLog::new(log, "agent.log", LOG_LIMIT);
    loop {
        match read_message::<_, SessionOutput>(&mut rd, max).await {
            Ok(Some(SessionOutput::Stdout(b))) => {
                log.put(&b).await;
                put(&mut out, &b).await
            }
            Ok(Some(SessionOutput::Stderr(b))) => {
                log.put(&b).await;
                put(&mut err, &b).await
            }
            Ok(Some(SessionOutput::Exit { code: c })) => code = Some(c),
            Ok(Some(SessionOutput::Done)) | Ok(None) => {
                log.flush().await;
                break;
            }
            Ok(Some(other)) => tracing::debug!(?other, "session: ignored"),
            Err(e) => {
                terminal::notice(&format!("bottle: session channel: {e}"));
                break;
            }
        }
    }
    code
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
