//! Channels between guest and host, one per vsock port.
//!
//! Every port the host serves is listed here, in one place. The guest always
//! dials the host (CID 2 in a VM); nothing else is served, so a connection
//! to any other port finds no listener.

use serde::{Deserialize, Serialize};

/// One logical channel between guest and host. Each has its own vsock port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Channel {
    /// Configuration push, status, process events and the exit code.
    Control,
    /// DNS queries and answers as raw wire bytes, multiplexed by request id.
    Dns,
    /// One connection per proxied TCP connection of the agent: after the
    /// hello, the stream carries the agent's proxy traffic byte for byte.
    Egress,
    /// The agent's terminal or standard streams: after the hello, frames of
    /// `SessionOutput` (guest to host) and `SessionInput` (host to guest).
    Session,
}

/// vsock port of the control channel.
pub const CONTROL_PORT: u32 = 6001;
/// vsock port of the DNS channel.
pub const DNS_PORT: u32 = 6002;
/// vsock port of the egress channel.
pub const EGRESS_PORT: u32 = 6003;
/// vsock port of the session channel.
pub const SESSION_PORT: u32 = 6004;

/// The well-known CID of the host, as seen from inside a VM.
pub const HOST_CID: u32 = 2;

impl Channel {
    /// Every channel, in port order.
    pub const ALL: [Channel; 4] = [
        Channel::Control,
        Channel::Dns,
        Channel::Egress,
        Channel::Session,
    ];

    /// The vsock port this channel is served on.
    pub const fn port(self) -> u32 {
        match self {
            Channel::Control => CONTROL_PORT,
            Channel::Dns => DNS_PORT,
            Channel::Egress => EGRESS_PORT,
            Channel::Session => SESSION_PORT,
        }
    }

    /// The channel served on `port`, if any.
    pub fn from_port(port: u32) -> Option<Channel> {
        Self::ALL.into_iter().find(|c| c.port() == port)
    }

    /// A short lowercase name, for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Channel::Control => "control",
            Channel::Dns => "dns",
            Channel::Egress => "egress",
            Channel::Session => "session",
        }
    }

    /// Largest frame accepted on this channel. DNS frames hold one DNS
    /// message (at most 65535 bytes over TCP) plus a small header.
    pub const fn max_frame(self) -> usize {
        match self {
            Channel::Dns => 70 * 1024,
            Channel::Control | Channel::Egress | Channel::Session => crate::frame::MAX_FRAME_LEN,
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (port {})", self.name(), self.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_round_trip() {
        for c in Channel::ALL {
            assert_eq!(Channel::from_port(c.port()), Some(c));
        }
        assert_eq!(Channel::Dns.port(), 6002);
        assert_eq!(Channel::from_port(1234), None);
    }
}
