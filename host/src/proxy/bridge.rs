//! Serving the guest's egress channel: each connection on a `unix://`
//! (or vsock) listener first does the versioned hello, then is handed to
//! the proxy as it is. No TCP listener is involved, so nothing on the
//! host's loopback can reach the proxy (`docs/security.md`, host side).
//!
//! The standalone proxy's TCP listener (`bottle-host proxy --listen
//! tcp://…`) is served the same way, without the hello.
//!
//! At most `egress.max_connections` connections are open at once; one
//! arriving beyond that is closed at once, so a guest (or, on TCP, any
//! local client) cannot make bottle-host hold descriptors and memory
//! without bound.

use std::io::IoSlice;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use bottle_shared::channel::Channel;
use bottle_shared::io::accept_hello;
use bottle_shared::message::Role;
use bottle_shared::transport::{BoxStream, Listener};
use hudsucker::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::mpsc::Sender;
use tokio::sync::OwnedSemaphorePermit;

/// Software string sent in the hello.
const SOFTWARE: &str = concat!("bottle-host/", env!("CARGO_PKG_VERSION"));

/// The client address the proxy's context reports for egress-channel
/// connections: they have none.
const NO_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// Accept connections on `listener` until the proxy goes away, handing
/// each to it after the hello, at most `max_connections` at once.
/// Returns `Ok` when the proxy has stopped, an error when the listener
/// fails (running out of descriptors is waited out: [`crate::accept`]).
pub async fn serve(
    listener: Listener,
    proxy: Sender<Incoming>,
    max_connections: u32,
) -> std::io::Result<()> {
    let mut cap = crate::accept::Cap::new(max_connections as usize);
    loop {
        let guest = tokio::select! {
            s = crate::accept::next(&listener, "proxy: egress channel") => s?,
            _ = proxy.closed() => return Ok(()),
        };
        let Some(slot) = cap.take("proxy: egress channel (egress.max_connections)") else {
            drop(guest);
            continue;
        };
        let mut guest = Held {
            stream: guest,
            _slot: slot,
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            if let Err(e) =
                accept_hello(&mut guest.stream, Role::Host, Channel::Egress, SOFTWARE).await
            {
                tracing::warn!("proxy: egress channel hello failed: {e}");
                bottle_shared::io::linger_close(&mut guest.stream).await;
                return;
            }
            if proxy.send((Box::new(guest), NO_ADDR)).await.is_err() {
                tracing::debug!("proxy: stopped; egress connection dropped");
            }
        });
    }
}

/// Accept connections on a TCP `listener` until the proxy goes away,
/// handing each to it at once, at most `max_connections` at once.
pub async fn serve_tcp(
    listener: TcpListener,
    proxy: Sender<Incoming>,
    max_connections: u32,
) -> std::io::Result<()> {
    let mut cap = crate::accept::Cap::new(max_connections as usize);
    loop {
        let (client, addr) = tokio::select! {
            s = crate::accept::next_tcp(&listener, "proxy: tcp listener") => s?,
            _ = proxy.closed() => return Ok(()),
        };
        let Some(slot) = cap.take("proxy: tcp listener (egress.max_connections)") else {
            drop(client);
            continue;
        };
        let client = Held {
            stream: Box::new(client),
            _slot: slot,
        };
        if proxy.send((Box::new(client), addr)).await.is_err() {
            return Ok(());
        }
    }
}

/// A connection holding one of the slots until it is dropped.
struct Held {
    stream: BoxStream,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for Held {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
