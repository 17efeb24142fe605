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
//! - [`console`]: the guest console (to `console.log`, not stdout).
//! - [`session`]: the agent's stdin, stdout and stderr or terminal.
//! - [`terminal`]: raw mode and the escape sequence for `-it`.
//! - [`report`]: what the user is told about the VM and the agent.
//! - [`rundir`]: the run directory.

pub mod config;
pub mod console;
pub mod control;
pub mod lookup;
pub mod report;
pub mod rundir;
pub mod services;
pub mod session;
pub mod terminal;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bottle_shared::channel::{CONTROL_PORT, DNS_PORT, EGRESS_PORT, SESSION_PORT};
use bottle_shared::message::{GuestMessage, ProcessEvent, SessionSpec};
use report::{describe_exit, fail, interrupted, report_event};
use terminal::notice;

use crate::ca::Ca;
use crate::manifest::{self, Backend};
use crate::vmm::{self, qemu::Qemu, VmExit, VmSpec, Vmm};

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
    let image = vmm::image::find(
        m.vm.kernel.as_deref(),
        m.vm.image.as_deref(),
        &vmm::image::candidate_dirs(Some(&state)),
    )?;
    if let Some(ca) = &args.upstream_ca {
        if !ca.is_file() {
            bail!("--upstream-ca {}: no such file", ca.display());
        }
    }
    let wiring = session::Wiring {
        tty: args.tty,
        stdin: args.interactive || !stdin_tty,
        raw: args.tty && args.interactive,
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
    let mut guest_cfg = config::guest_config(&m, &ca.cert_pem);
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
    let console_log = logs.join("console.log");

    let run = rundir::RunDir::create(&state).context("run directory")?;
    let spec = VmSpec {
        kernel: image.kernel.clone(),
        initramfs: Some(image.initramfs.clone()),
        rootfs_dir: image.rootfs_dir.clone(),
        cmdline: config::kernel_params(
            &image.modules,
            Some(args.guest_log.as_deref().unwrap_or(DEFAULT_GUEST_LOG)),
        ),
        memory_mib: m.vm.memory_mib,
        vcpus: m.vm.cpus,
        vsock_base: run.vsock_base(),
        guest_ports: vec![CONTROL_PORT, DNS_PORT, EGRESS_PORT, SESSION_PORT],
        console_log: m.vm.console_log.clone(),
        guest_exec: "/sbin/bottle-guest".into(),
        ..Default::default()
    };

    eprintln!("bottle: id          {id}");
    eprintln!("bottle: backend     {} ({})", vmm.name(), vmm.accelerator());
    eprintln!(
        "bottle: image       {} + {}",
        image.kernel.display(),
        image.initramfs.display()
    );
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
        m.vm.console_log.as_ref().unwrap_or(&console_log).display(),
        if args.console { " (and on stderr)" } else { "" }
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
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
        let console = ConsoleOut {
            log: Some(crate::hardening::create_private(&console_log)?),
            show: args.console,
        };
        let io = Io {
            wiring,
            console,
            session: &svc.session,
        };
        let r = supervise(&*vmm, &spec, &svc.control, &guest_cfg, io, t0).await;
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

/// What ended the wait for the guest.
enum Ended {
    Exit(i32),
    VmStopped(VmExit),
    Failed(String),
}

/// Where the console goes.
struct ConsoleOut {
    log: Option<std::fs::File>,
    show: bool,
}

/// The agent's streams and the console.
struct Io<'a> {
    wiring: session::Wiring,
    console: ConsoleOut,
    session: &'a bottle_shared::transport::Listener,
}

/// Boot the VM, run the control session, and return the agent's code.
async fn supervise(
    vmm: &dyn Vmm,
    spec: &VmSpec,
    control: &bottle_shared::transport::Listener,
    guest_cfg: &bottle_shared::message::GuestConfig,
    io: Io<'_>,
    t0: Instant,
) -> Result<i32> {
    let mut vm = vmm.start(spec).await.context("starting the VM")?;
    let t_vm = Instant::now();
    let tail = console::Tail::default();
    let Io {
        wiring,
        console: ConsoleOut { log, show },
        session: session_listener,
    } = io;
    let console_task = vm
        .console()
        .map(|c| console::forward(c, tail.clone(), log, show));
    // The agent's session: accepted once; its pump, and raw mode while it
    // runs (restored when this function returns, however it returns).
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut pump: Option<tokio::task::JoinHandle<()>> = None;
    let mut attaching: Option<
        tokio::task::JoinHandle<Result<bottle_shared::transport::BoxStream>>,
    > = None;
    let mut raw: Option<terminal::RawMode> = None;
    let mut session_tried = false;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;

    // 1. The guest connects and gets its config.
    let session = tokio::select! {
        s = tokio::time::timeout(BOOT_TIMEOUT, control::accept(control, guest_cfg)) => match s {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return fail(&mut *vm, &tail, &format!("guest control channel: {e}")).await,
            Err(_) => return fail(&mut *vm, &tail, &format!("the guest did not connect within {BOOT_TIMEOUT:?}")).await,
        },
        st = vm.wait() => {
            let why = describe_exit(st?);
            return fail(&mut *vm, &tail, &format!("the VM stopped before the guest connected ({why})")).await;
        }
        _ = tokio::signal::ctrl_c() => return interrupted(&mut *vm).await,
        _ = term.recv() => return interrupted(&mut *vm).await,
    };
    let t_connect = Instant::now();
    let init_ms = session.boot.init_ms as f64;
    tracing::info!(guest = %session.peer.software, kernel = %session.boot.kernel, "guest connected");
    let (mut events, mut shutdown) = session.split();

    // 2. Events until the agent's exit.
    let grace = Duration::from_millis(guest_cfg.agent.grace_ms.max(1000));
    let mut shutdown_sent = false;
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut started_logged = false;
    let ended = loop {
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = events.next() => match msg {
                Ok(Some(GuestMessage::Exit { code })) => break Ended::Exit(code),
                Ok(Some(GuestMessage::Fatal { message, code })) => {
                    notice(&format!("bottle: guest setup failed ({code}): {message}"));
                }
                Ok(Some(GuestMessage::Process(ev))) => {
                    if !started_logged && matches!(ev, ProcessEvent::Started { .. }) {
                        started_logged = true;
                        let boot_ms = ms(t_connect - t_vm) - init_ms;
                        let init = init_ms + ms(t_connect.elapsed());
                        notice(&format!(
                            "bottle: timing      host setup {:.0} ms, VM boot {:.0} ms, guest init {:.0} ms (launch to agent {:.0} ms)",
                            ms(t_vm - t0), boot_ms.max(0.0), init, ms(t0.elapsed())
                        ));
                    }
                    report_event(&ev);
                }
                Ok(Some(other)) => tracing::debug!(?other, "control message"),
                Ok(None) => break Ended::Failed("the guest closed the control channel without an exit code".into()),
                Err(e) => break Ended::Failed(format!("control channel: {e}")),
            },
            st = vm.wait() => break Ended::VmStopped(st?),
            s = session_listener.accept() => {
                match s {
                    Ok(s) if !session_tried => {
                        session_tried = true;
                        attaching = Some(tokio::spawn(session::accept(s)));
                    }
                    // Only the init's session may exist (it is made before
                    // the agent starts); any other is dropped, even after
                    // a failed first one.
                    Ok(s) => drop(tokio::spawn(session::refuse(s))),
                    Err(_) => {}
                }
            }
            a = async { attaching.as_mut()?.await.ok() }, if attaching.is_some() => {
                attaching = None;
                match a {
                    Some(Ok(s)) => {
                        if wiring.raw {
                            match terminal::RawMode::enter() {
                                Ok(r) => raw = Some(r),
                                Err(e) => notice(&format!("bottle: cannot put the terminal in raw mode: {e}")),
                            }
                        }
                        pump = Some(session::spawn(s, wiring, stop.clone()));
                    }
                    Some(Err(e)) => notice(&format!("bottle: agent session: {e:#}")),
                    None => {}
                }
            }
            _ = stop.notified(), if !shutdown_sent => {
                shutdown_sent = true;
                let _ = shutdown.send(grace.as_millis() as u64).await;
                deadline = Some(tokio::time::Instant::now() + grace + POWEROFF_TIMEOUT);
            }
            extra = control.accept() => {
                // Only bottle-guest's session may exist; anyone else (the
                // agent dialling port 6001) is refused, never left waiting.
                if let Ok(s) = extra {
                    tokio::spawn(control::refuse(s));
                }
            }
            _ = tokio::signal::ctrl_c(), if !shutdown_sent => {
                notice("bottle: interrupted; stopping the agent (again to kill the VM)");
                shutdown_sent = true;
                let _ = shutdown.send(grace.as_millis() as u64).await;
                deadline = Some(tokio::time::Instant::now() + grace + POWEROFF_TIMEOUT);
            }
            _ = term.recv(), if !shutdown_sent => {
                notice("bottle: terminated; stopping the agent");
                shutdown_sent = true;
                let _ = shutdown.send(grace.as_millis() as u64).await;
                deadline = Some(tokio::time::Instant::now() + grace + POWEROFF_TIMEOUT);
            }
            _ = tokio::signal::ctrl_c(), if shutdown_sent => {
                vm.kill();
                break Ended::Failed("killed on a second interrupt".into());
            }
            _ = sleep => {
                vm.kill();
                break Ended::Failed("the guest did not stop in time; VM killed".into());
            }
        }
    };

    // 3. The agent's last output (sent before its exit code), then the
    // terminal back to normal before anything else is printed.
    if let Some(p) = pump.take() {
        let abort = p.abort_handle();
        if tokio::time::timeout(OUTPUT_DRAIN, p).await.is_err() {
            abort.abort();
        }
    }
    drop(raw.take());

    // 4. The VM powers off by itself after the exit; make sure it is gone.
    let code = match ended {
        Ended::Exit(code) => {
            match tokio::time::timeout(POWEROFF_TIMEOUT, vm.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!("the VM did not power off in time; killing it");
                    vm.kill();
                    let _ = vm.wait().await;
                }
            }
            notice(&format!("bottle: agent exited with code {code}"));
            code
        }
        Ended::VmStopped(st) => {
            notice(&format!(
                "bottle: the VM stopped before the agent reported an exit ({})",
                describe_exit(st)
            ));
            LAUNCH_FAILED
        }
        Ended::Failed(why) => {
            // A closed control channel usually means the VM died: say so.
            match tokio::time::timeout(Duration::from_secs(3), vm.wait()).await {
                Ok(Ok(st @ VmExit::Exited(_))) => notice(&format!(
                    "bottle: the VM stopped before the agent reported an exit ({}); {why}",
                    describe_exit(st)
                )),
                _ => {
                    notice(&format!("bottle: {why}"));
                    vm.kill();
                    let _ = vm.wait().await;
                }
            }
            LAUNCH_FAILED
        }
    };
    if let Some(t) = console_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    Ok(code)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
