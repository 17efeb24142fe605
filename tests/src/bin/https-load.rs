//! A small HTTPS load generator for `bench/proxy.sh`: N connections, each
//! sending GETs back to back for a fixed time, optionally through an HTTP
//! proxy (CONNECT), with keep-alive or a new connection (TCP, CONNECT,
//! TLS) per request. Prints one line:
//! `requests=N errors=N rps=R p50_ms=X p99_ms=Y cpu_us=C` (`cpu_us`: this
//! process's own CPU time, user + system, per completed request).
//!
//! With `--unix PATH` each connection goes to the guest's egress channel
//! as `bottle-host launch` serves it (`bottle-host proxy --listen
//! unix:///PATH`): the versioned hello (`Role::Guest`, `Channel::Egress`),
//! then the CONNECT, as the guest's egress forwarder does.
//!
//! TLS sessions are resumed as a long-lived client does: every ticket the
//! server sends is kept (up to `--tickets`, default 256 per server name;
//! rustls's own store keeps 8, so with 32 workers a third of the new
//! connections found none and verified the certificate chain again).
//! `--tickets 0` turns resumption off. The line printed also counts
//! `resumed=N` handshakes.
//!
//! Usage: https-load URL --cacert FILE [--proxy HOST:PORT | --unix PATH]
//!        [-c 32] [-d SECONDS] [--new-conn] [--tickets 256]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bottle_shared::channel::Channel;
use bottle_shared::io::dial_hello;
use bottle_shared::message::Role;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::pki_types::ServerName;
use rustls::HandshakeKind;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;

struct Opts {
    host: String,
    port: u16,
    path: String,
    proxy: Option<String>,
    unix: Option<String>,
    cacert: String,
    conns: usize,
    secs: u64,
    new_conn: bool,
    tickets: usize,
}

fn parse() -> Result<Opts> {
    let mut args = std::env::args().skip(1);
    let mut url = None;
    let (mut proxy, mut unix, mut cacert) = (None, None, None);
    let (mut conns, mut secs, mut new_conn, mut tickets) = (32, 10, false, 256);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| anyhow!("{a} needs a value"));
        match a.as_str() {
            "--proxy" => proxy = Some(val()?),
            "--unix" => unix = Some(val()?),
            "--cacert" => cacert = Some(val()?),
            "-c" => conns = val()?.parse()?,
            "-d" => secs = val()?.parse()?,
            "--new-conn" => new_conn = true,
            "--tickets" => tickets = val()?.parse()?,
            _ if url.is_none() => url = Some(a),
            _ => bail!("unexpected argument {a:?}"),
        }
    }
    let url = url.ok_or_else(|| anyhow!("usage: https-load URL --cacert FILE [--proxy H:P]"))?;
    if proxy.is_some() && unix.is_some() {
        bail!("--proxy and --unix exclude each other");
    }
    let uri: hyper::Uri = url.parse().context("URL")?;
    if uri.scheme_str() != Some("https") {
        bail!("only https:// URLs");
    }
    Ok(Opts {
        host: uri.host().context("URL host")?.to_string(),
        port: uri.port_u16().unwrap_or(443),
        path: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        proxy,
        unix,
        cacert: cacert.context("--cacert is required")?,
        conns,
        secs,
        new_conn,
        tickets,
    })
}

/// Resumption state by server name, as rustls's own in-memory store
/// keeps it (key-exchange hint, one TLS 1.2 session) but with up to `cap`
/// TLS 1.3 tickets each instead of 8 (the oldest dropped first).
#[derive(Debug)]
struct Tickets {
    cap: usize,
    by_name: Mutex<HashMap<ServerName<'static>, Resumable>>,
}

#[derive(Debug, Default)]
struct Resumable {
    kx_hint: Option<rustls::NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    tls13: VecDeque<Tls13ClientSessionValue>,
}

impl Tickets {
    fn with<T>(&self, name: ServerName<'static>, f: impl FnOnce(&mut Resumable) -> T) -> T {
        let mut map = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(name).or_default())
    }
}

impl ClientSessionStore for Tickets {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.with(name, |r| r.kx_hint = Some(group));
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.with(name.to_owned(), |r| r.kx_hint)
    }
    fn set_tls12_session(&self, name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.with(name, |r| r.tls12 = Some(value));
    }
    fn tls12_session(&self, name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.with(name.to_owned(), |r| r.tls12.clone())
    }
    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.with(name.clone(), |r| r.tls12 = None);
    }
    fn insert_tls13_ticket(&self, name: ServerName<'static>, value: Tls13ClientSessionValue) {
        let cap = self.cap;
        self.with(name, |r| {
            if r.tls13.len() >= cap {
                r.tls13.pop_front();
            }
            r.tls13.push_back(value);
        });
    }
    fn take_tls13_ticket(&self, name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.with(name.clone(), |r| r.tls13.pop_back())
    }
}

fn tls(cacert: &str, tickets: usize) -> Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(cacert).with_context(|| cacert.to_string())?;
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.resumption = if tickets == 0 {
        Resumption::disabled()
    } else {
        Resumption::store(Arc::new(Tickets {
            cap: tickets,
            by_name: Mutex::new(HashMap::new()),
        }))
    };
    Ok(TlsConnector::from(Arc::new(cfg)))
}

type Sender = http1::SendRequest<Empty<Bytes>>;

/// Handshakes that resumed a session.
static RESUMED: AtomicU64 = AtomicU64::new(0);

/// Software string sent in the egress channel's hello.
const SOFTWARE: &str = concat!("https-load/", env!("CARGO_PKG_VERSION"));

/// TCP (or the egress channel's hello), CONNECT if proxied, TLS, HTTP/1.1
/// handshake.
async fn connect(o: &Opts, tls: &TlsConnector) -> Result<Sender> {
    let target = format!("{}:{}", o.host, o.port);
    if let Some(path) = &o.unix {
        let mut s = UnixStream::connect(path).await?;
        dial_hello(&mut s, Role::Guest, Channel::Egress, SOFTWARE).await?;
        tunnel(&mut s, &target).await?;
        return handshake(o, tls, s).await;
    }
    let mut tcp = TcpStream::connect(o.proxy.as_deref().unwrap_or(&target)).await?;
    tcp.set_nodelay(true)?;
    if o.proxy.is_some() {
        tunnel(&mut tcp, &target).await?;
    }
    handshake(o, tls, tcp).await
}

/// Ask the proxy for a tunnel to `target` and read its reply.
async fn tunnel<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, target: &str) -> Result<()> {
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await?;
    // Read the reply in whatever chunks arrive (as curl does), not a
    // byte per read(2): the proxy sends nothing after the head until
    // the client hello, so there is nothing to over-read.
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            bail!("proxy closed during CONNECT");
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 8192 {
            bail!("CONNECT reply head too long");
        }
    }
    if !head.ends_with(b"\r\n\r\n") {
        bail!("proxy sent data after the CONNECT reply head");
    }
    if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
        bail!("CONNECT refused: {}", String::from_utf8_lossy(&head));
    }
    Ok(())
}

/// TLS and the HTTP/1.1 handshake over `io`.
async fn handshake<S>(o: &Opts, tls: &TlsConnector, io: S) -> Result<Sender>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let name = ServerName::try_from(o.host.clone())?;
    let stream = tls.connect(name, io).await?;
    if stream.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed) {
        RESUMED.fetch_add(1, Ordering::Relaxed);
    }
    let (send, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

async fn get(o: &Opts, send: &mut Sender) -> Result<()> {
    send.ready().await?;
    let req = hyper::Request::get(o.path.as_str())
        .header("host", format!("{}:{}", o.host, o.port))
        .body(Empty::new())?;
    let res = send.send_request(req).await?;
    if !res.status().is_success() {
        bail!("status {}", res.status());
    }
    res.into_body().collect().await?;
    Ok(())
}

/// One connection's loop; returns latencies (µs) and errors.
async fn worker(o: Arc<Opts>, tls: TlsConnector, until: Instant) -> (Vec<u32>, u64) {
    let (mut lat, mut errors) = (Vec::new(), 0u64);
    let mut send: Option<Sender> = None;
    while Instant::now() < until {
        let t = Instant::now();
        let r = async {
            let s = match send.as_mut() {
                Some(s) if !o.new_conn => s,
                _ => send.insert(connect(&o, &tls).await?),
            };
            get(&o, s).await
        }
        .await;
        match r {
            Ok(()) => lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32),
            Err(e) => {
                errors += 1;
                send = None;
                if errors <= 3 {
                    eprintln!("https-load: {e:#}");
                }
            }
        }
        if o.new_conn {
            send = None;
        }
    }
    (lat, errors)
}

/// CPU time (user + system) this process has used, seconds.
fn own_cpu_secs() -> f64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage for the call to fill in.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = Arc::new(parse()?);
    let tls = tls(&o.cacert, o.tickets)?;
    let start = Instant::now();
    let until = start + Duration::from_secs(o.secs);
    let tasks: Vec<_> = (0..o.conns)
        .map(|_| tokio::spawn(worker(o.clone(), tls.clone(), until)))
        .collect();
    let (mut lat, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * p) as usize).min(lat.len() - 1);
        lat[i] as f64 / 1000.0
    };
    println!(
        "requests={} errors={errors} rps={:.0} p50_ms={:.2} p99_ms={:.2} cpu_us={:.0} resumed={}",
        lat.len(),
        lat.len() as f64 / secs,
        pct(0.50),
        pct(0.99),
        own_cpu_secs() * 1e6 / lat.len().max(1) as f64,
        RESUMED.load(Ordering::Relaxed)
    );
    Ok(())
}
