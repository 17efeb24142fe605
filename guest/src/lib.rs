//! `bottle-guest`: PID 1 inside the VM.
//!
//! - [`cli`]: the command line (`init`, `status`, `dns-stub`).
//! - [`logging`]: tracing to the console from the first instant.

pub mod cli;
pub mod logging;
