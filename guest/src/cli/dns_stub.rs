//! `bottle-guest dns-stub`: the DNS stub on its own, for tests and
//! benchmarks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use bottle_shared::message::ResolverSettings;
use bottle_shared::Address;

use crate::dns::{resolv, ClientTimings, ListenLimits, Stub};

/// Run the stub until it fails or is killed.
pub fn run(host: &str, listen: &str, resolv_conf: Option<PathBuf>) -> Result<i32> {
    let host: Address = host.parse().with_context(|| format!("--host {host:?}"))?;
    let listen: SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen:?}: use IP:PORT, e.g. 127.0.0.1:53"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async move {
        let stub = Stub::start(
            host,
            listen,
            ClientTimings::default(),
            ListenLimits::default(),
        )
        .await
        .with_context(|| format!("binding {listen}"))?;
        tracing::info!("dns-stub: listening on {}", stub.local_addr);
        if let Some(path) = resolv_conf {
            tokio::spawn(resolv::own(
                path,
                ResolverSettings::default(),
                Duration::from_secs(1),
            ));
        }
        tokio::select! {
            res = stub.run() => res.context("dns-stub listener failed")?,
            _ = tokio::signal::ctrl_c() => tracing::info!("dns-stub: interrupted"),
        }
        Ok(0)
    })
}
