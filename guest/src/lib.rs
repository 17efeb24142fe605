//! `bottle-guest`: PID 1 inside the VM.
//!
//! - [`cli`]: the command line (`init`, `status`, `dns-stub`).
//! - [`egress`]: the agent's proxy listener, forwarded to the host.
//! - [`logging`]: tracing to the console from the first instant.

pub mod cli;
pub mod egress;
pub mod logging;
