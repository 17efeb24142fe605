//! The guest's egress forwarder: the agent's `HTTP(S)_PROXY` points at a
//! TCP listener on 127.0.0.1 (port 3128 by default); each connection is
//! carried over the host's egress channel (vsock port 6003), after the
//! versioned hello, to the host's inspecting proxy. Nothing is inspected
//! here: the host decides everything.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bottle_shared::addr::Address;
use bottle_shared::channel::Channel;
use bottle_shared::io::{dial_hello, linger_close};
use bottle_shared::message::Role;
use bottle_shared::transport::connect;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// Default listen port of the forwarder.
pub const DEFAULT_PORT: u16 = 3128;

/// Software string sent in the hello.
const SOFTWARE: &str = concat!("bottle-guest/", env!("CARGO_PKG_VERSION"));

/// Live counters.
#[derive(Debug, Default)]
pub struct Counters {
    connections: AtomicU64,
    active: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    errors: AtomicU64,
}

/// A copy of the counters for `bottle-guest status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Connections accepted.
    pub connections: u64,
    /// Connections open now.
    pub active: u64,
    /// Bytes from the agent to the host.
    pub bytes_up: u64,
    /// Bytes from the host to the agent.
    pub bytes_down: u64,
    /// Connections that failed (dial, hello or copy).
    pub errors: u64,
}

impl Counters {
    /// Read every counter.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            connections: self.connections.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed),
            bytes_up: self.bytes_up.load(Ordering::Relaxed),
            bytes_down: self.bytes_down.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// The forwarder's listener and where it forwards to.
#[derive(Debug)]
pub struct Forwarder {
    listener: TcpListener,
    host: Address,
    counters: Arc<Counters>,
}

impl Forwarder {
    /// Listen on `listen` and forward to the host's egress channel at `host`.
    pub async fn bind(listen: SocketAddr, host: Address) -> io::Result<Forwarder> {
        Ok(Forwarder {
            listener: TcpListener::bind(listen).await?,
            host,
            counters: Arc::default(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The counters (shared with the running forwarder).
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Accept and forward until the listener fails.
    pub async fn serve(self) -> io::Result<()> {
        loop {
            let (client, _) = self.listener.accept().await?;
            let _ = client.set_nodelay(true);
            self.counters.connections.fetch_add(1, Ordering::Relaxed);
            let host = self.host.clone();
            let counters = self.counters.clone();
            tokio::spawn(async move {
                counters.active.fetch_add(1, Ordering::Relaxed);
                match forward(client, &host, &counters).await {
                    Ok(()) => {}
                    // A peer closing abruptly (the proxy refusing a request,
                    // a client giving up) is routine, not a fault.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                        ) =>
                    {
                        tracing::debug!("egress: {e}");
                    }
                    Err(e) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("egress: {e}");
                    }
                }
                counters.active.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }
}

/// Carry one agent connection to the host.
async fn forward(mut client: TcpStream, host: &Address, counters: &Counters) -> io::Result<()> {
    let mut upstream = connect(host)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot reach {host}: {e}")))?;
    dial_hello(&mut upstream, Role::Guest, Channel::Egress, SOFTWARE)
        .await
        .map_err(|e| io::Error::other(format!("egress hello with {host}: {e}")))?;
    relay(&mut client, upstream, counters).await
}

/// Carry bytes both ways ([`bottle_shared::io::relay`]: each direction on
/// its own, unlike `tokio::io::copy_bidirectional`, so when the host
/// refuses a request and closes while the agent is still sending its body
/// (a refused `git push`), the refusal already on its way back still
/// reaches the agent), and count them. When sending failed, the agent's
/// side ends with a linger: its unread bytes would make the kernel reset
/// the connection, and a reset can overtake the reply.
async fn relay<U>(client: &mut TcpStream, upstream: U, counters: &Counters) -> io::Result<()>
where
    U: AsyncRead + AsyncWrite,
{
    let (up, down) = bottle_shared::io::relay(&mut *client, upstream).await;
    if let Ok(n) = up {
        counters.bytes_up.fetch_add(n, Ordering::Relaxed);
    }
    if let Ok(n) = down {
        counters.bytes_down.fetch_add(n, Ordering::Relaxed);
    }
    if up.is_err() {
        linger_close(client).await;
    }
    up.and(down).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bottle_shared::io::accept_hello;
    use bottle_shared::transport::Listener;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A host side that does the hello and echoes.
    async fn echo_host(path: &std::path::Path) -> Address {
        echo_host_task(path).await.0
    }

    /// [`echo_host`], and its task (abort it to take the host away).
    async fn echo_host_task(path: &std::path::Path) -> (Address, tokio::task::JoinHandle<()>) {
        host_task(path, false).await
    }

    /// A host side that does the hello, then echoes or, with `refuse`,
    /// answers at once and closes without reading what the agent sends.
    async fn host_task(
        path: &std::path::Path,
        refuse: bool,
    ) -> (Address, tokio::task::JoinHandle<()>) {
        let addr = Address::Unix(path.to_path_buf());
        let l = Listener::bind(&addr).await.unwrap();
        let task = tokio::spawn(async move {
            loop {
                let mut s = l.accept().await.unwrap();
                tokio::spawn(async move {
                    accept_hello(&mut s, Role::Host, Channel::Egress, "test-host")
                        .await
                        .unwrap();
                    if refuse {
                        // Let the body pile up unread, as a proxy refusing
                        // on the head does.
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        let _ = s.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\nrefused").await;
                        return;
                    }
                    let (mut r, mut w) = tokio::io::split(s);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        (addr, task)
    }

    /// A running forwarder to `host`: its address and counters.
    async fn forwarder(host: Address) -> (SocketAddr, Arc<Counters>) {
        let f = Forwarder::bind("127.0.0.1:0".parse().unwrap(), host)
            .await
            .unwrap();
        let out = (f.local_addr().unwrap(), f.counters());
        tokio::spawn(f.serve());
        out
    }

    /// One request through the forwarder: echoed back, or `None` when the
    /// client was closed instead.
    async fn round_trip(addr: SocketAddr) -> Option<Vec<u8>> {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 18];
        c.read_exact(&mut buf).await.ok().map(|_| buf)
    }

    #[tokio::test]
    async fn host_restart_egress_resumes_and_nothing_hangs_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("egress.sock");
        let (host, task) = echo_host_task(&path).await;
        let (addr, _) = forwarder(host).await;
        let limit = std::time::Duration::from_secs(2);
        let ok = Some(b"GET / HTTP/1.1\r\n\r\n".to_vec());
        assert_eq!(round_trip(addr).await, ok);
        // The host goes away: clients are closed at once, not left waiting.
        task.abort();
        let _ = task.await;
        // (The listener removes its socket file when dropped.)
        let _ = std::fs::remove_file(&path);
        let down = tokio::time::timeout(limit, round_trip(addr)).await;
        assert_eq!(down.expect("closed within 2 s, not hung"), None);
        // The host comes back on the same address: egress resumes.
        let (_, _task) = echo_host_task(&path).await;
        let up = tokio::time::timeout(limit, round_trip(addr)).await;
        assert_eq!(up.expect("answered within 2 s"), ok);
    }

    #[tokio::test]
    async fn forwards_after_hello_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let host = echo_host(&dir.path().join("egress.sock")).await;
        let (addr, counters) = forwarder(host).await;

        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"CONNECT a.test:443 HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 31];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"CONNECT a.test:443 HTTP/1.1\r\n\r\n");
        drop(c);
        for _ in 0..100 {
            if counters.snapshot().active == 0 && counters.snapshot().bytes_up > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let s = counters.snapshot();
        assert_eq!((s.connections, s.active, s.errors), (1, 0, 0), "{s:?}");
        assert_eq!((s.bytes_up, s.bytes_down), (31, 31));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), s);
    }

    #[tokio::test]
    async fn a_refusal_reaches_the_agent_while_it_is_still_sending() {
        let dir = tempfile::tempdir().unwrap();
        let (host, _task) = host_task(&dir.path().join("egress.sock"), true).await;
        let (addr, _) = forwarder(host).await;
        for round in 0..20 {
            let c = TcpStream::connect(addr).await.unwrap();
            let (mut rd, mut wr) = c.into_split();
            let writer = tokio::spawn(async move {
                let chunk = vec![b'p'; 64 * 1024];
                for _ in 0..128 {
                    if wr.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
            });
            let mut got = Vec::new();
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(10), rd.read_to_end(&mut got))
                    .await
                    .expect("the agent's side ends within 10 s");
            let text = String::from_utf8_lossy(&got);
            assert!(
                text.ends_with("refused"),
                "round {round}: {read:?}, got {text:?}"
            );
            writer.abort();
        }
    }

    #[tokio::test]
    async fn unreachable_host_is_an_error_and_closes_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let host = Address::Unix(dir.path().join("nobody-listens.sock"));
        let (addr, counters) = forwarder(host).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(c.read(&mut buf).await.unwrap_or(0), 0);
        for _ in 0..100 {
            if counters.snapshot().errors == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(counters.snapshot().errors, 1);
    }
}
