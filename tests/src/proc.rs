//! Child processes that print a "ready" line: spawn, wait for the line
//! (with a deadline), keep echoing their output to the test's stderr, and
//! kill them on drop.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// A running child process, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Proc {
    /// The child.
    pub child: Child,
    /// A name for log lines.
    pub name: String,
    /// The line that said it was ready.
    pub ready_line: String,
}

impl Proc {
    /// Spawn `cmd` and wait up to `limit` for a line of its stdout or
    /// stderr containing `ready`. Panics with the output seen so far if the
    /// line does not come.
    pub async fn spawn(name: &str, mut cmd: Command, ready: &str, limit: Duration) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("NO_COLOR", "1")
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {cmd:?}: {e}"));
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        for stream in [
            Box::new(out) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
            Box::new(err),
        ] {
            let (tx, name) = (tx.clone(), name.to_string());
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("[{name}] {line}");
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let mut seen = Vec::new();
        let found = tokio::time::timeout(limit, async {
            while let Some(line) = rx.recv().await {
                let hit = line.contains(ready);
                seen.push(line);
                if hit {
                    return true;
                }
            }
            false
        })
        .await;
        let ready_line = seen.last().cloned().unwrap_or_default();
        if found != Ok(true) {
            let status = child.try_wait().ok().flatten();
            panic!(
                "{name}: no {ready:?} line within {limit:?} (exit status {status:?}); output:\n{}",
                seen.join("\n")
            );
        }
        Proc {
            child,
            name: name.to_string(),
            ready_line,
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("child still running")
    }

    /// SIGKILL the child and reap it.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}
