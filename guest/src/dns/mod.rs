//! The guest's DNS stub: the only resolver the agent can reach.
//!
//! It listens on 127.0.0.1:53 (UDP and TCP) and relays every query, as raw
//! wire bytes, to the host's DNS channel, where policy is decided. The
//! guest does the minimum itself: it drops packets that are not queries,
//! answers SERVFAIL when the host fails or is away (never hangs a client),
//! and truncates UDP answers to the client's size limit.
//!
//! - [`client`]: one persistent, multiplexed connection to the host.
//! - [`listener`]: the TCP listener and the awaited query path.
//! - [`udp`]: the UDP listener, batched, with no task per query.
//! - [`mmsg`]: `recvmmsg` and `sendmmsg` for it.
//! - [`wire`]: header checks, truncation, SERVFAIL.
//! - [`stats`]: counters and their snapshot.
//! - [`resolv`]: writing and guarding `/etc/resolv.conf`.
//!
//! See `docs/dns-stub.md`.

pub mod client;
pub mod listener;
pub mod mmsg;
pub mod resolv;
pub mod stats;
pub mod udp;
pub mod wire;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use bottle_shared::Address;

pub use client::{ClientTimings, HostClient, QueryError};
pub use listener::ListenLimits;
pub use stats::{Stats, StatsSnapshot};

/// A running stub: its bound address, counters and host client.
#[derive(Debug)]
pub struct Stub {
    /// The address UDP and TCP are bound to.
    pub local_addr: SocketAddr,
    /// Live counters.
    pub stats: Arc<Stats>,
    /// The host client.
    pub client: HostClient,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    conn_task: tokio::task::JoinHandle<()>,
}

impl Stub {
    /// Bind UDP and TCP on `listen` (port 0 picks a free port), start the
    /// host client for `host` (the exact DNS channel address) and serve.
    pub async fn start(
        host: Address,
        listen: SocketAddr,
        timings: ClientTimings,
        limits: ListenLimits,
    ) -> std::io::Result<Stub> {
        let (udp, tcp) = listener::bind(listen).await?;
        let local_addr = udp.local_addr()?;
        let stats = Arc::new(Stats::default());
        let (client, conn_task) = HostClient::start(host, timings, stats.clone());
        let ctx = listener::Ctx {
            client: client.clone(),
            stats: stats.clone(),
            limits,
        };
        let tasks = vec![
            tokio::spawn(listener::serve_udp(ctx.clone(), udp)),
            tokio::spawn(listener::serve_tcp(ctx, tcp)),
        ];
        Ok(Stub {
            local_addr,
            stats,
            client,
            tasks,
            conn_task,
        })
    }

    /// Serve until a listener fails.
    pub async fn run(mut self) -> std::io::Result<()> {
        let (Some(tcp), Some(udp)) = (self.tasks.pop(), self.tasks.pop()) else {
            return Ok(());
        };
        let res = tokio::select! {
            r = udp => r,
            r = tcp => r,
        };
        res.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.conn_task.abort();
    }
}
