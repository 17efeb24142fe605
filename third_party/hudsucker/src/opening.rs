//! bot-bottle: a deadline for a connection's opening bytes.
//!
//! hyper's HTTP/1 header read timeout only starts once the server is
//! parsing a request head. Before that, nothing bounds the wait: the
//! automatic HTTP/1-or-2 detection reading the first bytes, the protocol
//! sniff after a CONNECT, the TLS handshake. A client that connects and
//! stays silent (or stops inside the HTTP/2 preface) would hold a task and
//! a descriptor for ever.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long a client has for its opening bytes: the start of its first
/// request, the protocol sniff after CONNECT, the TLS handshake.
pub const OPENING_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP/2 client preface, which the version detection waits for in
/// full once the bytes read so far are a prefix of it.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A stream whose reads fail with `TimedOut` once [`OPENING_TIMEOUT`] has
/// passed, until the opening is over: the first byte that is not the
/// HTTP/2 preface's (from then on hyper's HTTP/1 header timeout applies),
/// or the whole preface. Writes pass through.
pub(crate) struct Opening<S> {
    inner: S,
    /// Preface bytes seen so far and the deadline; `None` once the
    /// opening is over (the timer is then dropped).
    opening: Option<(usize, Pin<Box<Sleep>>)>,
}

impl<S> Opening<S> {
    /// Wrap `inner`; the deadline starts now.
    pub(crate) fn new(inner: S) -> Opening<S> {
        Opening {
            inner,
            opening: Some((0, Box::pin(tokio::time::sleep(OPENING_TIMEOUT)))),
        }
    }

    /// Follow the opening through `bytes`, just read.
    fn follow(&mut self, bytes: &[u8]) {
        let Some((seen, _)) = &mut self.opening else {
            return;
        };
        let left = &H2_PREFACE[*seen..];
        let n = bytes.len().min(left.len());
        if bytes[..n] == left[..n] && *seen + n < H2_PREFACE.len() {
            *seen += n;
        } else {
            self.opening = None;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Opening<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.opening.is_some() {
                    this.follow(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending
                if this
                    .opening
                    .as_mut()
                    .is_some_and(|(_, deadline)| deadline.as_mut().poll(cx).is_ready()) =>
            {
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no request within {} s", OPENING_TIMEOUT.as_secs()),
                )))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Opening<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
