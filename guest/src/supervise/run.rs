//! The supervision event loop: SIGCHLD → reap every child (orphans
//! included), SIGTERM/SIGINT/SIGHUP → the signal table, host shutdown
//! requests, and the restart and grace timers.

use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use bottle_shared::message::{ExecSpec, ProcessEvent};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};

use super::machine::{Next, Supervisor};
use crate::sys::Sys;

/// A request from the host to the loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostRequest {
    /// Stop the agent with this grace period, then finish.
    Shutdown(Duration),
    /// Run a process beside the agent (`bottle-host exec`); handled by the
    /// init's exec task, never by this loop.
    Exec(Box<ExecSpec>),
}

/// Processes started by `exec`: their exit status goes to the waiter
/// instead of the supervisor.
pub type ExecTable = Arc<std::sync::Mutex<HashMap<i32, oneshot::Sender<i32>>>>;

/// The signal streams the loop listens to. Create them before anything is
/// spawned, so no SIGCHLD is missed.
pub struct Signals {
    child: Signal,
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    /// Install the handlers.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            child: signal(SignalKind::child())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Wait for SIGTERM (used before supervision starts).
    pub async fn terminated(&mut self) {
        self.term.recv().await;
    }
}

/// Callbacks of the loop: events for the host and state for `status`.
pub trait Observer {
    /// A process event happened (forward it to the host).
    fn event(&mut self, ev: ProcessEvent);
    /// The supervisor's state may have changed.
    fn update(&mut self, sup: &Supervisor);
}

fn merge(a: Next, b: Next) -> Next {
    let rank = |n: &Next| match n {
        Next::Done(_) => 3,
        Next::Restart(_) => 2,
        Next::Grace(_) => 1,
        Next::Wait => 0,
    };
    if rank(&b) > rank(&a) {
        b
    } else {
        a
    }
}

/// Reap every exited child: an exec'd process's status goes to its
/// waiter, everything else to the supervisor.
pub fn reap_all(sys: &dyn Sys, sup: &mut Supervisor, execs: &ExecTable) -> Next {
    let mut next = Next::Wait;
    while let Some((pid, raw)) = sys.reap() {
        let waiter = execs.lock().unwrap_or_else(|p| p.into_inner()).remove(&pid);
        match waiter {
            Some(w) => {
                let _ = w.send(raw);
            }
            None => next = merge(next, sup.child_exited(pid, raw)),
        }
    }
    next
}

/// Run the agent until supervision is over; returns the final exit code.
pub async fn run(
    sys: Arc<dyn Sys>,
    mut sup: Supervisor,
    mut sigs: Signals,
    default_grace: Duration,
    mut host: mpsc::UnboundedReceiver<HostRequest>,
    obs: &mut dyn Observer,
    execs: ExecTable,
) -> i32 {
    let mut restart_at: Option<Instant> = None;
    let mut grace_at: Option<Instant> = None;
    let mut host_open = true;
    let mut next = sup.start();
    loop {
        for ev in sup.drain_events() {
            obs.event(ev);
        }
        obs.update(&sup);
        match next {
            Next::Done(code) => {
                // Anything that exited meanwhile is still reaped.
                reap_all(&*sys, &mut sup, &execs);
                return code;
            }
            Next::Restart(d) => restart_at = Some(Instant::now() + d),
            Next::Grace(d) => grace_at = Some(Instant::now() + d),
            Next::Wait => {}
        }
        next = tokio::select! {
            _ = sigs.child.recv() => reap_all(&*sys, &mut sup, &execs),
            _ = sigs.term.recv() => sup.signal(libc::SIGTERM, default_grace),
            _ = sigs.int.recv() => sup.signal(libc::SIGINT, default_grace),
            _ = sigs.hup.recv() => sup.signal(libc::SIGHUP, default_grace),
            req = host.recv(), if host_open => match req {
                Some(HostRequest::Shutdown(grace)) => sup.shutdown(grace),
                Some(HostRequest::Exec(_)) => Next::Wait,
                None => { host_open = false; Next::Wait }
            },
            _ = sleep_until(restart_at.unwrap_or_else(Instant::now)), if restart_at.is_some() => {
                restart_at = None;
                sup.start()
            }
            _ = sleep_until(grace_at.unwrap_or_else(Instant::now)), if grace_at.is_some() => {
                grace_at = None;
                sup.grace_expired()
            }
        };
    }
}
