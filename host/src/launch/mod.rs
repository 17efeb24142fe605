//! `bottle-host launch`: boot a bottle and run its agent.
//!
//! In order: check the manifest, the secrets and the image (a clear error
//! before anything starts); start the DNS filter, the egress proxy and the
//! control listener on Unix sockets in a private run directory; boot the
//! VM; push the guest its config on the control channel; stream the
//! console and the agent's events; return the agent's exit code. Ctrl-C
//! (or SIGTERM) asks the guest to stop its agent and power off; a second
//! one kills the VM. Nothing outlives the launch: the VMM and its helper
//! die with it, and the run directory is removed.
//!
//! - [`config`]: the guest's config and kernel parameters.
//! - [`control`]: the host end of the control channel.
//! - [`services`]: DNS filter, proxy and bridges.
//! - [`lookup`]: the proxy resolves through the DNS filter.
//! - [`detach`]: `--detach`, the launch in the background.
//! - [`lifecycle`]: the bottle's name and control socket (`ps`, `stop`, …).
//! - [`console`]: the guest console (to `console.log`, not stdout).
//! - [`session`]: the agent's stdin, stdout and stderr or terminal.
//! - [`terminal`]: raw mode and the escape sequence for `-it`.
//! - [`report`]: what the user is told about the VM and the agent.
//! - [`rundir`]: the run directory.
//! - `supervise`: the loop from boot to the agent's exit.

pub mod caplog;
pub mod config;
pub mod console;
pub mod control;
pub mod detach;
pub mod lifecycle;
pub mod lookup;
pub mod report;
pub mod root;
pub mod rundir;
pub mod services;
pub mod session;
mod session_input;
mod supervise;
pub mod terminal;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bottle_shared::channel::{CONTROL_PORT, DNS_PORT, EGRESS_PORT, SESSION_PORT};
use bottle_shared::message::SessionSpec;

use crate::ca::Ca;
use crate::manifest::{self, Backend};
use crate::vmm::{self, qemu::Qemu, VmSpec, Vmm};

/// The guest's log filter unless `--guest-log` says otherwise: quiet, so
/// the console shows the agent's output.
pub const DEFAULT_GUEST_LOG: &str = "warn";
/// `launch`'s own exit code when it fails (the VM could not start, died,
/// or never reported an exit), as distinct from any agent's code.
pub const LAUNCH_FAILED: i32 = 125;
/// How long the guest has to connect after the VM starts (TCG is slow).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the VM has to power off after the agent's exit.
pub const POWEROFF_TIMEOUT: Duration = Duration::from_secs(15);

/// Flags of `bottle-host launch`.
#[derive(Debug, Clone)]
pub struct LaunchArgs {
    /// The manifest.
    pub manifest: PathBuf,
    /// State directory (CA, audit logs).
    pub state_dir: Option<PathBuf>,
    /// Extra CA the proxy trusts for upstream servers.
    pub upstream_ca: Option<PathBuf>,
    /// Guest log filter (`bottle.log`).
    pub guest_log: Option<String>,
    /// `-t`: the agent runs on a terminal in the guest.
    pub tty: bool,
    /// `-i`: our standard input goes to the agent (also without `-i` when
    /// standard input is not a terminal: `echo x | bottle-host launch`).
    pub interactive: bool,
    /// `--console`: show the guest console on standard error.
    pub console: bool,
    /// `--name`: the bottle's name (generated when absent).
    pub name: Option<String>,
}

/// How long the agent's last output may take to arrive after its exit.
pub const OUTPUT_DRAIN: Duration = Duration::from_secs(5);

/// Run a launch to the end; the return value is the process exit code.
pub fn run(args: LaunchArgs) -> Result<i32> {
    let t0 = Instant::now();
    // Everything that can be checked is checked before anything starts.
    let stdin_tty = std::io::stdin().is_terminal();
    if args.tty && !stdin_tty {
        bail!("-t needs a terminal on standard input; drop -t to pipe input to the agent");
    }
    let m = manifest::load(&args.manifest)?;
    let secrets = m.load_secrets()?;
    // From here on no core dump, ptrace or /proc read of this process.
    crate::hardening::hold_secrets(&secrets);
    let state = crate::cli::state_dir(args.state_dir.as_deref())?;
    let root = root::resolve(
        &m,
        &state,
        &vmm::image::candidate_dirs(Some(&state)),
        &crate::image::bars::Bars::new(),
    )?;
    let image = root.image.clone();
    // The agent must be known before anything starts.
    let agent = root::agent_spec(&m, &root.config)?;
    if let Some(ca) = &args.upstream_ca {
        if !ca.is_file() {
            bail!("--upstream-ca {}: no such file", ca.display());
        }
    }
    let wiring = session::Wiring {
        tty: args.tty,
        stdin: args.interactive || !stdin_tty,
        raw: args.tty && args.interactive,
        hangup_on_escape: false,
    };
    let vmm = pick_backend(&m)?;
    let ca = Ca::load_or_create(&state)?;
    // Each bottle its own logs: bottles running side by side never share
    // an audit file.
    let id = bottle_id();
    let logs = state.join("bottles").join(&id);
    crate::hardening::private_dir(&logs)?;
    let proxy_audit = m
        .egress
        .audit_log
        .clone()
        .unwrap_or_else(|| logs.join("audit.jsonl"));
    let dns_audit = logs.join("dns-audit.jsonl");
    let mut guest_cfg = config::guest_config(&m, &ca.cert_pem, agent, root.mounts.clone());
    let (rows, cols) = terminal::size().unwrap_or((0, 0));
    guest_cfg.session = Some(SessionSpec {
        tty: wiring.tty,
        stdin: wiring.stdin,
        rows,
        cols,
    });
    if wiring.tty && !guest_cfg.agent.env.iter().any(|(k, _)| k == "TERM") {
        let term = std::env::var("TERM").unwrap_or_else(|_| "xterm".into());
        guest_cfg.agent.env.push(("TERM".into(), term));
    }
    // `[vm] console_log` moves the file; under QEMU it is written here,
    // capped, either way (launch/console.rs); under libkrun, through a
    // capped pipe (vmm/daemon_log.rs).
    let console_log =
        m.vm.console_log
            .clone()
            .unwrap_or_else(|| logs.join("console.log"));

    let run = rundir::RunDir::create(&state).context("run directory")?;
    let spec = VmSpec {
        kernel: image.kernel.clone(),
        initramfs: Some(image.initramfs.clone()),
        rootfs_dir: image.rootfs_dir.clone(),
        cmdline: config::kernel_params(
            &image.modules,
            Some(args.guest_log.as_deref().unwrap_or(DEFAULT_GUEST_LOG)),
            &root.cmdline,
        ),
        memory_mib: m.vm.memory_mib,
        vcpus: m.vm.cpus,
        vsock_base: run.vsock_base(),
        guest_ports: vec![CONTROL_PORT, DNS_PORT, EGRESS_PORT, SESSION_PORT],
        console_log: m.vm.console_log.clone(),
        guest_exec: "/sbin/bottle-guest".into(),
        shares: root.shares.clone(),
        disks: root.disks.clone(),
        ..Default::default()
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let name = args.name.clone().unwrap_or_else(lifecycle::generate_name);
    // The name's lock and socket, held until this launch ends.
    let claim = rt.block_on(lifecycle::claim(&state, &name))?;
    let _ = std::fs::write(logs.join("name"), &name);
    let info = std::sync::Arc::new(std::sync::Mutex::new(lifecycle::Info {
        name: name.clone(),
        id: id.clone(),
        manifest: args.manifest.clone(),
        image: root.describe.clone(),
        backend: format!("{} ({})", vmm.name(), vmm.accelerator()),
        started_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default(),
        pid: std::process::id(),
        logs: logs.clone(),
        agent_state: "booting".into(),
        ..Default::default()
    }));

    eprintln!("bottle: name        {name}");
    eprintln!("bottle: id          {id}");
    eprintln!("bottle: backend     {} ({})", vmm.name(), vmm.accelerator());
    eprintln!("bottle: image       {}", root.describe);
    for mnt in &m.mounts {
        eprintln!(
            "bottle: mount       {} -> {}{}",
            mnt.host.display(),
            mnt.guest,
            if mnt.readonly { " (read-only)" } else { "" }
        );
    }
    let allow = m.dns_allowlist();
    eprintln!(
        "bottle: allowlist   {}",
        if allow.is_empty() {
            "(empty: no name resolves, nothing leaves)".to_string()
        } else {
            allow
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    eprintln!("bottle: audit log   {} (proxy)", proxy_audit.display());
    eprintln!("bottle: dns audit   {}", dns_audit.display());
    eprintln!("bottle: run dir     {}", run.path().display());
    eprintln!(
        "bottle: console     {}{}",
        console_log.display(),
        if args.console { " (and on stderr)" } else { "" }
    );

    let inputs = services::Inputs {
        manifest: m,
        secrets,
        ca,
        upstream_ca: args.upstream_ca.clone(),
        proxy_audit,
        dns_audit,
    };
    let code = rt.block_on(async {
        let svc = services::start(inputs, &run).await?;
        let console = supervise::ConsoleOut {
            log: Some(crate::hardening::create_private(&console_log)?),
            show: args.console,
        };
        let (cmd_tx, cmds) = tokio::sync::mpsc::channel(8);
        let ctl = lifecycle::serve(claim, info.clone(), cmd_tx);
        let io = supervise::Io {
            wiring,
            console,
            session: &svc.session,
            agent_log: Some(crate::hardening::open_private_append(
                &logs.join("agent.log"),
            )?),
            cmds,
            info,
        };
        let r = supervise::supervise(&*vmm, &spec, &svc.control, &guest_cfg, io, t0).await;
        // The name is free again once the socket is gone and its lock
        // released (the task holds both).
        ctl.abort();
        let _ = ctl.await;
        svc.stop().await;
        r
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    drop(run);
    code
}

/// A bottle's id: `YYYYMMDD-HHMMSS-PID` (UTC), unique on this host while
/// it runs, sortable by start time; it names `<state>/bottles/<id>/`.
fn bottle_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}-{}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        std::process::id()
    )
}

/// The backend the manifest asks for; `auto` is libkrun when present,
/// else QEMU, and says which it picked.
fn pick_backend(m: &manifest::Manifest) -> Result<Box<dyn Vmm>> {
    match m.vm.backend {
        Backend::Qemu => Ok(Box::new(Qemu::detect(m.vm.accel)?)),
        Backend::Libkrun => Ok(vmm::krun_backend()?),
        Backend::Auto => match vmm::krun_backend() {
            Ok(k) => {
                eprintln!("bottle: backend auto: libkrun found, using it");
                Ok(k)
            }
            Err(why) => {
                eprintln!("bottle: backend auto: using QEMU, since {why}");
                Ok(Box::new(Qemu::detect(m.vm.accel)?))
            }
        },
    }
}
