//! The host's allowlisting DNS resolver, served to the guest on the DNS
//! channel (vsock port 6002).
//!
//! A query travels: [`server`] (frames read in bursts into a
//! [`bottle_shared::framebuf::FrameBuf`]) →
//! [`handler`] (parse, [`policy`] with [`exfil`] limits, [`cache`],
//! [`upstream`], [`rebind`] floor, [`learned`] addresses, [`audit`]) →
//! back as wire bytes. Byte-level helpers live in [`wire`]; repeated
//! denials are folded into counts by [`denylog`]. See
//! `docs/dns.md`.

pub mod audit;
pub mod cache;
pub mod denylog;
pub mod exfil;
pub mod handler;
pub mod learned;
pub mod policy;
pub mod rebind;
pub mod server;
pub mod upstream;
pub mod wire;

#[cfg(test)]
pub(crate) mod tests;

pub use audit::Audit;
pub use handler::{Handler, NeedsUpstream};
pub use learned::LearnedAddrs;
pub use policy::{Policy, Rule, Verdict};
pub use upstream::{HickoryUpstream, Upstream, UpstreamAnswer, UpstreamError};
