//! The supervision state machine: start, reap, restart with backoff,
//! forward signals, shut down with a grace period. It makes every side
//! effect through [`Sys`] and returns what the caller must wait for next,
//! so it runs the same under the real event loop and in unit tests.

use std::sync::Arc;
use std::time::Duration;

use bottle_shared::message::{ProcessEvent, RestartPolicy};
use serde::{Deserialize, Serialize};

use super::exit::exit_code_from_wait_status;
use super::policy::{Decision, RestartState};
use super::signals::{decide, SignalAction};
use crate::sys::{SpawnPlan, Sys};

/// Exit code when the agent cannot be started at all (as a shell's 127).
pub const EXIT_START_FAILED: i32 = 127;

/// What the caller waits for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Children, signals or host messages.
    Wait,
    /// Call [`Supervisor::start`] again after this delay (backoff).
    Restart(Duration),
    /// Call [`Supervisor::grace_expired`] after this delay, unless done first.
    Grace(Duration),
    /// Supervision is over: finish with this code.
    Done(i32),
}

/// A supervised process's state, as shown by `bottle-guest status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Not started yet.
    Starting,
    /// Running.
    Running,
    /// Waiting out a restart backoff.
    Backoff,
    /// SIGTERM sent, waiting for it to exit.
    Stopping,
    /// Over.
    Done,
}

/// The supervisor of one agent.
pub struct Supervisor {
    sys: Arc<dyn Sys>,
    plan: SpawnPlan,
    restart: RestartState,
    state: State,
    pid: Option<i32>,
    attempt: u32,
    last_exit: Option<i32>,
    orphans_reaped: u64,
    events: Vec<ProcessEvent>,
}

impl Supervisor {
    /// A supervisor that has not started anything yet.
    pub fn new(sys: Arc<dyn Sys>, plan: SpawnPlan, policy: RestartPolicy) -> Self {
        Supervisor {
            sys,
            plan,
            restart: RestartState::new(policy),
            state: State::Starting,
            pid: None,
            attempt: 0,
            last_exit: None,
            orphans_reaped: 0,
            events: Vec::new(),
        }
    }

    /// Take the events produced since the last call, for the host.
    pub fn drain_events(&mut self) -> Vec<ProcessEvent> {
        std::mem::take(&mut self.events)
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }
    /// The agent's pid while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }
    /// Restarts so far.
    pub fn restarts(&self) -> u32 {
        self.restart.restarts()
    }
    /// Exit code of the last run.
    pub fn last_exit(&self) -> Option<i32> {
        self.last_exit
    }
    /// Children reaped that were not the agent (orphans).
    pub fn orphans_reaped(&self) -> u64 {
        self.orphans_reaped
    }

    /// Start (or restart) the agent.
    pub fn start(&mut self) -> Next {
        if self.state == State::Done {
            return Next::Done(self.last_exit.unwrap_or(0));
        }
        match self.sys.spawn(&self.plan) {
            Ok(pid) => {
                tracing::info!(pid, attempt = self.attempt, program = %self.plan.program.display(), "agent started");
                self.pid = Some(pid);
                self.state = State::Running;
                self.events.push(ProcessEvent::Started {
                    pid: pid as u32,
                    attempt: self.attempt,
                });
                Next::Wait
            }
            Err(e) => {
                tracing::error!(error = %e, "agent could not be started");
                self.events.push(ProcessEvent::StartFailed {
                    message: e.to_string(),
                });
                self.finish(EXIT_START_FAILED)
            }
        }
    }

    /// A child was reaped with raw wait status `raw`.
    pub fn child_exited(&mut self, pid: i32, raw: i32) -> Next {
        if self.pid != Some(pid) {
            self.orphans_reaped += 1;
            tracing::debug!(pid, "reaped an orphan");
            return self.waiting();
        }
        let (code, signal) = exit_code_from_wait_status(raw);
        tracing::info!(pid, code, ?signal, "agent exited");
        self.pid = None;
        self.last_exit = Some(code);
        self.events.push(ProcessEvent::Exited {
            pid: pid as u32,
            code,
            signal,
        });
        // Whatever the agent left behind in its group goes with it.
        let _ = self.sys.kill(-pid, libc::SIGKILL);
        if self.state == State::Stopping {
            return self.finish(code);
        }
        match self.restart.on_exit(code) {
            Decision::Restart { attempt, delay_ms } => {
                tracing::info!(attempt, delay_ms, "restarting the agent");
                self.attempt = attempt;
                self.state = State::Backoff;
                self.events
                    .push(ProcessEvent::Restarting { attempt, delay_ms });
                Next::Restart(Duration::from_millis(delay_ms))
            }
            Decision::Stop { code, gave_up } => {
                if gave_up {
                    tracing::warn!(restarts = self.restart.restarts(), "giving up on the agent");
                }
                self.finish(code)
            }
        }
    }

    /// The init received `signal`.
    pub fn signal(&mut self, signal: i32, grace: Duration) -> Next {
        let running = self.pid.is_some();
        match decide(signal, running) {
            SignalAction::Forward(sig) => {
                self.kill_agent(sig);
                self.waiting()
            }
            SignalAction::Shutdown => self.shutdown(grace),
            SignalAction::StopNow => self.finish(self.last_exit.unwrap_or(128 + signal)),
            SignalAction::Ignore => self.waiting(),
        }
    }

    /// Stop the agent: SIGTERM now, SIGKILL after `grace`; no restart.
    pub fn shutdown(&mut self, grace: Duration) -> Next {
        match self.state {
            State::Running => {
                tracing::info!(grace_ms = grace.as_millis() as u64, "stopping the agent");
                self.kill_agent(libc::SIGTERM);
                self.state = State::Stopping;
                Next::Grace(grace)
            }
            State::Stopping => Next::Wait,
            _ => self.finish(self.last_exit.unwrap_or(0)),
        }
    }

    /// The grace period ran out: SIGKILL.
    pub fn grace_expired(&mut self) -> Next {
        if self.state == State::Stopping {
            tracing::warn!("grace period over, killing the agent");
            self.kill_agent(libc::SIGKILL);
        }
        self.waiting()
    }

    fn kill_agent(&self, signal: i32) {
        if let Some(pid) = self.pid {
            if self.sys.kill(-pid, signal).is_err() {
                let _ = self.sys.kill(pid, signal);
            }
        }
    }

    fn waiting(&self) -> Next {
        match self.state {
            State::Done => Next::Done(self.last_exit.unwrap_or(0)),
            _ => Next::Wait,
        }
    }

    fn finish(&mut self, code: i32) -> Next {
        self.state = State::Done;
        self.last_exit = Some(code);
        Next::Done(code)
    }
}

#[cfg(test)]
mod tests;
