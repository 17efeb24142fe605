//! `bottle-guest`: PID 1 inside the VM.
//!
//! - [`cli`]: the command line (`init`, `status`, `dns-stub`).
//! - [`dns`]: the DNS stub relaying to the host's resolver.
//! - [`logging`]: tracing to the console from the first instant.

pub mod cli;
pub mod dns;
pub mod logging;
