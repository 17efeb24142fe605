//! `bottle-host dns`: serve the DNS channel alone, or print the verdict a
//! name would get (`bottle-host dns query NAME [TYPE]`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bottle_shared::transport::Listener;
use bottle_shared::Address;
use hickory_proto::rr::RecordType;

use super::{DnsArgs, DnsQuery};
use crate::dns::{Audit, Handler, HickoryUpstream, Policy};
use crate::manifest;

/// Run `bottle-host dns`.
pub fn run(args: DnsArgs) -> Result<i32> {
    match args.query {
        Some(DnsQuery::Query {
            name,
            rtype,
            manifest,
        }) => query(&name, &rtype, &manifest),
        None => {
            let listen = args
                .listen
                .ok_or_else(|| anyhow!("--listen is required to serve (or use `dns query`)"))?;
            let manifest = args
                .manifest
                .ok_or_else(|| anyhow!("--manifest is required to serve"))?;
            serve(
                &listen,
                &manifest,
                args.upstream.as_deref(),
                args.audit_log,
                args.allow_non_loopback,
            )
        }
    }
}

fn query(name: &str, rtype: &str, manifest: &Path) -> Result<i32> {
    let m = manifest::load(manifest)?;
    let rtype = RecordType::from_str(&rtype.to_ascii_uppercase())
        .map_err(|_| anyhow!("unknown record type {rtype:?}"))?;
    let policy = Policy::from_manifest(&m);
    match policy.check_static(name, rtype) {
        Ok(normalised) => {
            println!("allowed: {normalised} {rtype}");
            Ok(0)
        }
        Err(rule) => {
            println!("denied: {name} {rtype} (rule {rule})");
            Ok(1)
        }
    }
}

fn serve(
    listen: &str,
    manifest: &Path,
    upstream: Option<&str>,
    audit_log: Option<PathBuf>,
    allow_non_loopback: bool,
) -> Result<i32> {
    let addr = Address::parse(listen).with_context(|| format!("--listen {listen}"))?;
    super::check_listen(&addr, allow_non_loopback)?;
    let m = manifest::load(manifest)?;
    for w in m.allowlist_warnings() {
        tracing::warn!("dns: {w}");
    }
    let upstreams = match upstream {
        Some(u) => vec![parse_upstream(u)?],
        None => m.dns.upstreams.clone(),
    };
    let audit = match &audit_log {
        Some(p) => Audit::to_file(p)?,
        None => Audit::tracing_only(),
    };
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    rt.block_on(async move {
        let up = HickoryUpstream::new(&upstreams, Duration::from_millis(m.dns.timeout_ms))?;
        let handler = Arc::new(Handler::new(&m, Arc::new(up), audit));
        // A Unix socket is for this user only (SO_PEERCRED).
        let listener = match &addr {
            Address::Unix(_) | Address::Hybrid { .. } => Listener::bind_owner_only(&addr).await,
            _ => Listener::bind(&addr).await,
        }
        .with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!("dns: serving on {}", listener.local_addr());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // On SIGINT/SIGTERM the listener is dropped, removing its socket file.
        let served = tokio::select! {
            r = crate::dns::server::serve(listener, Arc::clone(&handler)) => r,
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("dns: interrupted, stopping");
                Ok(())
            }
            _ = term.recv() => {
                tracing::info!("dns: terminated, stopping");
                Ok(())
            }
        };
        // Every decision reaches the audit log before we exit.
        handler.flush();
        served?;
        Ok(0)
    })
}

/// `IP:PORT`, or a bare IP meaning port 53.
fn parse_upstream(s: &str) -> Result<SocketAddr> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    match s.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(SocketAddr::new(ip, 53)),
        Err(_) => bail!("--upstream {s:?}: expected IP:PORT (e.g. 127.0.0.1:5353)"),
    }
}
