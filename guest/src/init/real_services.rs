//! The real guest services: the DNS stub on `127.0.0.1:<dns.port>` relaying
//! to the host's DNS channel, ownership of `/etc/resolv.conf`, and the
//! egress forwarder on `127.0.0.1:<proxy_port>` relaying to the host's
//! egress channel.
//!
//! Both are started as tasks on the init's runtime. A service that cannot
//! bind is logged loudly and reported as `failed` by `status`; that fails
//! closed (no resolver or no proxy means no way out), so the boot goes on.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bottle_shared::channel::{DNS_PORT, EGRESS_PORT};
use bottle_shared::message::GuestConfig;
use bottle_shared::Address;

use super::services::{ServiceError, ServiceHandles, Services};
use crate::dns::{self, ClientTimings, ListenLimits, Stats};
use crate::egress::{Counters, Forwarder};
use crate::status::StatsFn;

/// The production services, writing `resolv.conf` below `root`.
#[derive(Clone, Debug)]
pub struct RealServices {
    /// Root filesystem prefix (`/` in a VM).
    pub root: PathBuf,
}

/// A service's state as `status` shows it until its counters exist.
#[derive(Default)]
struct Slot<T> {
    ready: OnceLock<Arc<T>>,
    failed: OnceLock<String>,
}

fn stats_fn<T: Send + Sync + 'static>(
    slot: Arc<Slot<T>>,
    snap: impl Fn(&T) -> serde_json::Value + Send + Sync + 'static,
) -> StatsFn {
    Arc::new(move || {
        if let Some(t) = slot.ready.get() {
            snap(t)
        } else if let Some(e) = slot.failed.get() {
            serde_json::json!({ "state": "failed", "error": e })
        } else {
            serde_json::json!({ "state": "starting" })
        }
    })
}

fn err(service: &str, e: impl std::fmt::Display) -> ServiceError {
    ServiceError {
        service: service.to_string(),
        message: e.to_string(),
    }
}

impl Services for RealServices {
    fn start(&self, cfg: &GuestConfig, host: &Address) -> Result<ServiceHandles, ServiceError> {
        let mut handles = ServiceHandles::default();

        // DNS stub and resolv.conf.
        let dns_addr = host.for_port(DNS_PORT).map_err(|e| err("dns", e))?;
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, cfg.dns.port));
        let slot: Arc<Slot<Stats>> = Arc::default();
        let s = slot.clone();
        tokio::spawn(async move {
            match dns::Stub::start(
                dns_addr,
                listen,
                ClientTimings::default(),
                ListenLimits::default(),
            )
            .await
            {
                Ok(stub) => {
                    tracing::info!("dns-stub: listening on {}", stub.local_addr);
                    let _ = s.ready.set(stub.stats.clone());
                    if let Err(e) = stub.run().await {
                        tracing::error!("dns-stub stopped: {e}");
                    }
                }
                Err(e) => {
                    tracing::error!("dns-stub: cannot listen on {listen}: {e}");
                    let _ = s.failed.set(e.to_string());
                }
            }
        });
        handles.dns = Some(stats_fn(slot, |st: &Stats| {
            serde_json::to_value(st.snapshot()).unwrap_or_default()
        }));
        let resolv = self.root.join("etc/resolv.conf");
        tokio::spawn(dns::resolv::own(
            resolv,
            cfg.dns.clone(),
            Duration::from_secs(1),
        ));

        // Egress forwarder.
        if cfg.proxy_port != 0 {
            let egress_addr = host.for_port(EGRESS_PORT).map_err(|e| err("egress", e))?;
            let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, cfg.proxy_port));
            let slot: Arc<Slot<Counters>> = Arc::default();
            let s = slot.clone();
            tokio::spawn(async move {
                match Forwarder::bind(listen, egress_addr).await {
                    Ok(fwd) => {
                        tracing::info!("egress: listening on {listen}");
                        let _ = s.ready.set(fwd.counters());
                        if let Err(e) = fwd.serve().await {
                            tracing::error!("egress forwarder stopped: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::error!("egress: cannot listen on {listen}: {e}");
                        let _ = s.failed.set(e.to_string());
                    }
                }
            });
            handles.egress = Some(stats_fn(slot, |c: &Counters| {
                serde_json::to_value(c.snapshot()).unwrap_or_default()
            }));
        }
        Ok(handles)
    }
}
