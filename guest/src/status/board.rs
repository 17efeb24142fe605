//! The init's live state, shared between the init and the status server,
//! and the [`Snapshot`] it serves.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::supervise::State;

/// A source of counters (DNS stub, egress forwarder), read on each request.
pub type StatsFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// The connection to the host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    /// Control channel address.
    pub address: String,
    /// `connecting`, `connected` or `disconnected`.
    pub state: String,
    /// The host's software version from its hello.
    pub peer_software: Option<String>,
    /// The host's protocol version, `major.minor`.
    pub peer_protocol: Option<String>,
}

/// One supervised process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStatus {
    /// Which process (`agent`).
    pub name: String,
    /// Its pid while it runs.
    pub pid: Option<i32>,
    /// Its state.
    pub state: State,
    /// Restarts so far.
    pub restarts: u32,
    /// Exit code of the last run.
    pub last_exit: Option<i32>,
}

/// What `bottle-guest status` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// `bottle-guest` version.
    pub software: String,
    /// Milliseconds since the init started.
    pub uptime_ms: u64,
    /// Milliseconds from init start to the first agent exec.
    pub agent_started_ms: Option<u64>,
    /// The control connection.
    pub host: HostStatus,
    /// DNS stub counters; `None` when the stub is not running.
    pub dns: Option<serde_json::Value>,
    /// Egress forwarder counters; `None` when it is not running.
    pub egress: Option<serde_json::Value>,
    /// Where the egress CA was installed.
    pub ca_installed: Vec<String>,
    /// Supervised processes.
    pub processes: Vec<ProcessStatus>,
    /// Children reaped that were not the agent.
    pub orphans_reaped: u64,
}

#[derive(Default)]
struct Inner {
    agent_started_ms: Option<u64>,
    host: HostStatus,
    dns: Option<StatsFn>,
    egress: Option<StatsFn>,
    ca: Vec<String>,
    processes: Vec<ProcessStatus>,
    orphans_reaped: u64,
}

/// Shared, cheaply cloneable live state.
#[derive(Clone)]
pub struct Board {
    started: Instant,
    inner: Arc<Mutex<Inner>>,
}

impl Board {
    /// A board whose uptime counts from `started`.
    pub fn new(started: Instant) -> Self {
        Board {
            started,
            inner: Arc::default(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Update the host connection state.
    pub fn set_host(&self, host: HostStatus) {
        self.with(|i| i.host = host);
    }
    /// Change only the host connection state word.
    pub fn set_host_state(&self, state: &str) {
        self.with(|i| i.host.state = state.to_string());
    }
    /// Plug in the services' counters.
    pub fn set_stats(&self, dns: Option<StatsFn>, egress: Option<StatsFn>) {
        self.with(|i| {
            i.dns = dns;
            i.egress = egress;
        });
    }
    /// Record where the CA went.
    pub fn set_ca(&self, places: Vec<String>) {
        self.with(|i| i.ca = places);
    }
    /// Update the agent's entry and the orphan count.
    pub fn set_agent(&self, p: ProcessStatus, orphans_reaped: u64) {
        self.with(|i| {
            if p.pid.is_some() && i.agent_started_ms.is_none() {
                i.agent_started_ms = Some(self.started.elapsed().as_millis() as u64);
            }
            i.orphans_reaped = orphans_reaped;
            match i.processes.iter_mut().find(|q| q.name == p.name) {
                Some(q) => *q = p,
                None => i.processes.push(p),
            }
        });
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Snapshot {
        let (dns, egress) = self.with(|i| (i.dns.clone(), i.egress.clone()));
        self.with(|i| Snapshot {
            software: crate::software(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            agent_started_ms: i.agent_started_ms,
            host: i.host.clone(),
            dns: dns.map(|f| f()),
            egress: egress.map(|f| f()),
            ca_installed: i.ca.clone(),
            processes: i.processes.clone(),
            orphans_reaped: i.orphans_reaped,
        })
    }
}
