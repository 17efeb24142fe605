//! The supervision loop of `launch`: boot the VM, accept the guest's
//! control channel and sessions, follow the agent's events, answer the
//! control socket's commands, and turn signals into a clean stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bottle_shared::message::{GuestMessage, ProcessEvent};

use super::report::{describe_exit, fail, interrupted, report_event};
use super::terminal::notice;
use super::{console, control, lifecycle, session, terminal};
use super::{BOOT_TIMEOUT, LAUNCH_FAILED, OUTPUT_DRAIN, POWEROFF_TIMEOUT};
use crate::vmm::{VmExit, VmSpec, Vmm};

/// Connections being refused at once, per port (the control port's
/// extra connections, the session port's beyond
/// [`session::MAX_ATTACHING`]); more are closed as soon as accepted, so a
/// guest dialling in a loop cannot make the host hold descriptors.
pub(super) const MAX_REFUSING: usize = 4;

/// What ended the wait for the guest.
enum Ended {
    Exit(i32),
    VmStopped(VmExit),
    Failed(String),
}

/// Where the console goes.
pub(super) struct ConsoleOut {
    pub(super) log: Option<std::fs::File>,
    pub(super) show: bool,
}

/// The agent's streams and the console.
pub(super) struct Io<'a> {
    pub(super) wiring: session::Wiring,
    pub(super) console: ConsoleOut,
    pub(super) session: &'a bottle_shared::transport::Listener,
    pub(super) agent_log: Option<std::fs::File>,
    pub(super) cmds: tokio::sync::mpsc::Receiver<lifecycle::Command>,
    pub(super) info: Arc<std::sync::Mutex<lifecycle::Info>>,
}

/// Boot the VM, run the control session, and return the agent's code.
pub(super) async fn supervise(
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
        mut agent_log,
        mut cmds,
        info,
    } = io;
    let set =
        |f: &dyn Fn(&mut lifecycle::Info)| f(&mut info.lock().unwrap_or_else(|p| p.into_inner()));
    let mut status_waiters: Vec<tokio::sync::oneshot::Sender<String>> = Vec::new();
    let console_task = vm
        .console()
        .map(|c| console::forward(c, tail.clone(), log, show));
    // The agent's session: accepted once; its pump, and raw mode while it
    // runs (restored when this function returns, however it returns).
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut pump: Option<tokio::task::JoinHandle<Option<i32>>> = None;
    // Session connections being attached (the agent's, then `exec`s'),
    // a few at a time; and the `exec`s waiting for theirs, by session id.
    let mut attaching = tokio::task::JoinSet::new();
    let mut execs = session::Execs::default();
    let mut raw: Option<terminal::RawMode> = None;
    let mut agent_attached = false;
    let mut refusing_control = crate::accept::Cap::new(MAX_REFUSING);
    let mut refusing_session = crate::accept::Cap::new(MAX_REFUSING);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;

    // 1. The guest connects and gets its config.
    let accept = tokio::time::timeout(BOOT_TIMEOUT, control::accept(control, guest_cfg));
    tokio::pin!(accept);
    let session = loop {
        tokio::select! {
            s = &mut accept => match s {
                Ok(Ok(s)) => break s,
                Ok(Err(e)) => return fail(&mut *vm, &tail, &format!("guest control channel: {e}")).await,
                Err(_) => return fail(&mut *vm, &tail, &format!("the guest did not connect within {BOOT_TIMEOUT:?}")).await,
            },
            st = vm.wait() => {
                let why = describe_exit(st?);
                return fail(&mut *vm, &tail, &format!("the VM stopped before the guest connected ({why})")).await;
            }
            _ = tokio::signal::ctrl_c() => return interrupted(&mut *vm).await,
            _ = term.recv() => return interrupted(&mut *vm).await,
            // `stop` or `kill` during boot: nothing runs yet, so the VM goes.
            Some(cmd) = cmds.recv() => if !matches!(cmd, lifecycle::Command::Status(_)) {
                return interrupted(&mut *vm).await;
            },
        }
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
                Ok(Some(GuestMessage::Status { json })) => {
                    for w in status_waiters.drain(..) {
                        let _ = w.send(json.clone());
                    }
                }
                Ok(Some(GuestMessage::Process(ev))) => {
                    set(&|i| lifecycle::note_event(i, &ev));
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
            // `accept::next` waits out running out of descriptors
            // instead of spinning on the error.
            s = crate::accept::next(session_listener, "session channel") => {
                if let Ok(s) = s {
                    if attaching.len() < session::MAX_ATTACHING {
                        attaching.spawn(session::accept(s));
                    } else if let Some(slot) = refusing_session.take("session channel (refusing)") {
                        drop(tokio::spawn(async move {
                            session::refuse(s).await;
                            drop(slot);
                        }));
                    }
                    // Else `s` is dropped here: closed at once.
                }
            }
            Some(a) = attaching.join_next(), if !attaching.is_empty() => match a {
                // The agent's: once, from the init, before the agent starts;
                // any later attach as 0 (the agent posing as the init) is
                // dropped.
                Ok(Ok((0, s))) if !agent_attached => {
                    agent_attached = true;
                    if wiring.raw {
                        match terminal::RawMode::enter() {
                            Ok(r) => raw = Some(r),
                            Err(e) => notice(&format!("bottle: cannot put the terminal in raw mode: {e}")),
                        }
                    }
                    pump = Some(session::spawn(s, wiring, stop.clone(), agent_log.take()));
                }
                Ok(Ok((id, s))) => execs.attach(id, s),
                Ok(Err(e)) => tracing::info!("session refused: {e:#}"),
                Err(_) => {}
            },
            cmd = cmds.recv() => match cmd {
                Some(lifecycle::Command::Status(tx)) => {
                    // Those who gave up waiting (a silent guest) go.
                    status_waiters.retain(|w| !w.is_closed());
                    status_waiters.push(tx);
                    let _ = shutdown.ask_status();
                }
                Some(lifecycle::Command::Stop(g)) if !shutdown_sent => {
                    notice("bottle: stop requested; stopping the agent");
                    set(&|i| i.agent_state = "stopping".into());
                    shutdown_sent = true;
                    let g = g.max(Duration::from_millis(100));
                    let _ = shutdown.send(g.as_millis() as u64);
                    deadline = Some(tokio::time::Instant::now() + g + POWEROFF_TIMEOUT);
                }
                Some(lifecycle::Command::Exec(spec, reply)) => {
                    let spec = execs.expect(spec, reply);
                    let _ = shutdown.exec(spec);
                }
                Some(lifecycle::Command::Kill) => {
                    vm.kill();
                    break Ended::Failed("killed by bottle-host kill".into());
                }
                _ => {}
            },
            _ = stop.notified(), if !shutdown_sent => {
                shutdown_sent = true;
                let _ = shutdown.send(grace.as_millis() as u64);
                deadline = Some(tokio::time::Instant::now() + grace + POWEROFF_TIMEOUT);
            }
            extra = crate::accept::next(control, "control channel") => {
                // Only bottle-guest's session may exist; anyone else (the
                // agent dialling port 6001) is refused, never left waiting;
                // beyond a few at once, closed at once.
                if let Ok(s) = extra {
                    if let Some(slot) = refusing_control.take("control channel (refusing)") {
                        drop(tokio::spawn(async move {
                            control::refuse(s).await;
                            drop(slot);
                        }));
                    }
                }
            }
            _ = tokio::signal::ctrl_c(), if !shutdown_sent => {
                notice("bottle: interrupted; stopping the agent (again to kill the VM)");
                shutdown_sent = true;
                let _ = shutdown.send(grace.as_millis() as u64);
                deadline = Some(tokio::time::Instant::now() + grace + POWEROFF_TIMEOUT);
            }
            _ = term.recv(), if !shutdown_sent => {
                notice("bottle: terminated; stopping the agent");
                shutdown_sent = true;
                let _ = shutdown.send(grace.as_millis() as u64);
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

#[cfg(test)]
#[path = "supervise_tests.rs"]
mod tests;
