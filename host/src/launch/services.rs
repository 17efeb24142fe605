//! The host's side of a bottle: the DNS filter on port 6002, the egress
//! proxy on port 6003, the control listener on port 6001 and the session
//! listener on port 6004, all as
//! owner-only Unix sockets in the private run directory (where
//! `vhost-device-vsock` delivers the guest's connections). There is no
//! TCP or UDP listener: nothing else on the host can reach them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bottle_shared::channel::{CONTROL_PORT, DNS_PORT, EGRESS_PORT, SESSION_PORT};
use bottle_shared::transport::Listener;
use bottle_shared::Address;
use tokio::task::JoinHandle;

use super::rundir::RunDir;
use crate::ca::Ca;
use crate::dns::policy::NameScan;
use crate::dns::{Audit, Handler, HickoryUpstream};
use crate::manifest::{Manifest, Secret};
use crate::proxy::{self, ProxyConfig};

/// What [`start`] needs.
#[derive(Debug)]
pub struct Inputs {
    /// The manifest.
    pub manifest: Manifest,
    /// Loaded secrets.
    pub secrets: Vec<Secret>,
    /// The egress CA.
    pub ca: Ca,
    /// Extra CA for upstream servers.
    pub upstream_ca: Option<PathBuf>,
    /// The proxy's audit log.
    pub proxy_audit: PathBuf,
    /// The DNS filter's audit log.
    pub dns_audit: PathBuf,
}

/// The running services.
#[derive(Debug)]
pub struct Services {
    /// The control listener (port 6001).
    pub control: Listener,
    /// The session listener (port 6004): the agent's streams.
    pub session: Listener,
    proxy: proxy::Running,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

async fn bind(run: &RunDir, port: u32) -> Result<Listener> {
    let path = run.port_socket(port);
    Listener::bind_owner_only(&Address::Unix(path.clone()))
        .await
        .with_context(|| format!("cannot listen on {}", path.display()))
}

/// Start everything the guest will connect to.
pub async fn start(inp: Inputs, run: &RunDir) -> Result<Services> {
    let m = inp.manifest;
    let upstream = HickoryUpstream::new(&m.dns.upstreams, Duration::from_millis(m.dns.timeout_ms))
        .context("DNS upstream")?;
    let audit = Audit::to_file(&inp.dns_audit)
        .with_context(|| format!("DNS audit log {}", inp.dns_audit.display()))?;
    // Names holding a host secret or a credential never go upstream, from
    // the guest's queries or the proxy's own lookups.
    let dlp = crate::proxy::dlp::Dlp::new(&inp.secrets).context("DLP rules")?;
    let names = NameScan(Arc::new(move |name: &str| dlp.scan_name(name).is_some()));
    let handler = Arc::new(Handler::new(&m, Arc::new(upstream), audit).scan_names(names));
    let learned = handler.learned();
    let cfg = ProxyConfig {
        manifest: m,
        secrets: inp.secrets,
        upstream_ca: inp.upstream_ca,
        audit_log: inp.proxy_audit,
        ca: inp.ca,
        // Only addresses the DNS filter handed out for that very name.
        addr_filter: Some(Arc::new(move |host: &str, ip| learned.is_learned(host, ip))),
        static_hosts: Default::default(),
        lookup: Some(super::lookup::through_filter(Arc::clone(&handler))),
    };
    let egress = bind(run, EGRESS_PORT).await?;
    let proxy = proxy::start(cfg, proxy::Listen::Egress(egress))
        .await
        .context("egress proxy")?;

    let dns = bind(run, DNS_PORT).await?;
    let control = bind(run, CONTROL_PORT).await?;
    let session = bind(run, SESSION_PORT).await?;
    let tasks = vec![tokio::spawn(crate::dns::server::serve(dns, handler))];
    Ok(Services {
        control,
        session,
        proxy,
        tasks,
    })
}

impl Services {
    /// Stop serving; the audit logs are flushed by their writers.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.proxy.stop().await;
    }
}
