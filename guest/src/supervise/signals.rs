//! What the init does with a signal it receives, as a decision table.

/// The init's answer to a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalAction {
    /// Pass the signal to the agent's process group; nothing else changes.
    Forward(i32),
    /// Pass SIGTERM to the agent's group and shut down: no restart,
    /// SIGKILL after the grace period.
    Shutdown,
    /// No agent is running (backoff): finish now without restarting.
    StopNow,
    /// Nothing to do.
    Ignore,
}

/// Decide what to do with `signal`, given whether the agent is running.
///
/// | signal | agent running | agent in backoff |
/// |---|---|---|
/// | SIGTERM | shutdown (forward, grace, SIGKILL) | stop now |
/// | SIGINT | forward | stop now |
/// | SIGHUP | forward | ignore |
/// | other | ignore | ignore |
pub fn decide(signal: i32, agent_running: bool) -> SignalAction {
    match (signal, agent_running) {
        (libc::SIGTERM, true) => SignalAction::Shutdown,
        (libc::SIGTERM | libc::SIGINT, false) => SignalAction::StopNow,
        (libc::SIGINT | libc::SIGHUP, true) => SignalAction::Forward(signal),
        _ => SignalAction::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libc::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};

    #[test]
    fn decision_table() {
        let table = [
            (SIGTERM, true, SignalAction::Shutdown),
            (SIGTERM, false, SignalAction::StopNow),
            (SIGINT, true, SignalAction::Forward(SIGINT)),
            (SIGINT, false, SignalAction::StopNow),
            (SIGHUP, true, SignalAction::Forward(SIGHUP)),
            (SIGHUP, false, SignalAction::Ignore),
            (SIGUSR1, true, SignalAction::Ignore),
            (SIGUSR1, false, SignalAction::Ignore),
        ];
        for (sig, running, want) in table {
            assert_eq!(decide(sig, running), want, "signal {sig} running {running}");
        }
    }
}
