//! Virtual machine monitors behind one small trait.
//!
//! [`VmSpec`] says what to boot, backend-independently; a [`Vmm`] turns it
//! into a running VM ([`RunningVm`]) that can be waited for and killed.
//! Backends: [`qemu`] (Linux, KVM or TCG, vsock through
//! `vhost-device-vsock`) and `krun` (libkrun, loaded at run time).
//! [`image`] finds the kernel and initramfs a spec boots; [`virtiofs`]
//! runs the file-system daemon behind each shared directory.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitStatus;

use serde::{Deserialize, Serialize};

pub mod daemon_log;
pub mod image;
pub mod krun;
pub mod qemu;
pub mod virtiofs;

/// Starting a stand-in program a test has just written.
#[cfg(test)]
pub(crate) async fn start_written<T, F, Fut>(mut start: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, VmmError>>,
{
    // A test thread forking while the program was open for writing makes
    // exec fail with ETXTBSY for a moment.
    for _ in 0..50 {
        match start().await {
            Ok(v) => return v,
            Err(VmmError::Spawn { source, .. }) if source.raw_os_error() == Some(libc::ETXTBSY) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the stand-in stayed busy (ETXTBSY)")
}

/// A boxed, sendable future (the traits are used as objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What to boot (backend-independent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Kernel image (bzImage/vmlinuz).
    pub kernel: PathBuf,
    /// Initramfs holding the root filesystem with `bottle-guest` as `/init`.
    pub initramfs: Option<PathBuf>,
    /// Root filesystem directory (libkrun's `krun_set_root`).
    pub rootfs_dir: Option<PathBuf>,
    /// Extra kernel command line (the `bottle.*` keys).
    pub cmdline: String,
    /// Guest memory, MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub vcpus: u8,
    /// Guest-initiated vsock connections to port P arrive on the host at
    /// the Unix socket `<vsock_base>_<P>` (the hybrid-vsock convention).
    pub vsock_base: PathBuf,
    /// Host ports the guest connects to (control, DNS, egress).
    pub guest_ports: Vec<u32>,
    /// libkrun: console to this file instead of the launcher's output.
    /// QEMU ignores it and always hands the console to the caller
    /// (`RunningVm::console`), which keeps it within a cap.
    pub console_log: Option<PathBuf>,
    /// Path of bottle-guest inside the guest.
    pub guest_exec: String,
    /// Its arguments.
    pub guest_args: Vec<String>,
    /// Its environment.
    pub guest_env: Vec<(String, String)>,
    /// Host directories shared over virtio-fs (the image root, workspaces).
    #[serde(default)]
    pub shares: Vec<virtiofs::FsShare>,
    /// Raw disk images attached read-only (virtio-blk), `/dev/vda` first:
    /// the experimental block-device image root (docs/images.md).
    #[serde(default)]
    pub disks: Vec<PathBuf>,
}

/// Why a VM could not be started or watched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VmmError {
    /// A program the backend needs is not installed.
    #[error("{program} not found: {hint}")]
    Missing {
        /// The program or library.
        program: String,
        /// How to get it.
        hint: String,
    },
    /// The backend cannot run here (the message says what is missing).
    #[error("{0}")]
    Unavailable(String),
    /// A process could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The error.
        source: std::io::Error,
    },
    /// A helper process stopped during start-up.
    #[error("{program} exited during start-up ({status}); its output:\n{output}")]
    EarlyExit {
        /// The program.
        program: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed.
        output: String,
    },
    /// Waiting for something took too long.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The spec cannot be booted by this backend.
    #[error("invalid VM spec: {0}")]
    Spec(String),
    /// Other I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How a VM ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmExit {
    /// The VMM exited by itself (guest power-off) with this status.
    Exited(ExitStatus),
    /// We killed it.
    Killed,
}

/// A VM that is running.
pub trait RunningVm: Send {
    /// Wait until the VM stops (the guest powered off or the VMM died).
    fn wait(&mut self) -> BoxFuture<'_, std::io::Result<VmExit>>;
    /// Kill the VM and its helper processes now (idempotent).
    fn kill(&mut self);
    /// Process ids of the VMM and its helpers (for diagnostics and tests).
    fn pids(&self) -> Vec<u32>;
    /// The guest console, when it is not going to a log file (taken once).
    fn console(&mut self) -> Option<Console>;
}

/// A guest console stream.
pub type Console = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// A backend.
pub trait Vmm: Send + Sync {
    /// Short name (`qemu`, `libkrun`).
    fn name(&self) -> &'static str;
    /// What it runs on (e.g. `tcg`, `kvm`), for the banner.
    fn accelerator(&self) -> String;
    /// Start a VM.
    fn start(&self, spec: &VmSpec) -> BoxFuture<'_, Result<Box<dyn RunningVm>, VmmError>>;
}

/// The libkrun backend, when libkrun is installed; the error says what is
/// missing.
pub fn krun_backend() -> Result<Box<dyn Vmm>, VmmError> {
    Ok(Box::new(krun::Krun::detect()?))
}

/// `cmd` in its own process group (a terminal's Ctrl-C reaches only
/// `bottle-host`), killed when dropped, and sent SIGKILL if `bottle-host`
/// itself dies (`PR_SET_PDEATHSIG`): no VMM process outlives its launcher.
pub fn supervised(mut cmd: tokio::process::Command) -> tokio::process::Command {
    // No secret from our environment reaches a VMM or daemon.
    crate::hardening::scrub_env(&mut cmd, &[krun::LIBKRUN_ENV]);
    cmd.process_group(0)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only prctl(2), which is async-signal-safe; it touches no memory of
    // the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}
