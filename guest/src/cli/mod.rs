//! The `bottle-guest` command line. With no subcommand, and always when it
//! runs as PID 1, `bottle-guest` is the init.

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::logging::LogFormat;

mod dns_stub;
pub mod init;
pub mod status;

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

impl Cli {
    /// Parse `argv`. As PID 1 a bad command line (the kernel passes unknown
    /// boot words to init as arguments) must not stop the machine: it is
    /// logged and the init runs with its defaults.
    pub fn parse_for_pid() -> Cli {
        if std::process::id() != 1 {
            return Cli::parse();
        }
        Cli::try_parse().unwrap_or_else(|e| {
            eprintln!("bottle-guest: ignoring the command line as PID 1: {e}");
            Cli {
                log_format: LogFormat::default(),
                command: None,
            }
        })
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run as the init (PID 1): the default.
    Init(init::InitArgs),
    /// Ask the running init for its state.
    Status(status::StatusArgs),
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
        None => Ok(init::run(init::InitArgs::default_args())),
        Some(Command::Init(args)) => Ok(init::run(args)),
        Some(Command::Status(args)) => Ok(status::run(args)?),
        Some(Command::DnsStub {
            host,
            listen,
            resolv_conf,
        }) => dns_stub::run(&host, &listen, resolv_conf),
    }
}
