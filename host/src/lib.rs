//! `bottle-host`: the supervisor outside the VM.
//!
//! - [`manifest`]: `bottle.toml`, read and checked.
//! - [`dns`]: the allowlisting DNS resolver served to the guest.
//! - [`cli`]: the command line, parsed by `main.rs` and run here.
//! - [`proxy`]: the inspecting HTTPS egress proxy.
//! - [`ca`]: the egress CA the proxy signs with.
//! - [`logging`]: tracing setup shared by every subcommand.
//! - [`krun`]: the libkrun VMM backend (to move under `vmm` on merge).

pub mod ca;
pub mod cli;
pub mod dns;
#[path = "vmm/krun/mod.rs"]
pub mod krun;
pub mod logging;
pub mod manifest;
pub mod proxy;
