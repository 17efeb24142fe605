//! `bottle-guest init`: run the init with the real system calls.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::init::real_services::RealServices;
use crate::init::{self, InitOptions};
use crate::status;
use crate::sys::real::RealSys;

/// Options of `bottle-guest init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Host base address, overriding the kernel command line
    /// (e.g. unix:///run/bottle/host.sock; default vsock://2).
    #[arg(long)]
    pub host: Option<String>,
    /// Root filesystem prefix for the CA install and /etc/passwd.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Status socket path.
    #[arg(long, env = status::SOCKET_ENV)]
    pub status_socket: Option<PathBuf>,
    /// Exit with the agent's code instead of powering off, even as PID 1
    /// (for running in a PID namespace).
    #[arg(long)]
    pub no_poweroff: bool,
}

impl InitArgs {
    /// The options of a bare `bottle-guest` (no subcommand, as PID 1).
    pub fn default_args() -> Self {
        InitArgs {
            host: None,
            root: PathBuf::from("/"),
            status_socket: std::env::var_os(status::SOCKET_ENV).map(PathBuf::from),
            no_poweroff: false,
        }
    }
}

/// Run the init; returns the exit code.
pub fn run(args: InitArgs) -> i32 {
    let services = RealServices {
        root: args.root.clone(),
    };
    let opts = InitOptions {
        host: args.host,
        rootfs: args.root,
        status_socket: args.status_socket,
        no_poweroff: args.no_poweroff,
        ..InitOptions::default()
    };
    init::run(opts, Arc::new(RealSys), Arc::new(services))
}
