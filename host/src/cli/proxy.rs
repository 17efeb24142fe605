//! `bottle-host proxy`: run the egress proxy alone.

use std::path::Path;

use anyhow::{Context, Result};
use bottle_shared::addr::Address;
use bottle_shared::transport::Listener;

use super::state_dir;
use crate::ca::Ca;
use crate::manifest;
use crate::proxy::{self, ProxyConfig};

/// Flags of `bottle-host proxy`.
#[derive(Debug)]
pub struct ProxyArgs<'a> {
    /// tcp://IP:PORT or unix:///path.
    pub listen: &'a str,
    /// The manifest.
    pub manifest: &'a Path,
    /// Extra upstream CA.
    pub upstream_ca: Option<&'a Path>,
    /// Audit log.
    pub audit_log: Option<&'a Path>,
    /// State directory.
    pub state_dir: Option<&'a Path>,
    /// Tokio worker threads (`None`: one per CPU).
    pub threads: Option<usize>,
    /// Allow a TCP listen address that is not loopback.
    pub allow_non_loopback: bool,
}

/// `bottle-host proxy`: serve until interrupted.
pub fn run(args: ProxyArgs<'_>) -> Result<i32> {
    let listen =
        Address::parse(args.listen).with_context(|| format!("--listen {}", args.listen))?;
    super::check_listen(&listen, args.allow_non_loopback)?;
    let m = manifest::load(args.manifest)?;
    let secrets = m.load_secrets()?;
    crate::hardening::hold_secrets(&secrets);
    let dir = state_dir(args.state_dir)?;
    let ca = Ca::load_or_create(&dir)?;
    let audit_log = args
        .audit_log
        .map(Path::to_path_buf)
        .or_else(|| m.egress.audit_log.clone())
        .unwrap_or_else(|| dir.join("audit.jsonl"));
    let cfg = ProxyConfig {
        manifest: m,
        secrets,
        upstream_ca: args.upstream_ca.map(Path::to_path_buf),
        audit_log,
        ca,
        addr_filter: None,
        static_hosts: Default::default(),
        lookup: None,
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build()?;
    rt.block_on(async move {
        let listen = match &listen {
            Address::Tcp(sa) => proxy::Listen::Tcp(tokio::net::TcpListener::bind(sa).await?),
            // Only this user may connect to a Unix socket (SO_PEERCRED).
            unix @ (Address::Unix(_) | Address::Hybrid { .. }) => {
                proxy::Listen::Egress(Listener::bind_owner_only(unix).await?)
            }
            other => proxy::Listen::Egress(Listener::bind(other).await?),
        };
        let shown = match &listen {
            proxy::Listen::Tcp(l) => Address::Tcp(l.local_addr()?).to_string(),
            proxy::Listen::Egress(l) => l.local_addr().to_string(),
        };
        let running = proxy::start(cfg, listen).await?;
        tracing::info!("proxy: serving on {shown}");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // On SIGINT/SIGTERM the egress listener is dropped, removing its
        // socket file; every audit line was written before its request
        // went on.
        tokio::select! {
            r = running.wait() => r?,
            _ = tokio::signal::ctrl_c() => tracing::info!("proxy: interrupted, stopping"),
            _ = term.recv() => tracing::info!("proxy: terminated, stopping"),
        }
        Ok::<_, anyhow::Error>(0)
    })
}
