//! Agent supervision: pure pieces ([`exit`], [`policy`], [`signals`],
//! [`plan`]), the state machine ([`machine`]) and the event loop
//! ([`run`]) that drives it from SIGCHLD, signals, timers and the host.

pub mod exit;
pub mod machine;
pub mod plan;
pub mod policy;
pub mod run;
pub mod signals;

pub use machine::{Next, State, Supervisor};
