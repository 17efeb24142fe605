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
}

/// `bottle-host proxy`: serve until interrupted.
pub fn run(args: ProxyArgs<'_>) -> Result<i32> {
    let listen =
        Address::parse(args.listen).with_context(|| format!("--listen {}", args.listen))?;
    let m = manifest::load(args.manifest)?;
    let secrets = m.load_secrets()?;
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
        let (tcp, bridge) = match &listen {
            Address::Tcp(sa) => (tokio::net::TcpListener::bind(sa).await?, None),
            other => {
                let l = Listener::bind(other).await?;
                (tokio::net::TcpListener::bind("127.0.0.1:0").await?, Some(l))
            }
        };
        let running = proxy::start(cfg, tcp).await?;
        let shown = match &bridge {
            Some(l) => l.local_addr().to_string(),
            None => Address::Tcp(running.addr).to_string(),
        };
        tracing::info!("proxy: serving on {shown}");
        let addr = running.addr;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // On SIGINT/SIGTERM the bridge listener is dropped, removing its
        // socket file; every audit line was written before its request
        // went on.
        tokio::select! {
            r = running.wait() => r?,
            r = async {
                match bridge {
                    Some(l) => proxy::bridge::serve(l, addr).await,
                    None => std::future::pending().await,
                }
            } => r?,
            _ = tokio::signal::ctrl_c() => tracing::info!("proxy: interrupted, stopping"),
            _ = term.recv() => tracing::info!("proxy: terminated, stopping"),
        }
        Ok::<_, anyhow::Error>(0)
    })
}
