//! Serving the guest's egress channel: each connection on a `unix://`
//! (or vsock) listener first does the versioned hello, then is handed to
//! the proxy as it is. No TCP listener is involved, so nothing on the
//! host's loopback can reach the proxy (`docs/security.md`, host side).

use std::net::{Ipv4Addr, SocketAddr};

use bottle_shared::channel::Channel;
use bottle_shared::io::accept_hello;
use bottle_shared::message::Role;
use bottle_shared::transport::Listener;
use hudsucker::Incoming;
use tokio::sync::mpsc::Sender;

/// Software string sent in the hello.
const SOFTWARE: &str = concat!("bottle-host/", env!("CARGO_PKG_VERSION"));

/// The client address the proxy's context reports for egress-channel
/// connections: they have none.
const NO_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// Accept connections on `listener` until the proxy goes away, handing
/// each to it after the hello. Returns `Ok` when the proxy has stopped,
/// an error when the listener fails (running out of descriptors is
/// waited out: [`crate::accept`]).
pub async fn serve(listener: Listener, proxy: Sender<Incoming>) -> std::io::Result<()> {
    loop {
        let mut guest = tokio::select! {
            s = crate::accept::next(&listener, "proxy: egress channel") => s?,
            _ = proxy.closed() => return Ok(()),
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            if let Err(e) = accept_hello(&mut guest, Role::Host, Channel::Egress, SOFTWARE).await {
                tracing::warn!("proxy: egress channel hello failed: {e}");
                bottle_shared::io::linger_close(&mut guest).await;
                return;
            }
            if proxy.send((Box::new(guest), NO_ADDR)).await.is_err() {
                tracing::debug!("proxy: stopped; egress connection dropped");
            }
        });
    }
}
