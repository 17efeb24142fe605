//! The `bottle-host` command line. `main.rs` parses it and calls [`run`].

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

use crate::logging::LogFormat;

pub use image::ImageCommand;

mod bottles;
mod ca;
mod check;
mod dns;
mod exec;
mod image;
mod proxy;

/// bot-bottle host: run an AI agent in a microVM whose only ways out are an
/// allowlisting DNS resolver and an inspecting egress proxy.
#[derive(Debug, Parser)]
#[command(name = "bottle-host", version, about, long_about = None)]
pub struct Cli {
    /// Log format on standard error.
    #[arg(long, value_enum, default_value_t, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a bottle and run its agent; exits with the agent's exit code.
    Launch {
        /// The manifest.
        manifest: PathBuf,
        /// State directory (CA, audit logs); default $XDG_STATE_HOME/bot-bottle.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Extra CA (PEM) the proxy trusts for upstream servers (local test servers).
        #[arg(long)]
        upstream_ca: Option<PathBuf>,
        /// The guest's log filter (kernel parameter bottle.log), e.g. `debug`.
        #[arg(long)]
        guest_log: Option<String>,
        /// Run the agent on a terminal in the guest (with -i: the host
        /// terminal in raw mode; Ctrl-] then q stops the bottle).
        #[arg(short = 't', long)]
        tty: bool,
        /// Keep standard input open to the agent (it is also passed on,
        /// without -i, whenever it is not a terminal).
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Show the guest console (kernel and bottle-guest logs) on
        /// standard error; it is always in the bottle's console.log.
        #[arg(long)]
        console: bool,
        /// The bottle's name, unique among the user's running bottles
        /// (default: generated, e.g. bottle-3fa2c1).
        #[arg(long)]
        name: Option<String>,
        /// Run in the background: print the name once the bottle is up,
        /// and return; see ps, logs, stop.
        #[arg(short = 'd', long)]
        detach: bool,
        /// Set by `--detach` for the launch it starts: standard error is
        /// the launch log, kept to its cap (launch/caplog.rs).
        #[arg(long, hide = true)]
        capped_log: bool,
    },
    /// List the running bottles (name, backend, agent state, restarts,
    /// uptime, the guest's DNS and proxy counters).
    Ps {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// State directory; default $XDG_STATE_HOME/bot-bottle.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Run a command in a running bottle, as its agent runs; exits with
    /// the command's exit code.
    Exec {
        /// A terminal for the command (with -i: ours in raw mode; Ctrl-]
        /// then q hangs the command up).
        #[arg(short = 't', long)]
        tty: bool,
        /// Pass standard input on (it is also, without -i, whenever it is
        /// not a terminal).
        #[arg(short = 'i', long)]
        interactive: bool,
        /// State directory; default $XDG_STATE_HOME/bot-bottle.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// The bottle's name.
        name: String,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Stop bottles gracefully (SIGTERM to the agent, SIGKILL after --time).
    Stop {
        /// Seconds the agent has before SIGKILL.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        /// Bottle names.
        #[arg(required = true)]
        names: Vec<String>,
        /// State directory; default $XDG_STATE_HOME/bot-bottle.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Kill bottles: their VMs stop at once.
    Kill {
        /// Bottle names.
        #[arg(required = true)]
        names: Vec<String>,
        /// State directory; default $XDG_STATE_HOME/bot-bottle.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Print a bottle's agent output (or its console).
    Logs {
        /// Keep printing until the bottle ends.
        #[arg(short = 'f', long)]
        follow: bool,
        /// The guest console (kernel and bottle-guest) instead.
        #[arg(long)]
        console: bool,
        /// The bottle's name.
        name: String,
        /// State directory; default $XDG_STATE_HOME/bot-bottle.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Print a bottle's DNS and proxy decisions.
    Audit {
        /// Keep printing until the bottle ends.
        #[arg(short = 'f', long)]
        follow: bool,
        /// The JSON lines as logged instead of a table.
        #[arg(long)]
        json: bool,
        /// The bottle's name.
        name: String,
        /// State directory; default $XDG_STATE_HOME/bot-bottle.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Validate a manifest and print the effective policy.
    Check {
        /// Manifests to check.
        #[arg(required = true)]
        manifests: Vec<PathBuf>,
    },
    /// Serve the DNS channel (port 6002 protocol) alone, or query a verdict.
    Dns(DnsArgs),
    /// Run the egress proxy alone.
    Proxy {
        /// Listen address (tcp://IP:PORT or unix:///path).
        #[arg(long)]
        listen: String,
        /// The manifest.
        #[arg(long)]
        manifest: PathBuf,
        /// Extra CA (PEM) trusted for upstream servers.
        #[arg(long)]
        upstream_ca: Option<PathBuf>,
        /// Audit log (JSON lines); default: the manifest's, else the state directory's.
        #[arg(long)]
        audit_log: Option<PathBuf>,
        /// State directory (CA, audit log); default $XDG_STATE_HOME/bot-bottle.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Tokio worker threads; default: one per CPU. One avoids
        /// cross-thread wake-ups, more let TLS handshakes run in parallel
        /// (see docs/performance.md).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
        /// Allow a TCP listen address that is not loopback: anyone who can
        /// reach it can use the proxy and its injected credentials.
        #[arg(long)]
        allow_non_loopback: bool,
    },
    /// Manage the egress CA.
    Ca {
        /// Write the CA certificate (PEM) to this path (default: print it).
        #[arg(long)]
        export: Option<PathBuf>,
        /// State directory; default $XDG_STATE_HOME/bot-bottle.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Manage the image cache: OCI images unpacked as bottle roots.
    Image {
        /// State directory; default $XDG_STATE_HOME/bot-bottle.
        #[arg(long, global = true)]
        state_dir: Option<PathBuf>,
        /// What to do.
        #[command(subcommand)]
        cmd: ImageCommand,
    },
    /// The libkrun child process (internal: started by `launch`).
    #[command(name = "__krun-child", hide = true)]
    KrunChild {
        /// The VM spec file written by the launcher.
        #[arg(long)]
        spec: PathBuf,
    },
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `bottle-host dns`
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DnsArgs {
    /// Listen address (unix:///path, hvsock:///path:PORT or vsock://CID:PORT).
    #[arg(long)]
    pub listen: Option<String>,
    /// The manifest.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Upstream server instead of the manifest's or the host's.
    #[arg(long)]
    pub upstream: Option<String>,
    /// Append one JSON line per decision to this file.
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
    /// Allow a TCP listen address that is not loopback (anyone who can
    /// reach it can use the filter).
    #[arg(long)]
    pub allow_non_loopback: bool,
    /// Query a verdict instead of serving.
    #[command(subcommand)]
    pub query: Option<DnsQuery>,
}

/// `bottle-host dns query`
#[derive(Debug, Subcommand)]
pub enum DnsQuery {
    /// Print the verdict a name would get, without sending anything.
    Query {
        /// The name.
        name: String,
        /// Record type.
        #[arg(default_value = "A")]
        rtype: String,
        /// The manifest.
        #[arg(long)]
        manifest: PathBuf,
    },
}

/// Run a parsed command line; the return value is the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Check { manifests } => check::run(&manifests),
        Command::Exec {
            tty,
            interactive,
            state_dir,
            name,
            command,
        } => exec::run(state_dir.as_deref(), &name, &command, tty, interactive),
        Command::Ps { json, state_dir } => bottles::ps(state_dir.as_deref(), json),
        Command::Stop {
            time,
            names,
            state_dir,
        } => bottles::stop(state_dir.as_deref(), &names, Some(time)),
        Command::Kill { names, state_dir } => bottles::stop(state_dir.as_deref(), &names, None),
        Command::Logs {
            follow,
            console,
            name,
            state_dir,
        } => bottles::logs(state_dir.as_deref(), &name, follow, console),
        Command::Audit {
            follow,
            json,
            name,
            state_dir,
        } => bottles::audit(state_dir.as_deref(), &name, follow, json),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "bottle-host",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
        Command::Launch {
            manifest,
            state_dir,
            upstream_ca,
            guest_log,
            tty,
            interactive,
            console,
            name,
            detach,
            capped_log,
        } => {
            let args = crate::launch::LaunchArgs {
                manifest,
                state_dir,
                upstream_ca,
                guest_log,
                tty,
                interactive,
                console,
                name,
            };
            if detach {
                crate::launch::detach::run(args)
            } else {
                if capped_log {
                    anyhow::Context::context(
                        crate::launch::caplog::cap_stderr(),
                        "the launch log",
                    )?;
                }
                crate::launch::run(args)
            }
        }
        Command::Dns(args) => dns::run(args),
        Command::Proxy {
            listen,
            manifest,
            upstream_ca,
            audit_log,
            state_dir,
            threads,
            allow_non_loopback,
        } => proxy::run(proxy::ProxyArgs {
            listen: &listen,
            manifest: &manifest,
            upstream_ca: upstream_ca.as_deref(),
            audit_log: audit_log.as_deref(),
            state_dir: state_dir.as_deref(),
            threads: threads.map(usize::from),
            allow_non_loopback,
        }),
        Command::KrunChild { spec } => crate::vmm::krun::child_main(&spec),
        Command::Image { state_dir, cmd } => image::run(state_dir.as_deref(), cmd),
        Command::Ca { export, state_dir } => ca::ca(export.as_deref(), state_dir.as_deref()),
    }
}

/// Refuse a TCP listen address off loopback unless `allow` says it is
/// meant: a TCP listener has no peer to check, so whoever reaches it can
/// use the service.
pub fn check_listen(addr: &bottle_shared::Address, allow: bool) -> Result<()> {
    if let bottle_shared::Address::Tcp(sa) = addr {
        if !sa.ip().is_loopback() {
            if !allow {
                anyhow::bail!(
                    "--listen {addr}: not a loopback address; anyone who can reach it could \
                     use this service (add --allow-non-loopback if that is meant)"
                );
            }
            tracing::warn!("listening on non-loopback {addr}: anyone who can reach it can use it");
        } else {
            tracing::warn!(
                "listening on {addr}: every local user and process can use it; \
                 a unix:// socket is for this user only"
            );
        }
    }
    Ok(())
}

/// The state directory: the flag, else the default.
/// It is made private (`0700`) when missing; one that another user owns,
/// or that others may write to, is refused (`crate::hardening`).
pub fn state_dir(flag: Option<&Path>) -> Result<PathBuf> {
    let dir = match flag {
        Some(p) => p.to_path_buf(),
        None => crate::ca::default_state_dir()?,
    };
    crate::hardening::private_dir(&dir)?;
    Ok(dir)
}
