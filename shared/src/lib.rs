//! The bot-bottle wire protocol, shared by `bottle-host` and `bottle-guest`.
//!
//! Everything that crosses the VM boundary is defined here and nowhere else:
//!
//! - [`channel`]: the channels and the vsock port each one lives on.
//! - [`message`]: the postcard-encoded messages of every channel, and the
//!   versioned [`message::Hello`] that opens every connection.
//! - [`frame`]: the length-prefixed frame codec, with a hard size limit
//!   checked before anything is allocated.
//! - [`framebuf`]: a receive buffer that yields every whole frame of a
//!   burst in place (one read, many frames).
//! - [`addr`]: transport addresses parsed from URIs (`vsock://`, `unix://`,
//!   `hvsock://`).
//!
//! The crate is runtime-free by default. The `tokio` feature adds async frame
//! I/O ([`io`]) and the transports themselves ([`transport`]).
//!
//! The full specification is `docs/protocol.md`.

pub mod addr;
pub mod channel;
pub mod frame;
pub mod framebuf;
pub mod message;
pub mod sessionwire;

#[cfg(feature = "tokio")]
pub mod io;
#[cfg(feature = "tokio")]
pub mod transport;

pub use addr::{Address, AddressError};
pub use channel::Channel;
pub use frame::{FrameDecoder, FrameError, MAX_FRAME_LEN};
pub use message::{Hello, HelloReply, Role, PROTOCOL_MAJOR, PROTOCOL_MINOR};
