//! `bottle-guest status`: the init serves a JSON [`Snapshot`] of itself on
//! a Unix socket ([`server`]); the `status` subcommand reads and prints it
//! ([`client`]).

pub mod board;
pub mod client;
pub mod server;

pub use board::{Board, HostStatus, ProcessStatus, Snapshot, StatsFn};

/// Default path of the status socket.
pub const DEFAULT_SOCKET: &str = "/run/bottle-guest.sock";
/// Environment variable overriding the socket path (init and client).
pub const SOCKET_ENV: &str = "BOTTLE_GUEST_STATUS_SOCKET";
