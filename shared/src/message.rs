//! Messages of every channel, and the versioned hello that opens each
//! connection.
//!
//! All enums are `#[non_exhaustive]`: a newer minor version may add variants,
//! and both sides must treat an unknown variant as a decode error on that one
//! frame, not as a reason to crash. Encoding is postcard; see
//! `docs/protocol.md` for the byte layout.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::channel::Channel;

/// Protocol major version. Peers with different majors refuse each other.
pub const PROTOCOL_MAJOR: u16 = 3;
/// Protocol minor version. Additive changes only; peers tolerate differences.
pub const PROTOCOL_MINOR: u16 = 0;

/// Which side of the VM boundary a peer is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Role {
    /// `bottle-guest`, inside the VM.
    Guest,
    /// `bottle-host`, the supervisor outside.
    Host,
}

/// The first frame on every connection, sent by the side that dials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol major version of the sender.
    pub major: u16,
    /// Protocol minor version of the sender.
    pub minor: u16,
    /// Who is speaking.
    pub role: Role,
    /// Which channel this connection is for.
    pub channel: Channel,
    /// Free-form software version, e.g. `bottle-guest 0.1.0`.
    pub software: String,
}

/// The answer to a [`Hello`], sent by the side that accepted the connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum HelloReply {
    /// The connection is accepted; the accepting side's own hello.
    Accepted(Hello),
    /// The connection is refused, with a reason meant for a human.
    Refused {
        /// Why, e.g. both version numbers on a major mismatch.
        reason: String,
    },
}

/// Why a hello exchange failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum HelloError {
    /// Different protocol majors.
    #[error("protocol version mismatch: we speak {ours_major}.{ours_minor}, peer speaks {theirs_major}.{theirs_minor}")]
    VersionMismatch {
        /// Our major.
        ours_major: u16,
        /// Our minor.
        ours_minor: u16,
        /// The peer's major.
        theirs_major: u16,
        /// The peer's minor.
        theirs_minor: u16,
    },
    /// The hello named another channel than the one served here.
    #[error("hello for channel {got} arrived on channel {expected}")]
    WrongChannel {
        /// The channel served here.
        expected: Channel,
        /// The channel the peer asked for.
        got: Channel,
    },
    /// The peer has the same role as us.
    #[error("peer claims role {0:?}, which is our own")]
    WrongRole(Role),
    /// The peer refused us.
    #[error("peer refused the connection: {0}")]
    Refused(String),
}

impl Hello {
    /// Our hello for `channel`, speaking as `role`.
    pub fn new(role: Role, channel: Channel, software: impl Into<String>) -> Self {
        Hello {
            major: PROTOCOL_MAJOR,
            minor: PROTOCOL_MINOR,
            role,
            channel,
            software: software.into(),
        }
    }

    /// Check a peer's hello received on `channel` by a peer of role `ours`.
    pub fn check(&self, ours: Role, channel: Channel) -> Result<(), HelloError> {
        if self.major != PROTOCOL_MAJOR {
            return Err(HelloError::VersionMismatch {
                ours_major: PROTOCOL_MAJOR,
                ours_minor: PROTOCOL_MINOR,
                theirs_major: self.major,
                theirs_minor: self.minor,
            });
        }
        if self.channel != channel {
            return Err(HelloError::WrongChannel {
                expected: channel,
                got: self.channel,
            });
        }
        if self.role == ours {
            return Err(HelloError::WrongRole(self.role));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- control

/// Control channel, guest to host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum GuestMessage {
    /// Sent right after the hello: the guest is up and wants its config.
    Boot(BootInfo),
    /// Something happened to a supervised process.
    Process(ProcessEvent),
    /// The agent is done and will not be restarted; the VM powers off next.
    Exit {
        /// The exit code `launch` should return (128+signal for a signal).
        code: i32,
    },
    /// A fatal error in the guest; it will power off with `code`.
    Fatal {
        /// What went wrong.
        message: String,
        /// The exit code the guest will stop with.
        code: i32,
    },
    /// The answer to [`HostMessage::Status`]: the guest's status as
    /// `bottle-guest status --json` prints it.
    Status {
        /// JSON text.
        json: String,
    },
}

/// What the guest knows about itself when it asks for its config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootInfo {
    /// `bottle-guest` version.
    pub software: String,
    /// Milliseconds since init started.
    pub init_ms: u64,
    /// Kernel release (`uname -r`).
    pub kernel: String,
}

/// Control channel, host to guest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum HostMessage {
    /// Everything the guest needs to run the agent.
    Config(Box<GuestConfig>),
    /// Stop the agent (SIGTERM, then SIGKILL after the grace period) and
    /// power off.
    Shutdown {
        /// Grace period before SIGKILL, in milliseconds.
        grace_ms: u64,
    },
    /// Ask for the guest's status (answered with [`GuestMessage::Status`]).
    Status,
    /// Run another process beside the agent, as the agent (same user,
    /// environment, CA and guards), its streams on a new session.
    Exec(Box<ExecSpec>),
}

/// A process to run in the guest for `bottle-host exec`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The session id the guest attaches with (random, never 0).
    pub session: u32,
    /// argv; `command[0]` is looked up in `PATH`.
    pub command: Vec<String>,
    /// Its streams.
    pub streams: SessionSpec,
}

/// The guest's configuration, pushed by the host on the control channel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestConfig {
    /// Hostname to set.
    pub hostname: String,
    /// The agent to supervise.
    pub agent: AgentSpec,
    /// PEM certificate of the host's egress CA, to install in trust stores.
    pub ca_pem: String,
    /// TCP port on 127.0.0.1 where the guest forwards proxy traffic.
    pub proxy_port: u16,
    /// Hosts the agent should reach without the proxy (`NO_PROXY`).
    pub no_proxy: Vec<String>,
    /// Resolver settings for the guest's DNS stub and `/etc/resolv.conf`.
    pub dns: ResolverSettings,
    /// The agent's standard streams over the session channel; `None`
    /// leaves them on the guest console.
    pub session: Option<SessionSpec>,
    /// Host directories shared over virtio-fs, mounted before the agent
    /// starts (protocol 3.0).
    pub mounts: Vec<SharedDir>,
}

/// A host directory the guest mounts (virtio-fs), protocol 3.0.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedDir {
    /// The virtio-fs tag the host gave the device.
    pub tag: String,
    /// Absolute mount point in the guest.
    pub path: String,
    /// Mounted read-only (the host's daemon refuses writes as well).
    pub readonly: bool,
}

/// How the agent's standard streams are carried (protocol 2.0).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSpec {
    /// A pseudo-terminal in the guest (stdin, stdout and stderr all on it)
    /// instead of three pipes.
    pub tty: bool,
    /// Standard input comes from the host; otherwise it is `/dev/null`.
    pub stdin: bool,
    /// Initial terminal size (rows), with `tty`; 0 leaves the default.
    pub rows: u16,
    /// Initial terminal size (columns), with `tty`.
    pub cols: u16,
}

/// How to run the agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSpec {
    /// argv; `command[0]` is looked up in `PATH`.
    pub command: Vec<String>,
    /// User name or `uid[:gid]`.
    pub user: String,
    /// Working directory.
    pub workdir: String,
    /// Extra environment, applied over the guest's defaults.
    pub env: Vec<(String, String)>,
    /// When to restart the agent.
    pub restart: RestartPolicy,
    /// Grace period between SIGTERM and SIGKILL at shutdown, milliseconds.
    pub grace_ms: u64,
}

/// When and how often to restart the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// The mode.
    pub mode: RestartMode,
    /// Restarts allowed before giving up.
    pub max_restarts: u32,
    /// First backoff delay, milliseconds; doubles each restart.
    pub backoff_initial_ms: u64,
    /// Backoff ceiling, milliseconds.
    pub backoff_max_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            mode: RestartMode::No,
            max_restarts: 5,
            backoff_initial_ms: 250,
            backoff_max_ms: 30_000,
        }
    }
}

/// Restart mode, as in the manifest's `[agent] restart`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RestartMode {
    /// Never restart.
    #[default]
    No,
    /// Restart on a non-zero exit or a signal.
    OnFailure,
    /// Restart whatever the exit.
    Always,
}

/// Settings for the guest's resolver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolverSettings {
    /// Port of the stub on 127.0.0.1 (53 in a VM).
    pub port: u16,
    /// `options timeout:` for resolv.conf, seconds.
    pub timeout_s: u8,
    /// `options attempts:` for resolv.conf.
    pub attempts: u8,
}

impl Default for ResolverSettings {
    fn default() -> Self {
        ResolverSettings {
            port: 53,
            timeout_s: 2,
            attempts: 2,
        }
    }
}

/// A supervised process changed state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ProcessEvent {
    /// The agent was started (attempt 0 is the first start).
    Started {
        /// Its pid in the guest.
        pid: u32,
        /// Start number, from 0.
        attempt: u32,
    },
    /// The agent exited.
    Exited {
        /// Its pid in the guest.
        pid: u32,
        /// Exit code, 128+signal when killed by a signal.
        code: i32,
        /// The signal that killed it, if any.
        signal: Option<i32>,
    },
    /// The agent will be restarted after `delay_ms`.
    Restarting {
        /// The start number that comes next.
        attempt: u32,
        /// Backoff before it.
        delay_ms: u64,
    },
    /// The agent could not be started at all.
    StartFailed {
        /// Why.
        message: String,
    },
}

// ---------------------------------------------------------------- session

/// Session channel, guest to host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SessionOutput {
    /// The first frame after the hello: which session this connection
    /// carries (0 is the agent's).
    Attach {
        /// Session id.
        session: u32,
    },
    /// Bytes the process wrote to standard output (or its terminal).
    Stdout(#[serde(with = "bytes")] Vec<u8>),
    /// Bytes the process wrote to standard error.
    Stderr(#[serde(with = "bytes")] Vec<u8>),
    /// Every output stream has ended; nothing follows.
    Done,
    /// An exec'd process's exit code (128+signal for a signal), sent
    /// before `Done`. The agent's session has none: its code travels on
    /// the control channel.
    Exit {
        /// The code.
        code: i32,
    },
}

/// Session channel, host to guest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SessionInput {
    /// Bytes for standard input (or typed at the terminal).
    Stdin(#[serde(with = "bytes")] Vec<u8>),
    /// Standard input has ended (pipes: the agent reads EOF).
    StdinEof,
    /// The host terminal's new size.
    Resize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// The user left (`exec`'s escape sequence): hang the process up
    /// (SIGHUP, SIGKILL after 2 s); its exit code still comes back. An
    /// explicit message, since a half-closed stream may not survive the
    /// vsock relay.
    Hangup,
}

/// Largest `Stdin`/`Stdout`/`Stderr` payload a sender puts in one frame.
/// Large, since under emulation (TCG) the guest's cost is per system
/// call, not per byte.
pub const SESSION_CHUNK: usize = 256 * 1024;

// -------------------------------------------------------------------- dns

/// Which transport the guest's client used; the host answers the same way
/// (truncation is the guest stub's job, per the client's UDP size).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DnsTransport {
    /// The client asked over UDP.
    Udp,
    /// The client asked over TCP.
    Tcp,
}

/// DNS channel, guest to host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DnsRequest {
    /// One DNS query in wire format.
    Query {
        /// Request id chosen by the guest, unique among its queries in flight.
        id: u32,
        /// How the client asked.
        transport: DnsTransport,
        /// The DNS message, wire format.
        #[serde(with = "bytes")]
        wire: Vec<u8>,
    },
}

/// DNS channel, host to guest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DnsResponse {
    /// The answer to the query with the same `id`.
    Answer {
        /// The query's request id.
        id: u32,
        /// The DNS message, wire format.
        #[serde(with = "bytes")]
        wire: Vec<u8>,
    },
}

// --------------------------------------------------------------- encoding

/// A message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("postcard: {0}")]
pub struct CodecError(#[from] postcard::Error);

/// Encode a message with postcard (no frame header).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    Ok(postcard::to_stdvec(msg)?)
}

/// Decode a message from a whole frame payload. Trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    let (msg, rest) = postcard::take_from_bytes(payload)?;
    if rest.is_empty() {
        Ok(msg)
    } else {
        Err(CodecError(postcard::Error::DeserializeBadEncoding))
    }
}

mod bytes;

#[cfg(test)]
mod tests;
