//! The UDP listener: no task per query, batched system calls.
//!
//! One task takes every datagram the socket holds, up to
//! [`mmsg::SLOTS`] per `recvmmsg`, and submits them to the host client as
//! one batch, which goes out in one write. Each answer comes back to a
//! callback ([`HostClient::submit`]) run on the client's reader task,
//! which queues the reply in an [`Outbox`]; after each group of answers
//! the client runs its flush hook, which sends every queued reply with one
//! `sendmmsg`. Failures (lost connection, timeout) come back the same way
//! as SERVFAIL. While the host is away, each query waits in its own task
//! (as TCP queries do) for a reconnect, a little.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, PoisonError};

use bottle_shared::message::DnsTransport;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::client::{QueryError, Submission};
use super::listener::{reply, Ctx};
use super::mmsg::{self, RecvBatch};
use super::wire;

/// Most datagrams taken from the socket per batch.
pub const BATCH: usize = mmsg::SLOTS;

/// Serve UDP on `sock` forever.
pub async fn serve_udp(ctx: Ctx, sock: UdpSocket) -> std::io::Result<()> {
    let sock = Arc::new(sock);
    let out = Arc::new(Outbox::new(Arc::clone(&sock)));
    let weak = Arc::downgrade(&out);
    ctx.client.on_flush(Box::new(move || {
        if let Some(out) = weak.upgrade() {
            out.flush();
        }
    }));
    let slots = Arc::new(Semaphore::new(ctx.limits.udp_in_flight));
    let mut recv = RecvBatch::new();
    let fd = sock.as_raw_fd();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        sock.readable().await?;
        // A batch that did not fill every slot emptied the socket: report
        // it as `WouldBlock` too, so tokio waits for the next datagram
        // instead of letting us find out with one more empty call (any
        // datagram arriving after this call raises a new epoll event).
        let mut got = 0;
        let res = sock.try_io(Interest::READABLE, || {
            got = recv.recv(fd)?;
            if got < mmsg::SLOTS {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        let n = match res {
            Ok(()) => got,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => got,
            // ICMP errors from earlier sends surface here; keep serving.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for i in 0..n {
            // Cut short (far larger than any query) or not from an IP.
            let Some((packet, peer)) = recv.get(i) else {
                ctx.stats.dropped();
                continue;
            };
            if wire::classify(packet) != wire::Verdict::Query {
                ctx.stats.dropped();
                continue;
            }
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                ctx.stats.dropped();
                continue;
            };
            ctx.stats.query(true);
            batch.push(submission(&ctx, &out, peer, packet.to_vec(), permit));
        }
        if batch.is_empty() {
            continue;
        }
        let ready = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
        if let Err(waiting) = ctx.client.submit(ready) {
            // Not connected: wait a little for the host, one task each.
            for s in waiting {
                let (ctx, out) = (ctx.clone(), Arc::clone(&out));
                tokio::spawn(async move {
                    let result = ctx.client.query(s.transport, s.wire).await;
                    (s.done)(result);
                    out.flush();
                });
            }
        }
    }
}

/// The submission for one client datagram: its answer (or SERVFAIL) is
/// queued for `peer`, truncated to the client's limit.
fn submission(
    ctx: &Ctx,
    out: &Arc<Outbox>,
    peer: SocketAddr,
    packet: Vec<u8>,
    permit: OwnedSemaphorePermit,
) -> Submission {
    let query = packet.clone();
    let (ctx, out) = (ctx.clone(), Arc::clone(out));
    let done = move |result: Result<Vec<u8>, QueryError>| {
        let reply = reply(&ctx, &query, true, result);
        out.push(reply, peer);
        drop(permit);
    };
    Submission {
        transport: DnsTransport::Udp,
        wire: packet,
        done: Box::new(done),
    }
}

/// Replies waiting to be sent, each to its client.
#[derive(Debug)]
pub struct Outbox {
    sock: Arc<UdpSocket>,
    queue: Mutex<Vec<(Vec<u8>, SocketAddr)>>,
}

impl Outbox {
    fn new(sock: Arc<UdpSocket>) -> Outbox {
        Outbox {
            sock,
            queue: Mutex::new(Vec::with_capacity(BATCH)),
        }
    }

    fn push(&self, reply: Vec<u8>, peer: SocketAddr) {
        self.lock().push((reply, peer));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Vec<u8>, SocketAddr)>> {
        // Every operation leaves the queue a plain list.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Send every queued reply now, with `sendmmsg`, as far as the socket
    /// has room; the rest go out from a task that waits for room.
    pub fn flush(&self) {
        let mut msgs = {
            let mut q = self.lock();
            if q.is_empty() {
                return;
            }
            std::mem::replace(&mut *q, Vec::with_capacity(BATCH))
        };
        let fd = self.sock.as_raw_fd();
        let mut sent = 0;
        // A full buffer clears the socket's write readiness (try_io).
        let _ = self.sock.try_io(Interest::WRITABLE, || {
            sent += mmsg::send_all(fd, &msgs[sent..]);
            if sent < msgs.len() {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        if sent >= msgs.len() {
            return;
        }
        let rest = msgs.split_off(sent);
        let sock = Arc::clone(&self.sock);
        tokio::spawn(async move {
            for (reply, peer) in rest {
                if let Err(e) = sock.send_to(&reply, peer).await {
                    tracing::debug!(%peer, "dns-stub: udp send failed: {e}");
                }
            }
        });
    }
}
