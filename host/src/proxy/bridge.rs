//! Serving the guest's egress channel: each connection on a `unix://`
//! (or vsock) listener first does the versioned hello, then its raw proxy
//! traffic is carried to the proxy's loopback TCP listener.

use std::net::SocketAddr;

use bottle_shared::channel::Channel;
use bottle_shared::io::accept_hello;
use bottle_shared::message::Role;
use bottle_shared::transport::Listener;
use tokio::net::TcpStream;

/// Software string sent in the hello.
const SOFTWARE: &str = concat!("bottle-host/", env!("CARGO_PKG_VERSION"));

/// Accept connections on `listener` forever, bridging each to `proxy`.
pub async fn serve(listener: Listener, proxy: SocketAddr) -> std::io::Result<()> {
    loop {
        let mut guest = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = accept_hello(&mut guest, Role::Host, Channel::Egress, SOFTWARE).await {
                tracing::warn!("proxy: egress channel hello failed: {e}");
                bottle_shared::io::linger_close(&mut guest).await;
                return;
            }
            let mut upstream = match TcpStream::connect(proxy).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("proxy: cannot reach own listener {proxy}: {e}");
                    return;
                }
            };
            let _ = upstream.set_nodelay(true);
            if let Err(e) = tokio::io::copy_bidirectional(&mut guest, &mut upstream).await {
                tracing::debug!("proxy: egress channel closed: {e}");
            }
        });
    }
}
