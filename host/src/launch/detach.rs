//! `launch --detach`: the same launch as a background process in a
//! session of its own (no terminal), its own output to
//! `<state>/names/<NAME>.launch.log` (the agent's to the bottle's
//! `agent.log`); this process returns once the bottle's agent has started
//! (so `exec` works at once), printing the name, as `docker run -d`
//! prints the id.

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::lifecycle::{self, check_name, generate_name};
use super::LaunchArgs;

/// How long the background launch has to start its agent (the VM boots
/// under TCG on a loaded machine; launch's own boot limit is 120 s).
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// Start the launch in the background; the exit code is 0 once it is up.
pub fn run(args: LaunchArgs) -> Result<i32> {
    if args.tty || args.interactive {
        bail!("--detach with -t or -i: attaching to a detached bottle is not supported yet; drop -t/-i (logs -f follows its output)");
    }
    let state = crate::cli::state_dir(args.state_dir.as_deref())?;
    let name = args.name.clone().unwrap_or_else(generate_name);
    check_name(&name)?;
    let names = lifecycle::names_dir(&state)?;
    let log_path = names.join(format!("{name}.launch.log"));
    let sock = lifecycle::socket_path(&state, &name);
    // The name must be free before its launch log is truncated: a running
    // launch holds the name's lock (or, from before name locks, answers on
    // its socket). The lock is only probed, held while the log is
    // truncated: the background launch takes it for itself.
    let Some(probe) = lifecycle::NameLock::try_take(&state, &name)? else {
        bail!(
            "a bottle named {name:?} is already running (bottle-host ps; bottle-host stop {name})"
        );
    };
    if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
        bail!(
            "a bottle named {name:?} is already running (bottle-host ps; bottle-host stop {name})"
        );
    }
    let log = crate::hardening::create_private(&log_path)?;
    drop(probe);
    let exe = std::env::current_exe().context("this program's path")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("launch")
        .arg(&args.manifest)
        .arg("--state-dir")
        .arg(&state)
        .arg("--name")
        .arg(&name)
        .arg("--capped-log");
    if let Some(u) = &args.upstream_ca {
        cmd.arg("--upstream-ca").arg(u);
    }
    if let Some(g) = &args.guest_log {
        cmd.arg("--guest-log").arg(g);
    }
    if args.console {
        cmd.arg("--console");
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    // SAFETY: the closure runs between fork and exec and only calls
    // setsid(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the background launch")?;
    let t0 = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    loop {
        if let Some(st) = child.try_wait()? {
            let out = std::fs::read_to_string(&log_path).unwrap_or_default();
            eprint!("{out}");
            return Ok(st.code().unwrap_or(super::LAUNCH_FAILED));
        }
        // Up when its socket answers as this very launch (another one of
        // the same name started meanwhile is not it) with the agent started.
        if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
            let ps = rt.block_on(lifecycle::request(&state, &name, &lifecycle::Request::Ps));
            if ps.is_ok_and(|i| i.pid == child.id() && i.agent_state != "booting") {
                println!("{name}");
                return Ok(0);
            }
        }
        if t0.elapsed() > READY_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the background launch did not come up within {READY_TIMEOUT:?}; its log: {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(state: &std::path::Path, name: &str) -> LaunchArgs {
        LaunchArgs {
            manifest: "/nonexistent/bottle.toml".into(),
            state_dir: Some(state.into()),
            upstream_ca: None,
            guest_log: None,
            tty: false,
            interactive: false,
            console: false,
            name: Some(name.into()),
        }
    }

    /// `launch --detach --name X` while X runs: X's launch log is kept,
    /// not truncated before the name is found taken.
    #[test]
    fn detach_with_a_taken_name_keeps_the_running_bottles_log() {
        let t = tempfile::tempdir().unwrap();
        let state = t.path().join("state");
        let names = lifecycle::names_dir(&state).unwrap();
        let log = names.join("busy.launch.log");
        std::fs::write(&log, "what the running bottle logged\n").unwrap();
        // The running bottle: its name's lock and its control socket.
        let _lock = lifecycle::NameLock::try_take(&state, "busy")
            .unwrap()
            .unwrap();
        let _running = std::os::unix::net::UnixListener::bind(names.join("busy.sock")).unwrap();
        let e = run(args(&state, "busy")).unwrap_err();
        assert!(e.to_string().contains("already running"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "what the running bottle logged\n",
            "the running bottle's launch log was truncated"
        );
    }

    /// A launch holding the name's lock, its socket not bound yet: the
    /// name is taken all the same (nothing is started).
    #[test]
    fn detach_sees_a_held_name_lock_as_taken() {
        let t = tempfile::tempdir().unwrap();
        let state = t.path().join("state");
        let names = lifecycle::names_dir(&state).unwrap();
        let log = names.join("early.launch.log");
        std::fs::write(&log, "booting\n").unwrap();
        let _lock = lifecycle::NameLock::try_take(&state, "early")
            .unwrap()
            .unwrap();
        let e = run(args(&state, "early")).unwrap_err();
        assert!(e.to_string().contains("already running"), "{e}");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "booting\n");
    }
}
