//! `bottle-host exec [-i] [-t] NAME -- CMD…`: run a command in a running
//! bottle, as its agent runs (user, environment, CA, guards), with its own
//! pipes or terminal, and return its exit code. As `docker exec`: without
//! `-i` standard input is not passed on (unless it is a pipe or file);
//! `-it` puts our terminal in raw mode, and Ctrl-] then q hangs the
//! command up.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::launch::lifecycle::{self, Reply, Request};
use crate::launch::session::{self, Wiring};
use crate::launch::terminal;

/// Exit code when the session ended without the command's code (the
/// bottle stopped under it).
pub const NO_EXIT_CODE: i32 = 125;

/// After the escape sequence, how long the guest has to report the
/// hung-up process's exit: the input side may take 2 s to finish a
/// pending write and 2 s more to flush before the hang-up goes out
/// (`ESCAPE_FLUSH`), the guest kills what SIGHUP left 2 s later, and
/// 2 s are margin.
const HANGUP_WAIT: std::time::Duration = std::time::Duration::from_secs(8);

/// Our exit code when the guest did not report one after the escape
/// sequence: a hang-up, 128 + SIGHUP, as the guest's own report would be.
const HUNG_UP: i32 = 129;

/// Run the command; the return value is its exit code.
pub fn run(
    state: Option<&Path>,
    name: &str,
    command: &[String],
    tty: bool,
    interactive: bool,
) -> Result<i32> {
    let stdin_tty = std::io::stdin().is_terminal();
    if tty && !stdin_tty {
        bail!("-t needs a terminal on standard input; drop -t to pipe input to the command");
    }
    if command.is_empty() {
        bail!("no command: bottle-host exec NAME -- CMD [ARGS…]");
    }
    lifecycle::check_name(name)?;
    let state = super::state_dir(state)?;
    let wiring = Wiring {
        tty,
        stdin: interactive || !stdin_tty,
        raw: tty && interactive,
        hangup_on_escape: true,
    };
    let (rows, cols) = terminal::size().unwrap_or((0, 0));
    let req = Request::Exec {
        command: command.to_vec(),
        tty,
        stdin: wiring.stdin,
        rows,
        cols,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let code = rt.block_on(async {
        let mut s = lifecycle::dial(&state, name).await?;
        let mut line = serde_json::to_string(&req)?;
        line.push('\n');
        tokio::io::AsyncWriteExt::write_all(&mut s, line.as_bytes()).await?;
        let answer = tokio::time::timeout(
            session::EXEC_ATTACH_TIMEOUT + lifecycle::REQUEST_TIMEOUT,
            lifecycle::read_line(&mut s, 1 << 20),
        )
        .await
        .with_context(|| format!("bottle {name:?} did not answer"))??;
        let reply: Reply = serde_json::from_str(&answer)
            .with_context(|| format!("bottle {name:?}: no answer (it may have ended)"))?;
        if let Some(e) = reply.error {
            bail!("bottle {name:?}: {e}");
        }
        let _raw = if wiring.raw {
            Some(terminal::RawMode::enter().context("raw mode")?)
        } else {
            None
        };
        let stop = Arc::new(tokio::sync::Notify::new());
        let pump = session::spawn(s, wiring, stop.clone(), None);
        tokio::pin!(pump);
        let code = tokio::select! {
            c = &mut pump => c.ok().flatten(),
            // The escape sequence: the process is hung up; its exit code
            // comes back if the guest answers in time, else we leave as
            // a hang-up (128 + SIGHUP).
            () = stop.notified() => match tokio::time::timeout(HANGUP_WAIT, &mut pump).await {
                Ok(c) => c.ok().flatten(),
                Err(_) => {
                    eprintln!("bottle-host: exec: the guest did not answer the hang-up; leaving");
                    Some(HUNG_UP)
                }
            },
        };
        anyhow::Ok(code)
    })?;
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(match code {
        Some(c) => c,
        None => {
            eprintln!(
                "bottle-host: exec: the session ended without an exit code (the bottle stopped?)"
            );
            NO_EXIT_CODE
        }
    })
}
