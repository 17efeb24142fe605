//! Side-effecting system calls of the init, behind one small trait.
//!
//! Everything that changes the machine (mounts, hostname, network, modules,
//! spawning and signalling processes, reaping, power off) goes through
//! [`Sys`], so the boot and supervision sequences are unit-tested with the
//! recording [`fake::FakeSys`] and need no root. [`real::RealSys`] is the
//! Linux implementation.

pub mod fake;
pub mod real;

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A system call failed.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {io}")]
pub struct SysError {
    /// What was attempted, e.g. `mount /proc`.
    pub op: String,
    /// The OS error (shown in the message, so not a `source`).
    pub io: std::io::Error,
}

impl SysError {
    /// Wrap an OS error with what was attempted.
    pub fn new(op: impl Into<String>, io: std::io::Error) -> Self {
        SysError { op: op.into(), io }
    }

    /// The raw errno, if any.
    pub fn errno(&self) -> Option<i32> {
        self.io.raw_os_error()
    }
}

/// One filesystem to mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSpec {
    /// Source (`proc`, `devtmpfs`, …).
    pub source: &'static str,
    /// Mount point.
    pub target: &'static str,
    /// Filesystem type.
    pub fstype: &'static str,
    /// `MS_*` flags.
    pub flags: libc::c_ulong,
    /// Filesystem options, e.g. `mode=1777`.
    pub data: &'static str,
}

/// Everything needed to start the agent, resolved before the fork.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpawnPlan {
    /// Absolute path of the program.
    pub program: PathBuf,
    /// argv, `argv[0]` included.
    pub argv: Vec<OsString>,
    /// The complete environment.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory.
    pub workdir: PathBuf,
    /// Credentials to switch to; `None` keeps the init's own (root).
    pub creds: Option<Credentials>,
    /// Where its standard streams go.
    pub stdio: AgentStdio,
}

/// The agent's standard streams.
#[derive(Clone, Debug, Default)]
pub enum AgentStdio {
    /// The init's own (the guest console).
    #[default]
    Console,
    /// Descriptors of the session channel (kept open by the init for
    /// restarts); with `tty` they are one pseudo-terminal, which becomes
    /// the agent's controlling terminal.
    Fds {
        /// Standard input.
        stdin: Arc<OwnedFd>,
        /// Standard output.
        stdout: Arc<OwnedFd>,
        /// Standard error.
        stderr: Arc<OwnedFd>,
        /// The three are one terminal.
        tty: bool,
    },
}

impl PartialEq for AgentStdio {
    fn eq(&self, other: &Self) -> bool {
        let fds = |s: &Self| match s {
            AgentStdio::Console => None,
            AgentStdio::Fds {
                stdin,
                stdout,
                stderr,
                tty,
            } => Some((
                stdin.as_raw_fd(),
                stdout.as_raw_fd(),
                stderr.as_raw_fd(),
                *tty,
            )),
        };
        fds(self) == fds(other)
    }
}

impl Eq for AgentStdio {}

/// A user to run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

/// Side-effecting system calls. Implementations must be cheap to call.
pub trait Sys: Send + Sync {
    /// Mount one filesystem.
    fn mount(&self, m: &MountSpec) -> Result<(), SysError>;
    /// Create a directory (and parents); existing is fine.
    fn mkdir_all(&self, path: &Path) -> Result<(), SysError>;
    /// Mount `source` of type `fstype` on `target` (owned strings; for
    /// what is only known at run time: the image root, workspaces, binds).
    fn mount_at(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: libc::c_ulong,
        data: &str,
    ) -> Result<(), SysError>;
    /// Create an empty file when nothing is at `path` (a bind target).
    fn touch(&self, path: &Path) -> Result<(), SysError>;
    /// Make the mount at `new_root` the root: move it over `/` and chroot
    /// into it (`pivot_root` does not work from an initramfs).
    fn switch_root(&self, new_root: &Path) -> Result<(), SysError>;
    /// If standard error is closed (the kernel found no console), open
    /// `/dev/console` as fds 0, 1 and 2. Returns whether it did.
    fn attach_console(&self) -> Result<bool, SysError>;
    /// Set the hostname.
    fn sethostname(&self, name: &str) -> Result<(), SysError>;
    /// Bring the loopback interface up.
    fn loopback_up(&self) -> Result<(), SysError>;
    /// Load a kernel module from a file (`finit_module`).
    fn load_module(&self, path: &Path) -> Result<(), SysError>;
    /// Become a child subreaper (`PR_SET_CHILD_SUBREAPER`).
    fn set_subreaper(&self) -> Result<(), SysError>;
    /// Start a process in its own session and process group; returns its pid.
    fn spawn(&self, plan: &SpawnPlan) -> Result<i32, SysError>;
    /// Send `signal` to `pid` (negative: a process group).
    fn kill(&self, pid: i32, signal: i32) -> Result<(), SysError>;
    /// Reap one exited child without blocking: `(pid, raw wait status)`.
    fn reap(&self) -> Option<(i32, i32)>;
    /// Flush filesystems.
    fn sync(&self);
    /// Power the machine off. Returns only on failure.
    fn power_off(&self) -> SysError;
}
