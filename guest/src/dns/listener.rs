//! The stub's listeners: UDP and TCP on the same address.
//!
//! Every query goes through [`answer`]: drop what is not a query, forward
//! the rest to the host, answer SERVFAIL built from the query when the host
//! fails, and truncate UDP answers to the client's limit.
//! TCP carries 2-byte length-prefixed messages, several per connection,
//! pipelined: answers go back as they come, possibly out of order (RFC 7766).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bottle_shared::message::DnsTransport;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

pub use super::udp::serve_udp;
use tokio::sync::{mpsc, Semaphore};

use super::client::{HostClient, QueryError};
use super::stats::Stats;
use super::wire;

/// Limits of the listeners.
#[derive(Clone, Copy, Debug)]
pub struct ListenLimits {
    /// UDP queries handled at once; more are dropped (the client retries).
    pub udp_in_flight: usize,
    /// TCP connections open at once; more wait in the accept queue.
    pub tcp_connections: usize,
    /// Queries in flight on one TCP connection; reading pauses beyond it.
    pub tcp_pipeline: usize,
    /// A TCP connection with no complete query for this long is closed.
    pub tcp_idle: Duration,
}

impl Default for ListenLimits {
    fn default() -> Self {
        ListenLimits {
            udp_in_flight: 4096,
            tcp_connections: 256,
            tcp_pipeline: 64,
            tcp_idle: Duration::from_secs(10),
        }
    }
}

/// What the listeners share.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The host client.
    pub client: HostClient,
    /// The counters.
    pub stats: Arc<Stats>,
    /// The limits.
    pub limits: ListenLimits,
}

/// Answer one client packet; `None` means send nothing.
pub async fn answer(ctx: &Ctx, packet: Vec<u8>, transport: DnsTransport) -> Option<Vec<u8>> {
    let udp = transport == DnsTransport::Udp;
    if wire::classify(&packet) != wire::Verdict::Query {
        ctx.stats.dropped();
        return None;
    }
    ctx.stats.query(udp);
    let fallback = packet.clone();
    let result = ctx.client.query(transport, packet).await;
    Some(reply(ctx, &fallback, udp, result))
}

/// [`finish`] plus the counters and logs: the reply to send the client.
pub fn reply(ctx: &Ctx, query: &[u8], udp: bool, result: Result<Vec<u8>, QueryError>) -> Vec<u8> {
    let (reply, outcome) = finish(query, udp, result);
    match outcome {
        Outcome::Answered { truncated } => {
            ctx.stats.answered(&reply);
            if truncated {
                ctx.stats.truncated();
            }
        }
        Outcome::Runt(len) => {
            tracing::warn!(len, "dns-stub: host sent a runt answer");
            ctx.stats.servfail();
        }
        Outcome::NotAResponse => {
            tracing::warn!("dns-stub: host sent a query (QR clear) as its answer");
            ctx.stats.servfail();
        }
        Outcome::Failed(e) => {
            tracing::debug!("dns-stub: SERVFAIL: {e}");
            ctx.stats.servfail();
        }
    }
    reply
}

/// What [`finish`] made of the host's answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The host's answer, passed on (truncated to the UDP limit if set).
    Answered {
        /// TC was set because the answer did not fit.
        truncated: bool,
    },
    /// The host's answer was shorter than a header (its length): SERVFAIL.
    Runt(usize),
    /// The host's answer had QR clear, so the client would drop it and
    /// wait: SERVFAIL instead.
    NotAResponse,
    /// No answer from the host: SERVFAIL.
    Failed(QueryError),
}

/// The reply to a client's `query` (already classified as a query) once
/// the host has answered with `result`: the host's answer under the
/// client's id, fitted to the client's UDP limit (TC set) when `udp`, or a
/// SERVFAIL built from the query when the host failed or sent something
/// that is not a DNS response (shorter than a header, or QR clear). Pure, so the `dns_stub_answer` fuzz
/// target drives it with arbitrary host answers.
pub fn finish(query: &[u8], udp: bool, result: Result<Vec<u8>, QueryError>) -> (Vec<u8>, Outcome) {
    match result {
        Ok(mut ans) if wire::classify(&ans) == wire::Verdict::NotAQuery => {
            wire::set_id(&mut ans, wire::id(query));
            if !udp {
                return (ans, Outcome::Answered { truncated: false });
            }
            let (ans, truncated) = wire::fit_udp(ans, wire::udp_limit(query));
            (ans, Outcome::Answered { truncated })
        }
        Ok(ans) if wire::classify(&ans) == wire::Verdict::Query => {
            (wire::servfail(query), Outcome::NotAResponse)
        }
        Ok(short) => (wire::servfail(query), Outcome::Runt(short.len())),
        Err(e) => (wire::servfail(query), Outcome::Failed(e)),
    }
}

/// Serve TCP on `listener` forever.
pub async fn serve_tcp(ctx: Ctx, listener: TcpListener) -> std::io::Result<()> {
    let conns = Arc::new(Semaphore::new(ctx.limits.tcp_connections));
    loop {
        let Ok(permit) = conns.clone().acquire_owned().await else {
            return Ok(());
        };
        let (stream, peer) = listener.accept().await?;
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = tcp_conn(ctx, stream).await {
                tracing::debug!(%peer, "dns-stub: tcp connection ended: {e}");
            }
            drop(permit);
        });
    }
}

async fn tcp_conn(ctx: Ctx, stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(ctx.limits.tcp_pipeline);
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let Ok(len) = u16::try_from(msg.len()) else {
                continue;
            };
            let mut out = Vec::with_capacity(2 + msg.len());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&msg);
            w.write_all(&out).await?;
        }
        w.shutdown().await
    });
    let pipeline = Arc::new(Semaphore::new(ctx.limits.tcp_pipeline));
    loop {
        let msg = match tokio::time::timeout(ctx.limits.tcp_idle, read_tcp_msg(&mut r)).await {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) | Err(_) => break,
            Ok(Err(e)) => {
                tracing::debug!("dns-stub: tcp read: {e}");
                break;
            }
        };
        let Ok(permit) = pipeline.clone().acquire_owned().await else {
            break;
        };
        let (ctx, tx) = (ctx.clone(), tx.clone());
        tokio::spawn(async move {
            if let Some(reply) = answer(&ctx, msg, DnsTransport::Tcp).await {
                let _ = tx.send(reply).await;
            }
            drop(permit);
        });
    }
    // Let the queries still in flight finish, then the writer closes.
    drop(tx);
    writer
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// Read one length-prefixed message; `None` on a clean close between
/// messages.
async fn read_tcp_msg<R: AsyncReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    r.read_exact(&mut msg).await?;
    Ok(Some(msg))
}

/// UDP receive buffer the stub asks for: room for a burst of several
/// thousand queries (a small query takes about 1 KiB of buffer on
/// loopback), where the kernel default (208 KiB) drops after a few hundred.
pub const UDP_RECV_BUFFER: usize = 8 << 20;

/// Ask for [`UDP_RECV_BUFFER`]: forced past `net.core.rmem_max` when we
/// may (root, as in the guest), else as much as the limit allows.
fn grow_recv_buffer(sock: &UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(sock, sockopt::RcvBufForce, &UDP_RECV_BUFFER).is_err() {
        if let Err(e) = setsockopt(sock, sockopt::RcvBuf, &UDP_RECV_BUFFER) {
            tracing::debug!("dns-stub: cannot grow the UDP receive buffer: {e}");
        }
    }
}

/// Bind UDP and TCP on `addr` (port 0 picks one free port for both).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let (udp, tcp) = bind_pair(addr).await?;
    grow_recv_buffer(&udp);
    Ok((udp, tcp))
}

async fn bind_pair(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    if addr.port() != 0 {
        return Ok((UdpSocket::bind(addr).await?, TcpListener::bind(addr).await?));
    }
    // Port 0: take the UDP socket's port for TCP too; retry if it is taken.
    let mut last = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(addr).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
}
