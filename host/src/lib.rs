//! `bottle-host`: the supervisor outside the VM.
//!
//! - [`manifest`]: `bottle.toml`, read and checked.
//! - [`dns`]: the allowlisting DNS resolver served to the guest.
//! - [`cli`]: the command line, parsed by `main.rs` and run here.
//! - [`proxy`]: the inspecting HTTPS egress proxy.
//! - [`ca`]: the egress CA the proxy signs with.
//! - [`launch`]: `bottle-host launch`, where the pieces meet in a VM.
//! - [`image`]: OCI images unpacked safely and cached as a bottle's root.
//! - [`vmm`]: VM backends (QEMU, libkrun) and the guest image.
//! - [`logging`]: tracing setup shared by every subcommand.
//! - [`log_cap`]: how a log the guest can write to is capped.
//! - [`audit_cap`]: how large an audit log may grow.
//! - [`hardening`]: private state, non-dumpable while holding secrets,
//!   scrubbed child environments.

pub mod accept;
pub mod audit_cap;
pub mod ca;
pub mod cli;
pub mod dns;
pub mod hardening;
pub mod image;
pub mod launch;
pub mod log_cap;
pub mod logging;
pub mod manifest;
pub mod proxy;
pub mod vmm;
