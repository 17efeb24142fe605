//! A guest-like network namespace: a fresh network and mount namespace
//! (`unshare --net --mount --fork`) with only `lo` up, a temporary file
//! bind-mounted over `/etc/resolv.conf` (`nameserver 127.0.0.1`), and the
//! real `bottle-guest dns-stub` on 127.0.0.1:53. Clients run inside it with
//! `nsenter`. Nothing in it can reach any network but loopback; the stub
//! reaches the host over a Unix socket, which is a file, not a network.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::proc::Proc;

/// The namespace and the stub running in it (killed on drop).
#[derive(Debug)]
pub struct Netns {
    stub: Proc,
    pid: u32,
    _dir: tempfile::TempDir,
}

/// The result of a command run in the namespace.
#[derive(Debug)]
pub struct Ran {
    /// Exit status and output; `None` if it was killed at the deadline.
    pub output: Option<Output>,
    /// Wall time.
    pub elapsed: Duration,
}

impl Ran {
    /// Standard output as text ("" if killed).
    pub fn stdout(&self) -> String {
        self.output
            .as_ref()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// True if it ran to completion with exit status 0.
    pub fn ok(&self) -> bool {
        self.output.as_ref().is_some_and(|o| o.status.success())
    }
}

impl Netns {
    /// Start the stub in a fresh namespace, relaying to the host DNS
    /// channel at `host` (e.g. `unix:///tmp/x/host.sock_6002`), and wait for
    /// its `listening` line.
    pub async fn start(guest: &Path, host: &str) -> Netns {
        let dir = tempfile::tempdir().expect("tempdir");
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(
            &resolv,
            "nameserver 127.0.0.1\noptions edns0 timeout:2 attempts:2\n",
        )
        .expect("write resolv.conf");
        let pidfile = dir.path().join("pid");
        let script = format!(
            "set -e; ip link set lo up; mount --bind '{resolv}' /etc/resolv.conf; \
             echo $$ > '{pidfile}'; \
             exec '{guest}' dns-stub --host '{host}' --listen 127.0.0.1:53",
            resolv = resolv.display(),
            pidfile = pidfile.display(),
            guest = guest.display(),
        );
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--net",
            "--mount",
            "--fork",
            "--kill-child",
            "--",
            "sh",
            "-c",
        ])
        .arg(script);
        let stub = Proc::spawn(
            "guest-stub",
            cmd,
            "dns-stub: listening on",
            Duration::from_secs(10),
        )
        .await;
        let pid = read_pid(&pidfile);
        Netns {
            stub,
            pid,
            _dir: dir,
        }
    }

    /// Run `argv` inside the namespace, killing it after `limit`.
    pub async fn run(&self, argv: &[&str], limit: Duration) -> Ran {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.pid))
            .args(["--net", "--mount", "--"])
            .args(argv)
            .kill_on_drop(true);
        let start = Instant::now();
        let output = tokio::time::timeout(limit, cmd.output())
            .await
            .ok()
            .map(|r| r.unwrap_or_else(|e| panic!("nsenter {argv:?}: {e}")));
        Ran {
            output,
            elapsed: start.elapsed(),
        }
    }

    /// The stub process's pid (in the host's pid namespace).
    pub fn stub_pid(&self) -> u32 {
        self.pid
    }

    /// Stop the stub and leave the namespace.
    pub async fn stop(self) {
        self.stub.kill().await;
    }
}

fn read_pid(path: &PathBuf) -> u32 {
    for _ in 0..100 {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the namespace never wrote its pid to {}", path.display());
}
