//! Connecting and listening on any [`Address`] (feature `tokio`).
//!
//! Every stream is returned as a [`BoxStream`], so callers do not care
//! whether they run over vsock in a VM or over Unix sockets in a test.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::addr::Address;

/// A bidirectional byte stream of any transport.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> AsyncStream for T {}

/// A boxed stream of any transport.
pub type BoxStream = Box<dyn AsyncStream>;

/// Longest line accepted in the hybrid `CONNECT`/`OK` handshake.
const MAX_HANDSHAKE_LINE: usize = 64;
/// How long the hybrid handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Dial `addr`. A base address (vsock without a port) is an error.
pub async fn connect(addr: &Address) -> io::Result<BoxStream> {
    match addr {
        Address::Vsock {
            cid,
            port: Some(port),
        } => {
            let s =
                tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(*cid, *port)).await?;
            Ok(Box::new(s))
        }
        Address::Vsock { port: None, .. } => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} has no port"),
        )),
        Address::Unix(path) => Ok(Box::new(UnixStream::connect(path).await?)),
        Address::Hybrid { path, port } => {
            let mut s = UnixStream::connect(path).await?;
            tokio::time::timeout(HANDSHAKE_TIMEOUT, hybrid_dial(&mut s, *port))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "hybrid vsock handshake timed out")
                })??;
            Ok(Box::new(s))
        }
        Address::Tcp(sa) => {
            let s = TcpStream::connect(sa).await?;
            s.set_nodelay(true)?;
            Ok(Box::new(s))
        }
    }
}

async fn hybrid_dial(s: &mut UnixStream, port: u32) -> io::Result<()> {
    s.write_all(format!("CONNECT {port}\n").as_bytes()).await?;
    let line = read_line(s).await?;
    if line.starts_with("OK ") || line == "OK" {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("hybrid vsock: port {port} refused: {line:?}"),
        ))
    }
}

/// Read one `\n`-terminated line, byte by byte so nothing after it is
/// consumed.
async fn read_line(s: &mut UnixStream) -> io::Result<String> {
    let mut line = Vec::with_capacity(16);
    loop {
        let b = s.read_u8().await?;
        if b == b'\n' {
            break;
        }
        if line.len() >= MAX_HANDSHAKE_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "hybrid vsock handshake line too long",
            ));
        }
        line.push(b);
    }
    String::from_utf8(line).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "hybrid vsock handshake not UTF-8",
        )
    })
}

/// A bound listener on any address.
#[derive(Debug)]
pub struct Listener {
    inner: Inner,
    addr: Address,
    /// Unix listeners only: accept only peers with this uid (`SO_PEERCRED`).
    owner: Option<u32>,
}

#[derive(Debug)]
enum Inner {
    Unix(UnixListener, PathBuf),
    Hybrid(UnixListener, PathBuf, u32),
    Vsock(tokio_vsock::VsockListener),
    Tcp(TcpListener),
}

impl Listener {
    /// Bind `addr`. A stale Unix socket file left by a dead process is
    /// replaced; one that still answers is an `AddrInUse` error.
    pub async fn bind(addr: &Address) -> io::Result<Listener> {
        let inner = match addr {
            Address::Unix(path) => Inner::Unix(bind_unix(path).await?, path.clone()),
            Address::Hybrid { path, port } => {
                Inner::Hybrid(bind_unix(path).await?, path.clone(), *port)
            }
            Address::Vsock { cid, port } => {
                let port = port.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("{addr} has no port"))
                })?;
                Inner::Vsock(tokio_vsock::VsockListener::bind(
                    tokio_vsock::VsockAddr::new(*cid, port),
                )?)
            }
            Address::Tcp(sa) => Inner::Tcp(TcpListener::bind(sa).await?),
        };
        let addr = match &inner {
            Inner::Tcp(l) => Address::Tcp(l.local_addr()?),
            _ => addr.clone(),
        };
        Ok(Listener {
            inner,
            addr,
            owner: None,
        })
    }

    /// Bind a Unix address (plain or hybrid) that only this process's own
    /// user may use: the socket file is made `0600`, and every accepted
    /// peer whose uid (`SO_PEERCRED`) is not the socket's owner is closed
    /// at once, which also covers a connection made before the mode
    /// change. Other addresses are refused: a TCP or vsock peer has no
    /// uid to check.
    pub async fn bind_owner_only(addr: &Address) -> io::Result<Listener> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let path = match addr {
            Address::Unix(path) | Address::Hybrid { path, .. } => path.clone(),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{addr}: only a Unix socket can be limited to its owner"),
                ))
            }
        };
        let mut l = Listener::bind(addr).await?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        l.owner = Some(std::fs::metadata(&path)?.uid());
        Ok(l)
    }

    /// Whether a Unix peer may stay: always, unless the listener is
    /// owner-only and the peer is someone else (or unknown).
    fn admits(&self, s: &UnixStream) -> bool {
        let Some(owner) = self.owner else {
            return true;
        };
        match s.peer_cred() {
            Ok(c) if c.uid() == owner => true,
            Ok(c) => {
                tracing::warn!(
                    "{}: refused a connection from uid {} (pid {:?}): only uid {owner} may connect",
                    self.addr,
                    c.uid(),
                    c.pid()
                );
                false
            }
            Err(e) => {
                tracing::warn!("{}: refused a connection: peer unknown ({e})", self.addr);
                false
            }
        }
    }

    /// The bound address (for TCP, with the real port when bound to 0).
    pub fn local_addr(&self) -> &Address {
        &self.addr
    }

    /// Accept one connection. For a hybrid listener, the `CONNECT` handshake
    /// is answered first; a connection asking for another port, or whose
    /// handshake is malformed, is closed and the next one awaited.
    pub async fn accept(&self) -> io::Result<BoxStream> {
        loop {
            match &self.inner {
                Inner::Unix(l, _) => {
                    let s = l.accept().await?.0;
                    if self.admits(&s) {
                        return Ok(Box::new(s));
                    }
                }
                Inner::Tcp(l) => {
                    let (s, _) = l.accept().await?;
                    s.set_nodelay(true)?;
                    return Ok(Box::new(s));
                }
                Inner::Vsock(l) => return Ok(Box::new(l.accept().await?.0)),
                Inner::Hybrid(l, _, port) => {
                    let (mut s, _) = l.accept().await?;
                    if !self.admits(&s) {
                        continue;
                    }
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, hybrid_answer(&mut s, *port))
                        .await
                    {
                        Ok(Ok(())) => return Ok(Box::new(s)),
                        Ok(Err(e)) => tracing::debug!("hybrid vsock handshake refused: {e}"),
                        Err(_) => tracing::debug!("hybrid vsock handshake timed out"),
                    }
                }
            }
        }
    }
}

async fn hybrid_answer(s: &mut UnixStream, port: u32) -> io::Result<()> {
    let line = read_line(s).await?;
    let asked = line
        .strip_prefix("CONNECT ")
        .and_then(|p| p.trim().parse::<u32>().ok());
    if asked == Some(port) {
        s.write_all(format!("OK {port}\n").as_bytes()).await
    } else {
        Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("asked for {line:?}, serving port {port}"),
        ))
    }
}

/// Bind `path`, replacing a socket file nobody answers on. Check and
/// removal are not atomic: two binders racing for one path can both
/// succeed (the second removing the first's fresh socket), so callers
/// that may race must serialise (a launch's name lock does, in
/// `bottle-host`).
async fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    match UnixListener::bind(path) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running process", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
            UnixListener::bind(path)
        }
        Err(e) => Err(e),
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Inner::Unix(_, path) | Inner::Hybrid(_, path, _) = &self.inner {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Channel;
    use crate::io::{accept_hello, dial_hello, read_message, write_message};
    use crate::message::{DnsRequest, DnsTransport, Role};

    async fn ping_pong(listen: Address, dial: Address) {
        let l = Listener::bind(&listen).await.unwrap();
        let server = tokio::spawn(async move {
            let mut s = l.accept().await.unwrap();
            accept_hello(&mut s, Role::Host, Channel::Dns, "host")
                .await
                .unwrap();
            let q: DnsRequest = read_message(&mut s, 1024).await.unwrap().unwrap();
            write_message(&mut s, &q, 1024).await.unwrap();
        });
        let mut c = connect(&dial).await.unwrap();
        dial_hello(&mut c, Role::Guest, Channel::Dns, "guest")
            .await
            .unwrap();
        let q = DnsRequest::Query {
            id: 42,
            transport: DnsTransport::Udp,
            wire: vec![1, 2, 3],
        };
        write_message(&mut c, &q, 1024).await.unwrap();
        let echo: DnsRequest = read_message(&mut c, 1024).await.unwrap().unwrap();
        assert_eq!(echo, q);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn unix_transport_carries_hello_and_frames() {
        let dir = tempfile::tempdir().unwrap();
        let base = Address::Unix(dir.path().join("host.sock"));
        let addr = base.for_port(Channel::Dns.port()).unwrap();
        ping_pong(addr.clone(), addr).await;
    }

    #[tokio::test]
    async fn hybrid_transport_does_the_connect_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let addr = Address::Hybrid {
            path: dir.path().join("v.sock"),
            port: 6002,
        };
        ping_pong(addr.clone(), addr).await;
    }

    #[tokio::test]
    async fn an_owner_only_listener_is_0600_and_closes_other_uids() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.sock");
        let addr = Address::Unix(path.clone());
        let mut l = Listener::bind_owner_only(&addr).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The owner gets through.
        let _c = connect(&addr).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), l.accept())
            .await
            .unwrap()
            .unwrap();
        // Pretend the socket belongs to another uid: now this process is
        // the stranger, and its connection is closed, never returned.
        let me = l.owner.unwrap();
        l.owner = Some(me.wrapping_add(1));
        let mut c = connect(&addr).await.unwrap();
        let accepted = tokio::time::timeout(Duration::from_millis(300), l.accept()).await;
        assert!(accepted.is_err(), "a stranger's connection was accepted");
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut b))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "the stranger must see the connection closed");
        // TCP has no uid to check.
        let tcp: Address = "tcp://127.0.0.1:0".parse().unwrap();
        assert!(Listener::bind_owner_only(&tcp).await.is_err());
    }

    #[tokio::test]
    async fn hybrid_listener_refuses_other_ports() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock");
        let l = Listener::bind(&Address::Hybrid {
            path: path.clone(),
            port: 6002,
        })
        .await
        .unwrap();
        tokio::spawn(async move {
            let _ = l.accept().await;
        });
        let err = connect(&Address::Hybrid { path, port: 7000 })
            .await
            .err()
            .unwrap();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn stale_socket_is_replaced_but_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let live = Listener::bind(&Address::Unix(path.clone())).await.unwrap();
        let err = Listener::bind(&Address::Unix(path.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(live);
        assert!(!path.exists(), "listener removes its socket on drop");
    }

    #[tokio::test]
    async fn tcp_listener_reports_its_port() {
        let l = Listener::bind(&"tcp://127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let Address::Tcp(sa) = l.local_addr() else {
            panic!("not tcp")
        };
        assert_ne!(sa.port(), 0);
    }
}
