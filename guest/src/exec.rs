//! `bottle-host exec`: a process beside the agent, as the agent (same
//! user, working directory, environment, CA and proxy variables; the same
//! guards, which are outside the guest anyway), its streams on a session
//! of its own. Its exit status is taken by the init's reaper
//! ([`ExecTable`]) and sent back as `SessionOutput::Exit`. When the user's
//! `exec` goes away, its process group gets SIGHUP, then SIGKILL.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bottle_shared::message::{AgentSpec, ExecSpec, RestartPolicy};
use bottle_shared::Address;
use tokio::sync::{mpsc, oneshot};

use crate::session::Session;
use crate::supervise::exit::exit_code_from_wait_status;
use crate::supervise::plan;
use crate::supervise::run::{ExecTable, HostRequest};
use crate::sys::Sys;

/// Exit code when the command cannot be found (as a shell says).
pub const NOT_FOUND: i32 = 127;
/// Exit code when it was found but could not be started.
pub const CANNOT_RUN: i32 = 126;
/// How long a hung-up process has before SIGKILL.
pub const HANGUP_GRACE: Duration = Duration::from_secs(2);

/// What every exec needs.
pub struct Context {
    /// The host's base address.
    pub base: Address,
    /// The agent's spec: user, workdir, environment.
    pub agent: AgentSpec,
    /// Root filesystem prefix.
    pub rootfs: PathBuf,
    /// The CA and proxy variables the agent got.
    pub extra: Vec<(String, String)>,
    /// System calls.
    pub sys: Arc<dyn Sys>,
    /// Where the reaper hands exec'd processes' statuses.
    pub execs: ExecTable,
}

/// Send `Exec` requests to their own tasks and the rest on to supervision.
pub async fn route(
    mut rx: mpsc::UnboundedReceiver<HostRequest>,
    sup: mpsc::UnboundedSender<HostRequest>,
    ctx: Arc<Context>,
) {
    while let Some(r) = rx.recv().await {
        match r {
            HostRequest::Exec(spec) => {
                tokio::spawn(run(ctx.clone(), *spec));
            }
            other => {
                let _ = sup.send(other);
            }
        }
    }
}

async fn run(ctx: Arc<Context>, spec: ExecSpec) {
    let session = match Session::open(&ctx.base, spec.session, &spec.streams).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "exec: no session");
            return;
        }
    };
    let agent = AgentSpec {
        command: spec.command.clone(),
        restart: RestartPolicy::default(),
        ..ctx.agent.clone()
    };
    let code = match plan::plan(&agent, &ctx.rootfs, &ctx.extra) {
        Err(e) => {
            session.say(&format!("bottle-guest: exec: {e}\n")).await;
            NOT_FOUND
        }
        Ok(mut p) => {
            p.stdio = session.stdio();
            let (tx, rx) = oneshot::channel();
            // No await between the spawn and the registration: the reaper
            // runs on this same thread, so it cannot miss the pid.
            match ctx.sys.spawn(&p) {
                Ok(pid) => {
                    ctx.execs
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(pid, tx);
                    tracing::info!(pid, command = ?spec.command, "exec started");
                    wait(&ctx, &session, pid, rx).await
                }
                Err(e) => {
                    session.say(&format!("bottle-guest: exec: {e}\n")).await;
                    CANNOT_RUN
                }
            }
        }
    };
    session.finish(Some(code)).await;
}

/// The exit code of `pid`; if the user leaves first, hang it up.
async fn wait(ctx: &Context, session: &Session, pid: i32, mut rx: oneshot::Receiver<i32>) -> i32 {
    let code =
        |raw: Result<i32, _>| raw.map_or(CANNOT_RUN, |raw| exit_code_from_wait_status(raw).0);
    tokio::select! {
        raw = &mut rx => return code(raw),
        _ = session.host_gone() => {}
    }
    let _ = ctx.sys.kill(-pid, libc::SIGHUP);
    let _ = ctx.sys.kill(-pid, libc::SIGCONT);
    match tokio::time::timeout(HANGUP_GRACE, &mut rx).await {
        Ok(raw) => code(raw),
        Err(_) => {
            let _ = ctx.sys.kill(-pid, libc::SIGKILL);
            code(rx.await)
        }
    }
}
