//! The `bottle-guest` command line. With no subcommand, and always when it
//! runs as PID 1, `bottle-guest` is the init.

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::logging::LogFormat;

mod dns_stub;

/// bot-bottle guest init: runs the agent inside the VM behind the host's
/// DNS filter and egress proxy.
#[derive(Debug, Parser)]
#[command(name = "bottle-guest", version, about, long_about = None)]
pub struct Cli {
    /// Log format on standard error.
    #[arg(long, value_enum, default_value_t, global = true)]
    pub log_format: LogFormat,
    /// What to do (default: init).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run as the init (PID 1): the default.
    Init {
        /// Host base address, overriding the kernel command line
        /// (e.g. unix:///run/bottle/host.sock; default vsock://2).
        #[arg(long)]
        host: Option<String>,
    },
    /// Ask the running init for its state.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the DNS stub alone (tests, benchmarks).
    DnsStub {
        /// Host DNS channel address (e.g. unix:///tmp/h.sock_6002).
        #[arg(long)]
        host: String,
        /// Listen address for UDP and TCP.
        #[arg(long, default_value = "127.0.0.1:53")]
        listen: String,
        /// Write this resolv.conf (nameserver 127.0.0.1) and keep it so.
        #[arg(long)]
        resolv_conf: Option<std::path::PathBuf>,
    },
}

/// Run a parsed command line; the return value is the exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        None | Some(Command::Init { .. }) => not_yet("init", 5),
        Some(Command::Status { .. }) => not_yet("status", 5),
        Some(Command::DnsStub {
            host,
            listen,
            resolv_conf,
        }) => dns_stub::run(&host, &listen, resolv_conf),
    }
}

fn not_yet(what: &str, issue: u32) -> Result<i32> {
    anyhow::bail!("`bottle-guest {what}` is not available yet (tracked in issue #{issue})")
}
