//! The UDP listener: no task per query.
//!
//! One task drains every datagram the socket holds (up to [`BATCH`]) and
//! submits them to the host client as one batch, which goes out in one
//! write. Each answer is sent to its client straight from the client's
//! reader task by a callback ([`HostClient::submit`]); failures (lost
//! connection, timeout) come back the same way as SERVFAIL. While the host
//! is away, each query waits in its own task (as TCP queries do) for a
//! reconnect, a little.

use std::net::SocketAddr;
use std::sync::Arc;

use bottle_shared::message::DnsTransport;
use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::client::{QueryError, Submission};
use super::listener::{reply, Ctx};
use super::wire;

/// Most datagrams taken from the socket per batch.
pub const BATCH: usize = 64;

/// Serve UDP on `sock` forever.
pub async fn serve_udp(ctx: Ctx, sock: UdpSocket) -> std::io::Result<()> {
    let sock = Arc::new(sock);
    let slots = Arc::new(Semaphore::new(ctx.limits.udp_in_flight));
    let mut buf = vec![0u8; 65535];
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        sock.readable().await?;
        for _ in 0..BATCH {
            let (n, peer) = match sock.try_recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // ICMP errors from earlier sends surface here; keep serving.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            let packet = &buf[..n];
            if wire::classify(packet) != wire::Verdict::Query {
                ctx.stats.dropped();
                continue;
            }
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                ctx.stats.dropped();
                continue;
            };
            ctx.stats.query(true);
            batch.push(submission(&ctx, &sock, peer, packet.to_vec(), permit));
        }
        if batch.is_empty() {
            continue;
        }
        let ready = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
        if let Err(waiting) = ctx.client.submit(ready) {
            // Not connected: wait a little for the host, one task each.
            for s in waiting {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let result = ctx.client.query(s.transport, s.wire).await;
                    (s.done)(result);
                });
            }
        }
    }
}

/// The submission for one client datagram: its answer (or SERVFAIL) goes
/// back to `peer`, truncated to the client's limit.
fn submission(
    ctx: &Ctx,
    sock: &Arc<UdpSocket>,
    peer: SocketAddr,
    packet: Vec<u8>,
    permit: OwnedSemaphorePermit,
) -> Submission {
    let query = packet.clone();
    let (ctx, sock) = (ctx.clone(), Arc::clone(sock));
    let done = move |result: Result<Vec<u8>, QueryError>| {
        let reply = reply(&ctx, &query, true, result);
        send(&sock, reply, peer);
        drop(permit);
    };
    Submission {
        transport: DnsTransport::Udp,
        wire: packet,
        done: Box::new(done),
    }
}

/// Send `reply` to `peer` now if the socket has room, else from a task.
fn send(sock: &Arc<UdpSocket>, reply: Vec<u8>, peer: SocketAddr) {
    match sock.try_send_to(&reply, peer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            let sock = Arc::clone(sock);
            tokio::spawn(async move {
                if let Err(e) = sock.send_to(&reply, peer).await {
                    tracing::debug!(%peer, "dns-stub: udp send failed: {e}");
                }
            });
        }
        Err(e) => tracing::debug!(%peer, "dns-stub: udp send failed: {e}"),
    }
}
