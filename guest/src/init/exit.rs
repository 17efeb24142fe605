//! The init's own exit codes, distinct from any an agent is likely to use.
//! `launch` on the host sees them when the guest stops before or around the
//! agent. Agent codes (0–255, 128+signal) pass through unchanged; 127 means
//! the agent could not be started.

/// The host could not be reached within the connect budget.
pub const HOST_UNREACHABLE: i32 = 200;
/// The host refused the control hello (e.g. protocol major mismatch).
pub const HELLO_REFUSED: i32 = 201;
/// The host closed the channel or sent garbage before the config.
pub const NO_CONFIG: i32 = 202;
/// The config could not be applied (CA install, services).
pub const SETUP_FAILED: i32 = 203;
/// The host address is not a valid URI.
pub const BAD_ADDRESS: i32 = 204;
/// The init itself failed (e.g. no async runtime).
pub const INTERNAL: i32 = 205;
