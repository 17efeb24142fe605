//! The error logs of QEMU and the daemons beside it (`RUN/vsock.*.log`),
//! capped: each child writes to a pipe, and a task copies what comes into
//! the log file until [`DAEMON_LOG_LIMIT`], then says so once and reads on
//! without keeping anything, so the child never blocks on a full pipe.
//! What a guest can make QEMU, virtiofsd or the vsock daemon complain
//! about (a packet for an unknown CID, say) must not fill the owner's
//! disk.
//!
//! libkrun writes `[vm] console_log` itself: it is given the path
//! [`CONSOLE_FD_PATH`], the write end of such a pipe passed to its child
//! as descriptor 3 ([`DaemonLog::pass_as_fd3`]), so the console a guest
//! writes is capped there too, at [`LOG_LIMIT`].

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

use crate::log_cap::CappedLog;
#[cfg(doc)]
use crate::log_cap::LOG_LIMIT;

/// Most bytes kept in each daemon's log.
pub const DAEMON_LOG_LIMIT: u64 = 1 << 20;

/// What a child given [`DaemonLog::pass_as_fd3`] opens to write its log.
pub const CONSOLE_FD_PATH: &str = "/dev/fd/3";

/// How long a report waits for the last of a child's output to be copied
/// after the child is gone (its pipe then ends at once, unless a process
/// it left behind still holds it).
const SETTLE: Duration = Duration::from_secs(2);

/// A child's capped log: the file and the task filling it.
#[derive(Debug)]
pub struct DaemonLog {
    path: PathBuf,
    copier: Option<JoinHandle<()>>,
}

/// Where a child writes: its standard output and standard error, the
/// same pipe.
pub struct Outputs {
    /// For [`tokio::process::Command::stdout`].
    pub stdout: Stdio,
    /// For [`tokio::process::Command::stderr`].
    pub stderr: Stdio,
}

impl DaemonLog {
    /// Create `path` (private, emptied) and the pipe a child writes to.
    pub fn create(path: &Path) -> io::Result<(DaemonLog, Outputs)> {
        DaemonLog::with_limit(path, DAEMON_LOG_LIMIT)
    }

    fn with_limit(path: &Path, limit: u64) -> io::Result<(DaemonLog, Outputs)> {
        // The child gets the write end as its 1 and 2 only.
        let (log, wr) = DaemonLog::pipe(path, limit)?;
        let wr2 = wr.try_clone()?;
        Ok((
            log,
            Outputs {
                stdout: wr.into(),
                stderr: wr2.into(),
            },
        ))
    }

    /// Create `path` (private, emptied) and give `cmd`'s child the write
    /// end of its pipe as descriptor 3, to open as [`CONSOLE_FD_PATH`].
    /// The parent's copy of it closes when `cmd` is dropped.
    pub fn pass_as_fd3(
        cmd: &mut tokio::process::Command,
        path: &Path,
        limit: u64,
    ) -> io::Result<DaemonLog> {
        let (log, wr) = DaemonLog::pipe(path, limit)?;
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only dup2(2) and fcntl(2), both async-signal-safe, on a
        // descriptor number; it neither allocates nor touches the
        // parent's memory (`wr` is only kept open by it, in the parent).
        unsafe {
            cmd.pre_exec(move || {
                let fd = wr.as_raw_fd();
                // dup2 clears close-on-exec on the copy; a descriptor
                // that already is 3 needs it cleared by hand.
                let rc = if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, 3)
                };
                if rc < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(log)
    }

    /// The log file, its pipe's copier, and the pipe's write end (close
    /// on exec, as every descriptor of ours).
    fn pipe(path: &Path, limit: u64) -> io::Result<(DaemonLog, std::io::PipeWriter)> {
        let file = crate::hardening::create_private(path)?;
        let (rd, wr) = std::io::pipe()?;
        let rx = pipe::Receiver::from_owned_fd(rd.into())?;
        let what = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let copier = tokio::spawn(copy(rx, CappedLog::new(Some(file), what, limit)));
        let log = DaemonLog {
            path: path.to_path_buf(),
            copier: Some(copier),
        };
        Ok((log, wr))
    }

    /// Wait until what the child wrote is all copied, or `SETTLE` (2 s) has
    /// passed; call after the child is gone. Cancelled, it waits again
    /// next time.
    pub async fn settle(&mut self) {
        let Some(c) = &mut self.copier else { return };
        if tokio::time::timeout(SETTLE, &mut *c).await.is_err() {
            // A process the child left behind holds the pipe.
            c.abort();
        }
        self.copier = None;
    }

    /// What the child wrote (up to the limit), once [`Self::settle`]d;
    /// bytes that are not UTF-8 (a character the cap cut, say) shown as
    /// U+FFFD.
    pub async fn read(&mut self) -> String {
        self.settle().await;
        let bytes = tokio::fs::read(&self.path).await.unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Drop for DaemonLog {
    fn drop(&mut self) {
        if let Some(c) = &self.copier {
            c.abort();
        }
    }
}

async fn copy(mut rx: pipe::Receiver, mut log: CappedLog) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => log.put(&buf[..n]).await,
        }
    }
    log.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spew(bytes: u64) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg(format!(
            "echo first; head -c {bytes} /dev/zero | tr '\\0' x >&2; echo last; exit 3"
        ));
        cmd
    }

    async fn run(limit: u64, bytes: u64) -> (String, Option<i32>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vsock.fs0.log");
        let (mut log, out) = DaemonLog::with_limit(&path, limit).unwrap();
        let mut child = spew(bytes)
            .stdout(out.stdout)
            .stderr(out.stderr)
            .spawn()
            .unwrap();
        // Well past the pipe's 64 KiB: a child stuck on a full pipe
        // would never exit.
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("the child finished")
            .unwrap();
        let text = tokio::time::timeout(Duration::from_secs(10), log.read())
            .await
            .expect("the log settled");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        (text, status.code())
    }

    #[tokio::test]
    async fn a_child_that_writes_without_end_fills_its_log_only_to_the_limit() {
        let (text, code) = run(4096, 3 << 20).await;
        assert_eq!(code, Some(3));
        assert!(text.starts_with("first\nxxx"), "{:?}", &text[..20]);
        let notice = "\n[bot-bottle: vsock.fs0.log is full (4096 bytes); the rest is not kept]\n";
        assert!(text.ends_with(notice), "{:?}", &text[text.len() - 100..]);
        assert_eq!(text.len(), 4096 + notice.len());
        assert!(!text.contains("last"));
    }

    /// libkrun's console: the child opens `/dev/fd/3` by name and writes
    /// without end; the log stops at its limit and ends with the child.
    #[tokio::test]
    async fn a_console_passed_as_fd3_is_capped_and_ends_with_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg(format!(
            "echo boot > {CONSOLE_FD_PATH}; \
             head -c 3000000 /dev/zero | tr '\\0' c >> {CONSOLE_FD_PATH}; exit 4"
        ));
        let mut log = DaemonLog::pass_as_fd3(&mut cmd, &path, 1 << 20).unwrap();
        let mut child = cmd.spawn().unwrap();
        drop(cmd);
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("the child finished")
            .unwrap();
        assert_eq!(status.code(), Some(4));
        let start = std::time::Instant::now();
        let text = log.read().await;
        // The pipe ended with the child: no wait for the settling time.
        assert!(start.elapsed() < Duration::from_secs(1));
        let notice = "\n[bot-bottle: console.log is full (1 MiB); the rest is not kept]\n";
        assert!(text.starts_with("boot\nccc"), "{:?}", &text[..20]);
        assert!(text.ends_with(notice));
        assert_eq!(text.len(), (1 << 20) + notice.len());
    }

    /// The cap can cut a character in two; the report keeps the rest.
    #[tokio::test]
    async fn a_log_that_is_not_utf8_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vsock.qemu.log");
        let (mut log, out) = DaemonLog::with_limit(&path, 2).unwrap();
        let mut cmd = tokio::process::Command::new("printf");
        cmd.arg("a\\303\\251b")
            .stdout(out.stdout)
            .stderr(out.stderr);
        let st = cmd.spawn().unwrap().wait().await.unwrap();
        drop(cmd);
        assert!(st.success());
        let text = log.read().await;
        assert!(
            text.starts_with("a\u{fffd}\n[bot-bottle: vsock.qemu.log is full"),
            "{text:?}"
        );
    }

    #[tokio::test]
    async fn a_log_under_the_limit_is_kept_whole() {
        let (text, code) = run(DAEMON_LOG_LIMIT, 1000).await;
        assert_eq!(code, Some(3));
        assert_eq!(text, format!("first\n{}last\n", "x".repeat(1000)));
    }
}
