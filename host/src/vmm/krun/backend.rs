//! libkrun as a [`Vmm`]: the supervisor re-executes itself as
//! `bottle-host __krun-child` (see `child.rs`), which enters libkrun; the
//! supervisor watches that child like any VMM process.

use super::{child_command, plan, spec_path, write_spec, KrunLib};
use crate::log_cap::LOG_LIMIT;
use crate::vmm::daemon_log::{DaemonLog, CONSOLE_FD_PATH};
use crate::vmm::{supervised, BoxFuture, Console, RunningVm, VmExit, VmSpec, Vmm, VmmError};

/// The libkrun backend, with the library it found.
#[derive(Debug)]
pub struct Krun {
    /// The library's name as loaded.
    pub library: String,
}

impl Krun {
    /// Load libkrun (to check it is there and new enough) and keep its name;
    /// the child process loads it again for itself.
    pub fn detect() -> Result<Krun, VmmError> {
        let lib: KrunLib = super::detect().map_err(|e| VmmError::Unavailable(e.to_string()))?;
        Ok(Krun { library: lib.name })
    }
}

impl Vmm for Krun {
    fn name(&self) -> &'static str {
        "libkrun"
    }

    fn accelerator(&self) -> String {
        format!("kvm/hvf via {}", self.library)
    }

    fn start(&self, spec: &VmSpec) -> BoxFuture<'_, Result<Box<dyn RunningVm>, VmmError>> {
        let spec = spec.clone();
        Box::pin(async move {
            let exe = std::env::current_exe()?;
            Ok(Box::new(start_child(spec, &exe)?) as Box<dyn RunningVm>)
        })
    }
}

/// Plan, write the spec and start `exe __krun-child` on it.
fn start_child(mut spec: VmSpec, exe: &std::path::Path) -> Result<KrunVm, VmmError> {
    plan(&spec).map_err(|e| VmmError::Spec(e.to_string()))?;
    // libkrun writes the console log itself, without limit: it writes to
    // a pipe instead, copied into the file up to LOG_LIMIT
    // (`daemon_log`).
    let console_log = spec.console_log.take();
    if console_log.is_some() {
        spec.console_log = Some(CONSOLE_FD_PATH.into());
    }
    let path = spec_path(&spec);
    write_spec(&spec, &path).map_err(|e| VmmError::Spec(format!("{e:#}")))?;
    let mut cmd = tokio::process::Command::from(child_command(exe, &path));
    let console = match &console_log {
        Some(log) => Some(DaemonLog::pass_as_fd3(&mut cmd, log, LOG_LIMIT)?),
        None => None,
    };
    // The command, and with it our copy of the pipe, goes here.
    let child = supervised(cmd).spawn().map_err(|source| VmmError::Spawn {
        program: format!("{} {}", exe.display(), super::CHILD_SUBCOMMAND),
        source,
    })?;
    Ok(KrunVm {
        child,
        killed: false,
        console,
    })
}

/// A running libkrun child.
#[derive(Debug)]
struct KrunVm {
    child: tokio::process::Child,
    killed: bool,
    /// `[vm] console_log`, filled while this lives.
    console: Option<DaemonLog>,
}

impl RunningVm for KrunVm {
    fn wait(&mut self) -> BoxFuture<'_, std::io::Result<VmExit>> {
        Box::pin(async move {
            let st = self.child.wait().await?;
            // The console's last lines (a guest panic, say) are still in
            // the pipe: copied before the VM is reported gone and dropped.
            if let Some(c) = &mut self.console {
                c.settle().await;
            }
            Ok(if self.killed {
                VmExit::Killed
            } else {
                VmExit::Exited(st)
            })
        })
    }

    fn kill(&mut self) {
        self.killed = true;
        let _ = self.child.start_kill();
    }

    fn pids(&self) -> Vec<u32> {
        self.child.id().into_iter().collect()
    }

    fn console(&mut self) -> Option<Console> {
        // The child inherits the launcher's standard output: the console
        // goes straight to the terminal.
        None
    }
}

#[cfg(test)]
#[path = "backend_tests.rs"]
mod tests;
