//! Tests of the DNS resolver: policy and exfiltration tables, the
//! rebinding floor, the handler's answers, the cache, and the server over a
//! Unix socket against a real local upstream.

mod audit_cap;
mod audit_line;
mod cache;
mod denylog;
mod exfil;
mod handler;
mod learned;
mod policy;
mod rebind;
mod secret_names;
mod server;

pub(crate) mod support;
mod wire;
