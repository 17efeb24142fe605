//! The egress proxy: a hudsucker MITM that allowlists, scans and audits.
//!
//! - [`policy`]: host, port, method and path rules from `[[egress.routes]]`.
//! - `inject`: a route's credential header.
//! - [`dlp`]: credential rules and the host's secrets in every encoding.
//! - [`body`]: bounded, decompressing, streaming body scan.
//! - [`connector`]: upstream resolution with the private-address check,
//!   TLS with the system roots (plus `--upstream-ca`).
//! - [`audit`]: one JSON line per request, fail closed.
//! - [`handler`]: the hudsucker handler tying them together.
//! - [`websocket`]: WebSocket upgrades, relayed with client messages scanned
//!   and server messages redacted.
//! - [`redact`], [`redact_http`]: no host secret reaches the guest in a
//!   response (head, body, trailers).
//! - [`bridge`]: the accept loops: the guest's egress channel (`unix://`,
//!   vsock) and the standalone TCP listener, both capped.
//!
//! Every CONNECT is intercepted; see `docs/proxy.md`.

pub mod audit;
pub mod body;
pub mod body_stream;
pub mod bridge;
pub mod codings;
pub mod connector;
pub mod dlp;
pub mod handler;
pub mod inject;
pub mod policy;
pub mod redact;
pub mod redact_http;
mod reply;
mod tunnel;
pub mod websocket;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hudsucker::hyper_util::rt::{TokioExecutor, TokioTimer};
use hudsucker::hyper_util::server::conn::auto::Builder as ServerBuilder;
use hudsucker::Proxy;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::ca::Ca;
use crate::manifest::{Manifest, Secret};

pub use connector::{AddrFilter, Lookup};

/// How long a client may take to send a request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The proxy could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The CA.
    #[error(transparent)]
    Ca(#[from] crate::ca::CaError),
    /// The upstream connector.
    #[error(transparent)]
    Connect(#[from] connector::ConnectError),
    /// DLP rules.
    #[error(transparent)]
    Dlp(#[from] dlp::BuildError),
    /// Audit log.
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    /// hudsucker.
    #[error("proxy: {0}")]
    Hudsucker(#[from] hudsucker::Error),
    /// Sockets.
    #[error("proxy: {0}")]
    Io(#[from] std::io::Error),
}

/// Everything the proxy needs.
pub struct ProxyConfig {
    /// The manifest (routes, limits, `allow_private`).
    pub manifest: Manifest,
    /// Loaded secret values (DLP and injection).
    pub secrets: Vec<Secret>,
    /// Extra CA trusted for upstream servers.
    pub upstream_ca: Option<PathBuf>,
    /// Where audit lines go.
    pub audit_log: PathBuf,
    /// The egress CA.
    pub ca: Ca,
    /// Only dial addresses the DNS filter returned (`None`: not active).
    pub addr_filter: Option<AddrFilter>,
    /// Names answered from this table instead of the system resolver.
    pub static_hosts: HashMap<String, Vec<std::net::IpAddr>>,
    /// Resolve upstream names with this instead of the system resolver.
    pub lookup: Option<Lookup>,
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("routes", &self.manifest.egress.routes.len())
            .field("secrets", &self.secrets)
            .field("audit_log", &self.audit_log)
            .finish_non_exhaustive()
    }
}

/// Where the proxy takes its clients from.
#[derive(Debug)]
pub enum Listen {
    /// A TCP listener: `bottle-host proxy --listen tcp://…` and tests.
    /// Anyone who can reach it can use the proxy (`docs/proxy.md`), at
    /// most `egress.max_connections` at once ([`bridge::serve_tcp`]).
    Tcp(TcpListener),
    /// The guest's egress channel (a Unix socket in the run directory, or
    /// vsock): each connection does the versioned hello and is then served
    /// directly, with no TCP listener anywhere ([`bridge`]).
    Egress(bottle_shared::transport::Listener),
}

impl From<TcpListener> for Listen {
    fn from(l: TcpListener) -> Listen {
        Listen::Tcp(l)
    }
}

/// Streams an HTTP/2 client may have open at once on one connection
/// (hyper's default is 200; browsers and API clients stay well under 100).
pub const MAX_STREAMS: u32 = 100;

/// How many accepted connections may wait for the proxy.
const BACKLOG: usize = 256;

/// A running proxy.
#[derive(Debug)]
pub struct Running {
    /// The TCP address it serves on (`None` for the egress channel).
    pub addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), hudsucker::Error>>,
    /// The accept loop ([`bridge`]) handing connections to the proxy.
    bridge: JoinHandle<std::io::Result<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.bridge.abort();
    }
}

impl Running {
    /// Stop accepting and wait for the proxy to finish.
    pub async fn stop(mut self) {
        self.bridge.abort();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Wait until the proxy exits by itself (or its listener fails).
    pub async fn wait(mut self) -> Result<(), ProxyError> {
        let bridge = async {
            match (&mut self.bridge).await {
                Ok(r) => r,
                Err(e) => Err(std::io::Error::other(e)),
            }
        };
        tokio::select! {
            r = &mut self.task => match r {
                Ok(r) => Ok(r?),
                Err(e) => Err(ProxyError::Io(std::io::Error::other(e))),
            },
            r = bridge => Err(ProxyError::Io(r.err().unwrap_or_else(|| {
                std::io::Error::other("the proxy's listener stopped")
            }))),
        }
    }
}

/// Start the proxy on `listen`: a TCP listener or the egress channel.
pub async fn start(cfg: ProxyConfig, listen: impl Into<Listen>) -> Result<Running, ProxyError> {
    let listen = listen.into();
    let addr = match &listen {
        Listen::Tcp(listener) => {
            // hudsucker does not set TCP_NODELAY on accepted sockets; on
            // Linux they inherit it from the listener. Without it, Nagle
            // and delayed ACKs add ~40 ms to the CONNECT + TLS handshake
            // of every new connection.
            socket2::SockRef::from(listener).set_tcp_nodelay(true)?;
            Some(listener.local_addr()?)
        }
        Listen::Egress(_) => None,
    };
    for w in cfg.manifest.allowlist_warnings() {
        tracing::warn!("proxy: {w}");
    }
    if cfg.manifest.egress.allow_private {
        tracing::warn!(
            "proxy: egress.allow_private = true: upstreams on loopback and private \
             networks are reachable from the bottle; use only for local testing"
        );
    }
    let resolver =
        connector::CheckedResolver::new(cfg.manifest.egress.allow_private, cfg.addr_filter)
            .with_hosts(cfg.static_hosts)
            .with_lookup(cfg.lookup);
    let connector = connector::build(resolver.clone(), cfg.upstream_ca.as_deref(), true)?;
    let ws_connector = connector::build(resolver, cfg.upstream_ca.as_deref(), false)?;
    let shared = Arc::new(handler::Shared {
        routes: cfg.manifest.egress.routes.clone(),
        dlp: dlp::Dlp::new(&cfg.secrets)?,
        redactor: redact::Redactor::new(&cfg.secrets)?,
        injections: inject::Injections::new(
            &cfg.manifest.egress.routes,
            &cfg.secrets
                .iter()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect::<HashMap<_, _>>(),
        ),
        audit: audit::AuditLog::open(&cfg.audit_log)?,
        max_body: cfg.manifest.egress.max_body_bytes,
        ws_connector,
    });
    let mut server = ServerBuilder::new(TokioExecutor::new());
    server
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .title_case_headers(true)
        .preserve_header_case(true);
    server
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS);
    let (stop, stopped) = oneshot::channel::<()>();
    let cap = cfg.manifest.egress.max_connections;
    let (tx, incoming) = tokio::sync::mpsc::channel(BACKLOG);
    let bridge = match listen {
        Listen::Tcp(listener) => tokio::spawn(bridge::serve_tcp(listener, tx, cap)),
        Listen::Egress(listener) => tokio::spawn(bridge::serve(listener, tx, cap)),
    };
    let proxy = Proxy::builder()
        .with_incoming(incoming)
        .with_ca(cfg.ca.authority()?)
        .with_http_connector(connector)
        .with_http_handler(handler::Handler::new(shared))
        .with_server(server)
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
        })
        .build()?;
    let task = tokio::spawn(proxy.start());
    Ok(Running {
        addr,
        stop: Some(stop),
        task,
        bridge,
    })
}
