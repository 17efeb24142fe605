//! The host end of the control channel (vsock port 6001): accept the
//! guest, exchange hellos, read its [`BootInfo`], push the
//! [`GuestConfig`]; then read events until the guest's `Exit`, and send
//! `Shutdown` when asked to.

use bottle_shared::channel::Channel;
use std::time::Duration;

use bottle_shared::framebuf::FrameBuf;
use bottle_shared::io::{accept_hello, linger_close, read_message, write_message, HandshakeError};
use bottle_shared::message::{BootInfo, GuestConfig, GuestMessage, HelloReply, HostMessage, Role};
use bottle_shared::transport::{BoxStream, Listener};
use bottle_shared::{FrameError, Hello};
use tokio::io::{AsyncReadExt, ReadHalf, WriteHalf};

/// Software string sent in the hello.
const SOFTWARE: &str = concat!("bottle-host/", env!("CARGO_PKG_VERSION"));

/// Room made in the receive buffer for each read.
const READ_CHUNK: usize = 16 * 1024;

/// Messages waiting for the guest to read them, at most. A guest that
/// stops reading its control channel (root can stop PID 1) fills the
/// socket; the writes then wait in their own task, never in the
/// supervision loop, and what does not fit here is refused at once.
const WRITE_QUEUE: usize = 16;

/// Of [`WRITE_QUEUE`], the room a status ask leaves free, so `Shutdown`
/// and `Exec` still fit behind a burst of `ps`.
const KEEP_FREE: usize = 4;

/// Of [`WRITE_QUEUE`], the room an `Exec` leaves free, so `Shutdown`
/// still fits behind a burst of `exec` (and of `ps`).
const SHUTDOWN_ROOM: usize = 1;

/// The control channel failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Accepting failed.
    #[error("control channel: {0}")]
    Io(#[from] std::io::Error),
    /// The guest's hello was refused or malformed.
    #[error("control channel hello: {0}")]
    Hello(#[from] HandshakeError),
    /// Framing.
    #[error("control channel: {0}")]
    Frame(#[from] FrameError),
    /// The guest has not read what was already sent (the queue is full),
    /// or the writer stopped (the channel failed).
    #[error("control channel: the guest is not reading it")]
    Stalled,
    /// The guest spoke out of turn.
    #[error("control channel: expected {expected}, got {got}")]
    Protocol {
        /// What should have come.
        expected: &'static str,
        /// What came.
        got: String,
    },
}

/// An established control session.
pub struct Session {
    /// The guest's hello.
    pub peer: Hello,
    /// What the guest said about itself.
    pub boot: BootInfo,
    rd: Reader,
    wr: WriteHalf<BoxStream>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.peer)
            .field("boot", &self.boot)
            .finish_non_exhaustive()
    }
}

/// Accept the guest on `listener`, do the hello, read `Boot`, send `config`.
pub async fn accept(listener: &Listener, config: &GuestConfig) -> Result<Session, ControlError> {
    let mut s = listener.accept().await?;
    let peer = accept_hello(&mut s, Role::Host, Channel::Control, SOFTWARE).await?;
    let max = Channel::Control.max_frame();
    let boot = match read_message::<_, GuestMessage>(&mut s, max).await? {
        Some(GuestMessage::Boot(b)) => b,
        other => {
            return Err(ControlError::Protocol {
                expected: "Boot",
                got: format!("{other:?}"),
            })
        }
    };
    write_message(&mut s, &HostMessage::Config(Box::new(config.clone())), max).await?;
    let (rd, wr) = tokio::io::split(s);
    let rd = Reader {
        rd,
        buf: FrameBuf::new(max),
    };
    Ok(Session { peer, boot, rd, wr })
}

/// Refuse a further connection to the control port once the guest's
/// session exists: read its hello (briefly), answer `Refused`, and close
/// cleanly, so nothing waits in the listen backlog.
pub async fn refuse(mut s: BoxStream) {
    let max = Channel::Control.max_frame();
    let hello = tokio::time::timeout(
        Duration::from_secs(1),
        read_message::<_, Hello>(&mut s, max),
    )
    .await;
    if matches!(hello, Ok(Ok(Some(_)))) {
        let reply = HelloReply::Refused {
            reason: "the control channel is already in use".into(),
        };
        let _ = write_message(&mut s, &reply, max).await;
    }
    linger_close(&mut s).await;
}

/// The guest's messages, buffered: what has been read stays in `buf`
/// until a whole frame is there, so dropping a [`Reader::next`] future
/// (another branch of a `select!` firing) loses nothing.
struct Reader {
    rd: ReadHalf<BoxStream>,
    buf: FrameBuf,
}

impl Reader {
    async fn next(&mut self) -> Result<Option<GuestMessage>, ControlError> {
        loop {
            if let Some(msg) = self.buf.next_message()? {
                return Ok(Some(msg));
            }
            // `read_buf` is cancel-safe: cancelled, it has read nothing.
            let n = self.rd.read_buf(self.buf.spare(READ_CHUNK)).await?;
            if n == 0 {
                self.buf.finish()?;
                return Ok(None);
            }
        }
    }
}

impl Session {
    /// The next message; `None` when the guest closed the channel.
    /// Cancel-safe: a frame partly read when the future is dropped is
    /// kept for the next call.
    pub async fn next(&mut self) -> Result<Option<GuestMessage>, ControlError> {
        self.rd.next().await
    }

    /// Split into an event reader and a shutdown sender, so events can be
    /// read in one task while the other asks for a shutdown. The writes
    /// go out from a task of their own ([`WRITE_QUEUE`]); it ends when
    /// the [`Shutdown`] is dropped and its queue is written, or the
    /// channel fails.
    pub fn split(self) -> (Events, Shutdown) {
        let (tx, rx) = tokio::sync::mpsc::channel(WRITE_QUEUE);
        drop(tokio::spawn(write_queued(self.wr, rx)));
        (Events { rd: self.rd }, Shutdown { tx })
    }
}

/// Write the queued messages to the guest, in order.
async fn write_queued(
    mut wr: WriteHalf<BoxStream>,
    mut rx: tokio::sync::mpsc::Receiver<HostMessage>,
) {
    while let Some(msg) = rx.recv().await {
        if let Err(e) = write_message(&mut wr, &msg, Channel::Control.max_frame()).await {
            tracing::debug!("control channel: write failed: {e}");
            return;
        }
    }
}

/// The reading half of a [`Session`].
pub struct Events {
    rd: Reader,
}

impl Events {
    /// The next message; `None` when the guest closed the channel.
    /// Cancel-safe, so it may be a branch of a `select!` loop: a frame
    /// partly read when the future is dropped is kept for the next call.
    pub async fn next(&mut self) -> Result<Option<GuestMessage>, ControlError> {
        self.rd.next().await
    }
}

/// The writing half of a [`Session`]: messages queued for its writer
/// task. Nothing here waits for the guest: a message that does not fit
/// is refused ([`ControlError::Stalled`]), and the caller's own deadline
/// (a stop's grace period, a status ask's) covers what the guest never
/// got.
pub struct Shutdown {
    tx: tokio::sync::mpsc::Sender<HostMessage>,
}

impl Shutdown {
    /// Ask the guest to stop its agent (SIGTERM, SIGKILL after `grace_ms`)
    /// and power off.
    pub fn send(&mut self, grace_ms: u64) -> Result<(), ControlError> {
        self.queue(HostMessage::Shutdown { grace_ms })
    }

    /// Ask the guest to run a process beside the agent (`exec`). Leaves
    /// [`SHUTDOWN_ROOM`] of the queue for a stop.
    pub fn exec(&mut self, spec: bottle_shared::message::ExecSpec) -> Result<(), ControlError> {
        if self.tx.capacity() <= SHUTDOWN_ROOM {
            return Err(ControlError::Stalled);
        }
        self.queue(HostMessage::Exec(Box::new(spec)))
    }

    /// Ask for the guest's status; it comes back as a
    /// [`GuestMessage::Status`] event. Leaves [`KEEP_FREE`] of the queue
    /// for the other messages.
    pub fn ask_status(&mut self) -> Result<(), ControlError> {
        if self.tx.capacity() <= KEEP_FREE {
            return Err(ControlError::Stalled);
        }
        self.queue(HostMessage::Status)
    }

    fn queue(&self, msg: HostMessage) -> Result<(), ControlError> {
        self.tx.try_send(msg).map_err(|_| ControlError::Stalled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bottle_shared::io::dial_hello;
    use bottle_shared::transport::connect;
    use bottle_shared::Address;

    /// A burst of `exec` and status asks leaves room for a stop.
    #[test]
    fn a_stop_fits_behind_a_burst_of_exec_and_status() {
        let (tx, _rx) = tokio::sync::mpsc::channel(WRITE_QUEUE);
        let mut s = Shutdown { tx };
        let mut asked = 0;
        while s.ask_status().is_ok() {
            asked += 1;
        }
        assert_eq!(asked, WRITE_QUEUE - KEEP_FREE);
        let mut execs = 0;
        while s.exec(bottle_shared::message::ExecSpec::default()).is_ok() {
            execs += 1;
        }
        assert_eq!(execs, KEEP_FREE - SHUTDOWN_ROOM);
        s.send(1_000).expect("the stop did not fit");
        assert!(matches!(s.send(1_000), Err(ControlError::Stalled)));
    }

    #[tokio::test]
    async fn full_session_with_a_fake_guest() {
        let dir = tempfile::tempdir().unwrap();
        let addr = Address::Unix(dir.path().join("c"));
        let listener = Listener::bind(&addr).await.unwrap();
        let guest = tokio::spawn(async move {
            let mut s = connect(&addr).await.unwrap();
            dial_hello(&mut s, Role::Guest, Channel::Control, "fake-guest")
                .await
                .unwrap();
            let max = Channel::Control.max_frame();
            let boot = GuestMessage::Boot(BootInfo {
                software: "fake".into(),
                init_ms: 7,
                kernel: "6.1".into(),
            });
            write_message(&mut s, &boot, max).await.unwrap();
            let cfg: Option<HostMessage> = read_message(&mut s, max).await.unwrap();
            let Some(HostMessage::Config(cfg)) = cfg else {
                panic!("no config")
            };
            assert_eq!(cfg.hostname, "h");
            write_message(&mut s, &GuestMessage::Exit { code: 3 }, max)
                .await
                .unwrap();
            let sd: Option<HostMessage> = read_message(&mut s, max).await.unwrap();
            assert_eq!(sd, Some(HostMessage::Shutdown { grace_ms: 5 }));
        });
        let cfg = GuestConfig {
            hostname: "h".into(),
            ..Default::default()
        };
        let mut sess = accept(&listener, &cfg).await.unwrap();
        assert_eq!(sess.boot.init_ms, 7);
        assert_eq!(
            sess.next().await.unwrap(),
            Some(GuestMessage::Exit { code: 3 })
        );
        let (mut ev, mut sd) = sess.split();
        sd.send(5).unwrap();
        guest.await.unwrap();
        assert_eq!(ev.next().await.unwrap(), None);
    }

    /// `Events::next` dropped while a frame is half read (a `select!`
    /// whose other branch fired) loses nothing: the next call returns the
    /// whole message, and the ones after it.
    #[tokio::test]
    async fn a_frame_read_across_a_cancelled_next_is_kept() {
        use bottle_shared::frame::encode_message;
        use bottle_shared::message::ProcessEvent;
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        let addr = Address::Unix(dir.path().join("c"));
        let listener = Listener::bind(&addr).await.unwrap();
        let (half_tx, half_rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let ev = GuestMessage::Process(ProcessEvent::Started {
            pid: 42,
            attempt: 0,
        });
        let sent = ev.clone();
        let guest = tokio::spawn(async move {
            let mut s = connect(&addr).await.unwrap();
            dial_hello(&mut s, Role::Guest, Channel::Control, "fake-guest")
                .await
                .unwrap();
            let max = Channel::Control.max_frame();
            let boot = GuestMessage::Boot(BootInfo::default());
            write_message(&mut s, &boot, max).await.unwrap();
            let _cfg: Option<HostMessage> = read_message(&mut s, max).await.unwrap();
            let frame = encode_message(&sent, max).unwrap();
            // The header and a byte of the payload, then the rest later.
            s.write_all(&frame[..5]).await.unwrap();
            s.flush().await.unwrap();
            let _ = half_tx.send(());
            let _ = go_rx.await;
            s.write_all(&frame[5..]).await.unwrap();
            write_message(&mut s, &GuestMessage::Exit { code: 7 }, max)
                .await
                .unwrap();
        });
        let limit = Duration::from_secs(10);
        let sess = tokio::time::timeout(limit, accept(&listener, &GuestConfig::default()))
            .await
            .unwrap()
            .unwrap();
        let (mut events, _shutdown) = sess.split();
        tokio::time::timeout(limit, half_rx).await.unwrap().unwrap();
        // `next` reads the partial frame, then is dropped.
        let r = tokio::time::timeout(Duration::from_millis(200), events.next()).await;
        assert!(r.is_err(), "a half frame made a message: {r:?}");
        go_tx.send(()).unwrap();
        let got = tokio::time::timeout(limit, events.next()).await.unwrap();
        assert_eq!(got.unwrap(), Some(ev));
        let got = tokio::time::timeout(limit, events.next()).await.unwrap();
        assert_eq!(got.unwrap(), Some(GuestMessage::Exit { code: 7 }));
        tokio::time::timeout(limit, guest).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_second_connection_is_refused_not_left_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let addr = Address::Unix(dir.path().join("c"));
        let listener = Listener::bind(&addr).await.unwrap();
        let second = tokio::spawn(async move {
            let mut s = connect(&addr).await.unwrap();
            dial_hello(&mut s, Role::Guest, Channel::Control, "intruder").await
        });
        let s = listener.accept().await.unwrap();
        refuse(s).await;
        let r = tokio::time::timeout(Duration::from_secs(2), second)
            .await
            .expect("the second connection was left waiting")
            .unwrap();
        let e = r.unwrap_err().to_string();
        assert!(e.contains("already in use"), "{e}");
    }

    #[tokio::test]
    async fn a_guest_that_skips_boot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let addr = Address::Unix(dir.path().join("c"));
        let listener = Listener::bind(&addr).await.unwrap();
        let guest = tokio::spawn(async move {
            let mut s = connect(&addr).await.unwrap();
            dial_hello(&mut s, Role::Guest, Channel::Control, "g")
                .await
                .unwrap();
            let max = Channel::Control.max_frame();
            write_message(&mut s, &GuestMessage::Exit { code: 0 }, max)
                .await
                .unwrap();
        });
        let e = accept(&listener, &GuestConfig::default())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("expected Boot"), "{e}");
        guest.await.unwrap();
    }
}
