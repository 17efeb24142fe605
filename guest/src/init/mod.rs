//! The init: PID 1 duties, then config from the host, CA install, services,
//! and the agent under supervision, then `sync()` and power off.
//!
//! - [`cmdline`]: `bottle.*` kernel command-line keys.
//! - [`boot`]: mounts, hostname, `lo`, modules.
//! - [`ca`]: the egress CA into the rootfs trust stores.
//! - [`services`]: the [`services::Services`] hook for the DNS stub and the
//!   egress forwarder.
//! - [`exit`]: the init's own exit codes.
//!
//! The sequence is in `docs/guest-init.md`.

pub mod boot;
pub mod ca;
pub mod cmdline;
pub mod exit;
pub mod real_services;
pub mod root;
pub mod services;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bottle_shared::message::{BootInfo, GuestConfig, GuestMessage, ProcessEvent};
use bottle_shared::{Address, PROTOCOL_MAJOR, PROTOCOL_MINOR};
use tokio::sync::mpsc;

use crate::control::{self, ControlError};
use crate::status::{self, Board, HostStatus, ProcessStatus};
use crate::supervise::run::{run as supervise, Observer, Signals};
use crate::supervise::{plan, Supervisor};
use crate::sys::Sys;
use services::Services;

/// Grace period when the config gives none.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// How the init was started.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Host base address from `--host`, over `bottle.host`.
    pub host: Option<String>,
    /// Root filesystem prefix for the CA and `/etc/passwd` (`/` in a VM).
    pub rootfs: PathBuf,
    /// Status socket from `--status-socket`, over `bottle.status`.
    pub status_socket: Option<PathBuf>,
    /// Exit with the code instead of powering off, even as PID 1
    /// (namespaced tests).
    pub no_poweroff: bool,
    /// Where the kernel command line is read.
    pub cmdline: PathBuf,
    /// How long to keep trying to reach the host.
    pub connect_budget: Duration,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            host: None,
            rootfs: PathBuf::from("/"),
            status_socket: None,
            no_poweroff: false,
            cmdline: PathBuf::from("/proc/cmdline"),
            connect_budget: control::CONNECT_BUDGET,
        }
    }
}

/// As PID 1, before logging starts: honour `bottle.log` by setting
/// `RUST_LOG` (mounting `/proc` first if needed; boot then skips it).
pub fn early_log_env(sys: &dyn Sys) {
    if std::process::id() != 1 || std::env::var_os("RUST_LOG").is_some() {
        return;
    }
    if !Path::new("/proc/self").exists() {
        let _ = sys.mkdir_all(Path::new("/proc"));
        let _ = sys.mount(&boot::MOUNTS[0]);
    }
    if let Some(log) = std::fs::read_to_string("/proc/cmdline")
        .ok()
        .and_then(|c| cmdline::parse(&c).log)
    {
        // Single-threaded here: nothing else reads the environment yet.
        std::env::set_var("RUST_LOG", log);
    }
}

/// Run the init to the end; returns the exit code (after powering off
/// failed, or when not powering off).
pub fn run(opts: InitOptions, sys: Arc<dyn Sys>, services: Arc<dyn Services>) -> i32 {
    let started = Instant::now();
    let pid1 = std::process::id() == 1;
    tracing::info!(software = %crate::software(), pid1, "bottle-guest init starting");
    let params = cmdline::parse(&std::fs::read_to_string(&opts.cmdline).unwrap_or_default());
    if !params.unknown.is_empty() {
        tracing::warn!(keys = ?params.unknown, "unknown bottle.* kernel parameters ignored");
    }
    let mut root_error = None;
    if pid1 {
        let mountinfo = || std::fs::read_to_string("/proc/self/mountinfo").ok();
        root_error = boot::boot(&*sys, &params, &mountinfo).root_error;
    } else {
        tracing::info!("not PID 1: no mounts, hostname or network set-up");
        if let Err(e) = sys.set_subreaper() {
            tracing::warn!(error = %e, "cannot become a subreaper; orphans are not reaped");
        }
    }
    let code = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(serve(
            &opts,
            &params,
            started,
            pid1,
            root_error,
            sys.clone(),
            services,
        )),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            exit::INTERNAL
        }
    };
    sys.sync();
    if pid1 && !opts.no_poweroff {
        tracing::info!(code, "powering off");
        let e = sys.power_off();
        tracing::error!(error = %e, "power off failed");
    }
    code
}

struct Reporter {
    tx: mpsc::UnboundedSender<GuestMessage>,
    board: Board,
    started: Instant,
    logged_start: bool,
}

impl Observer for Reporter {
    fn event(&mut self, ev: ProcessEvent) {
        if !self.logged_start && matches!(ev, ProcessEvent::Started { .. }) {
            self.logged_start = true;
            tracing::info!(
                ms = self.started.elapsed().as_secs_f64() * 1000.0,
                "init start to agent exec"
            );
        }
        let _ = self.tx.send(GuestMessage::Process(ev));
    }
    fn update(&mut self, sup: &Supervisor) {
        self.board.set_agent(
            ProcessStatus {
                name: "agent".into(),
                pid: sup.pid(),
                state: sup.state(),
                restarts: sup.restarts(),
                last_exit: sup.last_exit(),
            },
            sup.orphans_reaped(),
        );
    }
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

async fn serve(
    opts: &InitOptions,
    params: &cmdline::BootParams,
    started: Instant,
    pid1: bool,
    root_error: Option<String>,
    sys: Arc<dyn Sys>,
    services: Arc<dyn Services>,
) -> i32 {
    // Before anything is spawned, so no SIGCHLD is missed.
    let mut sigs = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return exit::INTERNAL;
        }
    };
    let board = Board::new(started);
    let socket = opts
        .status_socket
        .clone()
        .or_else(|| params.status.as_ref().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(status::DEFAULT_SOCKET));
    if let Err(e) = status::server::spawn(&socket, board.clone()) {
        tracing::warn!(error = %e, socket = %socket.display(), "status socket unavailable");
    }
    let host = opts
        .host
        .as_deref()
        .or(params.host.as_deref())
        .unwrap_or(cmdline::DEFAULT_HOST);
    let base = match Address::parse(host) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "bad host address");
            return exit::BAD_ADDRESS;
        }
    };
    let addr = control::control_address(&base)
        .map(|a| a.to_string())
        .unwrap_or_else(|_| host.to_string());
    board.set_host(HostStatus {
        address: addr,
        state: "connecting".into(),
        ..Default::default()
    });
    let boot = BootInfo {
        software: crate::software(),
        init_ms: started.elapsed().as_millis() as u64,
        kernel: kernel_release(),
    };
    let connected = tokio::select! {
        r = control::establish(&base, boot, opts.connect_budget) => r,
        _ = sigs.terminated() => {
            tracing::warn!("SIGTERM before the host answered; stopping");
            return 128 + libc::SIGTERM;
        }
    };
    let ctl = match connected {
        Ok(c) => c,
        Err(e) => {
            let code = match e {
                ControlError::Unreachable { .. } => exit::HOST_UNREACHABLE,
                ControlError::Refused(_) => exit::HELLO_REFUSED,
                ControlError::Address(_) => exit::BAD_ADDRESS,
                ControlError::NoConfig(_) => exit::NO_CONFIG,
            };
            tracing::error!(error = %e, code, "CANNOT TALK TO THE HOST; stopping");
            return code;
        }
    };
    board.set_host(HostStatus {
        address: ctl.addr.to_string(),
        state: "connected".into(),
        peer_software: Some(ctl.peer.software.clone()),
        peer_protocol: Some(format!("{}.{}", ctl.peer.major, ctl.peer.minor)),
    });
    tracing::info!(peer = %ctl.peer.software, ours = %format!("{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}"), "config received");
    let cfg: GuestConfig = ctl.config.clone();
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    let tasks = ctl.spawn(req_tx, board.clone());
    let fatal = |message: String, code: i32| {
        tracing::error!(%message, code, "setup failed");
        let _ = tasks.tx.send(GuestMessage::Fatal { message, code });
        let _ = tasks.tx.send(GuestMessage::Exit { code });
        code
    };
    let code = 'run: {
        if let Some(e) = root_error {
            break 'run fatal(e, exit::SETUP_FAILED);
        }
        if let Err(e) = root::mount_shared(&*sys, &cfg.mounts) {
            break 'run fatal(e, exit::SETUP_FAILED);
        }
        if pid1 && !cfg.hostname.is_empty() {
            if let Err(e) = sys.sethostname(&cfg.hostname) {
                tracing::warn!(error = %e, "cannot set the hostname");
            }
        }
        let mut extra = Vec::new();
        if !cfg.ca_pem.is_empty() {
            match ca::install(&opts.rootfs, &cfg.ca_pem) {
                Ok(inst) => {
                    board.set_ca(
                        inst.locations
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect(),
                    );
                    extra.extend(inst.env());
                }
                Err(e) => break 'run fatal(format!("CA install: {e}"), exit::SETUP_FAILED),
            }
        }
        extra.extend(services::proxy_env(&cfg));
        match services.start(&cfg, &base) {
            Ok(h) => {
                board.set_stats(h.dns, h.egress);
                extra.extend(h.env);
            }
            Err(e) => break 'run fatal(format!("services: {e}"), exit::SETUP_FAILED),
        }
        let session = match &cfg.session {
            Some(spec) => match crate::session::Session::open(&base, 0, spec).await {
                Ok(s) => Some(s),
                Err(e) => break 'run fatal(format!("session: {e}"), exit::SETUP_FAILED),
            },
            None => None,
        };
        let plan = match plan::plan(&cfg.agent, &opts.rootfs, &extra) {
            Ok(mut p) => {
                if let Some(s) = &session {
                    p.stdio = s.stdio();
                }
                p
            }
            Err(e) => {
                tracing::error!(error = %e, "agent cannot be started");
                let _ = tasks
                    .tx
                    .send(GuestMessage::Process(ProcessEvent::StartFailed {
                        message: e.to_string(),
                    }));
                let code = crate::supervise::machine::EXIT_START_FAILED;
                if let Some(s) = session {
                    s.finish(None).await;
                }
                let _ = tasks.tx.send(GuestMessage::Exit { code });
                break 'run code;
            }
        };
        let grace = match cfg.agent.grace_ms {
            0 => DEFAULT_GRACE,
            ms => Duration::from_millis(ms),
        };
        let sup = Supervisor::new(sys.clone(), plan, cfg.agent.restart.clone());
        let mut rep = Reporter {
            tx: tasks.tx.clone(),
            board: board.clone(),
            started,
            logged_start: false,
        };
        // `exec` requests go to their own tasks; the rest to supervision.
        let execs = crate::supervise::run::ExecTable::default();
        let ctx = Arc::new(crate::exec::Context {
            base: base.clone(),
            agent: cfg.agent.clone(),
            rootfs: opts.rootfs.clone(),
            extra: extra.clone(),
            sys: sys.clone(),
            execs: execs.clone(),
        });
        let (sup_tx, sup_rx) = mpsc::unbounded_channel();
        tokio::spawn(crate::exec::route(req_rx, sup_tx, ctx));
        let code = supervise(sys.clone(), sup, sigs, grace, sup_rx, &mut rep, execs).await;
        tracing::info!(code, "agent done");
        // The agent's last output reaches the host before its exit code.
        if let Some(s) = session {
            s.finish(None).await;
        }
        let _ = tasks.tx.send(GuestMessage::Exit { code });
        code
    };
    tasks.close(Duration::from_secs(2)).await;
    code
}
