//! The agent's standard streams over the session channel (port 6004).
//!
//! The init dials the host's session channel before the agent starts and
//! gives the agent either three pipes or one pseudo-terminal (`openpty`,
//! initial size from the config; the agent becomes its session leader
//! with it as controlling terminal, in `sys::real`). The init keeps the
//! agent's ends open for restarts and closes them when supervision is
//! over; then the output is drained, `Done` is sent, and only after that
//! does the control channel report the exit code, so the host never
//! returns before the agent's last byte.
//!
//! Flow control is the stream's own: every queue here is bounded, a
//! reader stops reading while its frame waits to be sent, and input is
//! written to the agent before the next frame is read. A process that
//! does not read its input therefore stalls the host's sender (and a
//! `Resize` queued behind that input), never the guest's memory.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use bottle_shared::channel::{Channel, SESSION_PORT};
use bottle_shared::frame::{encode_message, MAX_FRAME_LEN};
use bottle_shared::io::{dial_hello, read_frame_into, write_message};
use bottle_shared::message::{decode, SessionInput, SessionOutput, SessionSpec, SESSION_CHUNK};
use bottle_shared::sessionwire::{finish_data_frame, stdin_bytes, DATA_PREFIX, STDERR, STDOUT};
use bottle_shared::transport::connect;
use bottle_shared::{Address, Role};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::sys::AgentStdio;

/// How long the session has to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the output may take to drain once the agent is done (a
/// background process that kept the agent's stdout open is cut off).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The session could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The host's session channel did not answer.
    #[error("session channel: {0}")]
    Connect(String),
    /// A pipe or terminal could not be created.
    #[error("session streams: {0}")]
    Streams(#[from] nix::Error),
}

/// An open session: what the agent gets, and the pumps.
pub struct Session {
    stdio: AgentStdio,
    readers: Vec<JoinHandle<()>>,
    writer: JoinHandle<()>,
    input: JoinHandle<()>,
    out: mpsc::Sender<Frame>,
    host_gone: Arc<tokio::sync::Notify>,
}

/// A non-blocking descriptor registered with the runtime.
type Fd = Arc<AsyncFd<OwnedFd>>;

fn cloexec(fd: &OwnedFd) -> nix::Result<()> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map(|_| ())
}

fn nonblocking(fd: OwnedFd) -> io::Result<Fd> {
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    // SAFETY: the `AsyncFd` owns the descriptor, so it stays open and the
    // same for as long as it is registered.
    let fd = unsafe { AsyncFd::register(fd) }?;
    Ok(Arc::new(fd))
}

async fn write_fd(fd: &AsyncFd<OwnedFd>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let mut g = fd.writable().await?;
        match g.try_io(|f| nix::unistd::write(f.get_ref(), buf).map_err(io::Error::from)) {
            Ok(Ok(n)) => buf = &buf[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

/// Set the terminal size of `fd` (a pty master); the kernel sends
/// SIGWINCH to the terminal's foreground process group.
fn set_winsize(fd: &impl AsRawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which is a
    // live local; the descriptor is owned by the caller.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "TIOCSWINSZ");
    }
}

/// Copy `fd` to the host as `wrap` frames until it ends. A pty master
/// reports EIO once every slave is closed: that is its end of file.
/// Pipe capacity asked for (the default 64 KiB would cut every chunk to
/// a quarter of [`SESSION_CHUNK`]); best effort.
const PIPE_BYTES: i32 = 1 << 20;

fn big_pipe(fd: &OwnedFd) {
    let _ = fcntl(fd, FcntlArg::F_SETPIPE_SZ(PIPE_BYTES));
}

/// Read into `buf`'s spare capacity (no zeroing: under TCG every pass
/// over a chunk counts); returns the bytes read.
fn read_spare(fd: &OwnedFd, buf: &mut Vec<u8>) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: read(2) writes at most `spare.len()` bytes into the vector's
    // own allocation, past its initialised length.
    let n = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel initialised exactly `n` bytes after the old length.
    unsafe { buf.set_len(buf.len() + n as usize) };
    Ok(n as usize)
}

async fn read_spare_async(fd: &AsyncFd<OwnedFd>, buf: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        let mut g = fd.readable().await?;
        match g.try_io(|f| read_spare(f.get_ref(), buf)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

/// Frame buffers handed back by the writer for reuse (no allocation, and
/// no `mmap`/`munmap` of a large one, per chunk).
type Pool = Arc<std::sync::Mutex<Vec<Vec<u8>>>>;
/// Buffers kept in a [`Pool`].
const POOL_KEEP: usize = 8;

/// Copy `fd` to the host as `variant` frames until it ends; with
/// `gather`, bytes already waiting join the frame (pipes; a terminal's
/// keystrokes go at once).
fn reader(
    fd: Fd,
    tx: mpsc::Sender<Frame>,
    variant: u8,
    gather: bool,
    pool: Pool,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            // Read straight behind room for the frame header: no copy.
            let reuse = pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut buf = reuse.unwrap_or_else(|| Vec::with_capacity(DATA_PREFIX + SESSION_CHUNK));
            buf.clear();
            buf.resize(DATA_PREFIX, 0);
            match read_spare_async(&fd, &mut buf).await {
                Ok(0) => break,
                Ok(mut n) => {
                    // Whatever else is already there joins this frame (a
                    // writer of small pieces then costs fewer frames).
                    let mut end = false;
                    while gather && n < SESSION_CHUNK {
                        match read_spare(fd.get_ref(), &mut buf) {
                            Ok(0) => {
                                end = true;
                                break;
                            }
                            Ok(k) => n += k,
                            Err(_) => break,
                        }
                    }
                    let start = finish_data_frame(&mut buf, n, variant);
                    if tx.send((buf, start)).await.is_err() || end {
                        break;
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "session: reading the agent's output");
                    break;
                }
            }
        }
    })
}

/// A frame ready to send: the bytes from the offset on.
type Frame = (Vec<u8>, usize);

fn frame_of(m: &SessionOutput) -> Frame {
    // Our own small messages always encode.
    (encode_message(m, MAX_FRAME_LEN).unwrap_or_default(), 0)
}

impl Session {
    /// Dial the host's session channel as session `id` (0: the agent)
    /// and create the process's streams.
    pub async fn open(
        host: &Address,
        id: u32,
        spec: &SessionSpec,
    ) -> Result<Session, SessionError> {
        let addr = host
            .for_port(SESSION_PORT)
            .map_err(|e| SessionError::Connect(e.to_string()))?;
        let max = Channel::Session.max_frame();
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut s = connect(&addr).await.map_err(|e| e.to_string())?;
            dial_hello(&mut s, Role::Guest, Channel::Session, &crate::software())
                .await
                .map_err(|e| e.to_string())?;
            write_message(&mut s, &SessionOutput::Attach { session: id }, max)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(s)
        })
        .await
        .map_err(|_| SessionError::Connect(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(SessionError::Connect)?;
        let (mut rd, mut wr) = tokio::io::split(stream);

        let (out, mut out_rx) = mpsc::channel::<Frame>(4);
        let pool: Pool = Arc::default();
        let back = pool.clone();
        let writer = tokio::spawn(async move {
            while let Some((f, start)) = out_rx.recv().await {
                let sent = wr.write_all(&f[start..]).await;
                if f.capacity() >= DATA_PREFIX + SESSION_CHUNK {
                    let mut p = back.lock().unwrap_or_else(|p| p.into_inner());
                    if p.len() < POOL_KEEP {
                        p.push(f);
                    }
                }
                if sent.is_err() {
                    // The host is gone: keep draining so the agent is never
                    // blocked on a full pipe.
                    while out_rx.recv().await.is_some() {}
                    return;
                }
            }
            let _ = write_message(&mut wr, &SessionOutput::Done, max).await;
            let _ = wr.shutdown().await;
        });

        let (stdio, readers, stdin, winsize) = if spec.tty {
            let ws = nix::pty::Winsize {
                ws_row: if spec.rows == 0 { 24 } else { spec.rows },
                ws_col: if spec.cols == 0 { 80 } else { spec.cols },
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            let pty = nix::pty::openpty(Some(&ws), None)?;
            cloexec(&pty.master)?;
            cloexec(&pty.slave)?;
            let master =
                nonblocking(pty.master).map_err(|e| SessionError::Connect(e.to_string()))?;
            let slave = Arc::new(pty.slave);
            let stdio = AgentStdio::Fds {
                stdin: slave.clone(),
                stdout: slave.clone(),
                stderr: slave,
                tty: true,
            };
            let r = reader(master.clone(), out.clone(), STDOUT, false, pool);
            let winsize = Some(master.clone());
            (stdio, vec![r], spec.stdin.then_some(master), winsize)
        } else {
            let (in_r, in_w) = if spec.stdin {
                let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
                (r, Some(w))
            } else {
                let null = nix::fcntl::open(
                    "/dev/null",
                    OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )?;
                (null, None)
            };
            let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
            let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
            big_pipe(&in_r);
            big_pipe(&out_r);
            let io_err = |e: io::Error| SessionError::Connect(e.to_string());
            let readers = vec![
                reader(
                    nonblocking(out_r).map_err(io_err)?,
                    out.clone(),
                    STDOUT,
                    true,
                    pool.clone(),
                ),
                reader(
                    nonblocking(err_r).map_err(io_err)?,
                    out.clone(),
                    STDERR,
                    true,
                    pool,
                ),
            ];
            let stdin = match in_w {
                Some(w) => Some(nonblocking(w).map_err(io_err)?),
                None => None,
            };
            let stdio = AgentStdio::Fds {
                stdin: Arc::new(in_r),
                stdout: Arc::new(out_w),
                stderr: Arc::new(err_w),
                tty: false,
            };
            (stdio, readers, stdin, None)
        };

        let host_gone = Arc::new(tokio::sync::Notify::new());
        let gone = host_gone.clone();
        let input = tokio::spawn(async move {
            let mut stdin = stdin;
            let mut payload = Vec::new();
            loop {
                let frame = match read_frame_into(&mut rd, max, &mut payload).await {
                    Ok(true) => Some(&payload[..]),
                    Ok(false) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "session: bad input frame; input closed");
                        None
                    }
                };
                // Input bytes are written from where they lie in the frame.
                if let Some(b) = frame.and_then(stdin_bytes) {
                    if let Some(fd) = &stdin {
                        if write_fd(fd, b).await.is_err() {
                            // The agent closed its input: drop the rest.
                            stdin = None;
                        }
                    }
                    continue;
                }
                let msg = match frame.map(decode::<SessionInput>) {
                    None => None,
                    Some(Ok(m)) => Some(m),
                    Some(Err(e)) => {
                        // A newer host's message we do not know: skip it.
                        tracing::warn!(error = %e, "session: undecodable input frame ignored");
                        continue;
                    }
                };
                match msg {
                    Some(SessionInput::StdinEof) if winsize.is_none() => stdin = None,
                    Some(SessionInput::Resize { rows, cols }) => {
                        if let Some(fd) = &winsize {
                            set_winsize(fd.get_ref(), rows, cols);
                        }
                    }
                    Some(SessionInput::Hangup) => {
                        stdin = None;
                        gone.notify_one();
                    }
                    Some(_) => {}
                    None => {
                        gone.notify_one();
                        return;
                    }
                }
            }
        });
        Ok(Session {
            stdio,
            readers,
            writer,
            input,
            out,
            host_gone,
        })
    }

    /// Resolves when the host closes its side (the user's `exec` ended).
    pub async fn host_gone(&self) {
        self.host_gone.notified().await;
    }

    /// Send `text` as the process's standard error (a failure to start).
    pub async fn say(&self, text: &str) {
        let m = SessionOutput::Stderr(text.as_bytes().to_vec());
        let _ = self.out.send(frame_of(&m)).await;
    }

    /// The streams to give the agent.
    pub fn stdio(&self) -> AgentStdio {
        self.stdio.clone()
    }

    /// The process is done: close its streams, send what is left, its
    /// exit `code` (exec) and `Done` (within [`DRAIN_TIMEOUT`]).
    pub async fn finish(self, code: Option<i32>) {
        let Session {
            stdio,
            readers,
            writer,
            input,
            out,
            ..
        } = self;
        input.abort();
        drop(stdio);
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        for r in readers {
            let abort = r.abort_handle();
            if tokio::time::timeout_at(deadline, r).await.is_err() {
                tracing::warn!(
                    "session: the output is still open (a background process?); cut off"
                );
                abort.abort();
            }
        }
        if let Some(code) = code {
            let exit = out.send(frame_of(&SessionOutput::Exit { code }));
            let _ = tokio::time::timeout_at(deadline, exit).await;
        }
        drop(out);
        let abort = writer.abort_handle();
        if tokio::time::timeout_at(deadline + DRAIN_TIMEOUT, writer)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}
