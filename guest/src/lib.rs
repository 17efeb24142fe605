//! `bottle-guest`: PID 1 inside the VM.
//!
//! - [`cli`]: the command line (`init`, `status`, `dns-stub`).
//! - [`dns`]: the DNS stub relaying to the host's resolver.
//! - [`exec`]: processes started beside the agent by `bottle-host exec`.
//! - [`egress`]: the agent's proxy listener, forwarded to the host.
//! - [`logging`]: tracing to the console from the first instant.
//! - [`init`]: the init sequence (boot, config, CA, services, agent, power off).
//! - [`control`]: the control-channel client.
//! - [`session`]: the agent's terminal or pipes over the session channel.
//! - [`supervise`]: agent supervision (reaping, restarts, signals).
//! - [`status`]: the status socket and `bottle-guest status`.
//! - [`sys`]: side-effecting system calls behind a trait, with a fake.

pub mod cli;
pub mod control;
pub mod dns;
pub mod egress;
pub mod exec;
pub mod init;
pub mod logging;
pub mod session;
pub mod status;
pub mod supervise;
pub mod sys;

/// `bottle-guest <version>`, as sent in hellos and shown by `status`.
pub fn software() -> String {
    format!("bottle-guest {}", env!("CARGO_PKG_VERSION"))
}
