//! What `launch` tells the user about the VM and the agent: the VM's exit,
//! process events, and failures with the console's last lines.

use anyhow::Result;
use bottle_shared::message::ProcessEvent;

use super::console;
use super::terminal::notice;
use super::LAUNCH_FAILED;
use crate::vmm::{RunningVm, VmExit};

/// The VMM's exit, in words.
pub fn describe_exit(e: VmExit) -> String {
    match e {
        VmExit::Killed => "killed by bottle-host".into(),
        VmExit::Exited(st) => match (
            st.code(),
            std::os::unix::process::ExitStatusExt::signal(&st),
        ) {
            (Some(c), _) => format!("VMM exit status {c}"),
            (None, Some(s)) => format!("VMM killed by signal {s}"),
            _ => st.to_string(),
        },
    }
}

/// Say what happened to the agent.
pub fn report_event(ev: &ProcessEvent) {
    match ev {
        ProcessEvent::Started { pid, attempt } => {
            tracing::info!(pid, attempt, "agent started")
        }
        ProcessEvent::Exited { pid, code, signal } => {
            tracing::info!(pid, code, ?signal, "agent exited")
        }
        ProcessEvent::Restarting { attempt, delay_ms } => notice(&format!(
            "bottle: agent restarting (attempt {attempt}) in {delay_ms} ms"
        )),
        ProcessEvent::StartFailed { message } => {
            notice(&format!("bottle: agent could not be started: {message}"))
        }
        other => tracing::info!(?other, "agent event"),
    }
}

/// Kill the VM and say why, with the console's last lines.
pub async fn fail(vm: &mut dyn RunningVm, tail: &console::Tail, why: &str) -> Result<i32> {
    vm.kill();
    let _ = vm.wait().await;
    let t = tail.text();
    if t.trim().is_empty() {
        notice(&format!("bottle: {why}"));
    } else {
        notice(&format!(
            "bottle: {why}; the console's last lines:\n{}",
            last_lines(&t, 20)
        ));
    }
    Ok(LAUNCH_FAILED)
}

/// Ctrl-C before the guest connected.
pub async fn interrupted(vm: &mut dyn RunningVm) -> Result<i32> {
    notice("bottle: interrupted during boot; VM stopped");
    vm.kill();
    let _ = vm.wait().await;
    Ok(130)
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
