//! [`VmSpec`]: what to boot, independent of the VMM that boots it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What to boot (backend-independent). Serialised as JSON to hand it to the
/// `__krun-child` process (see [`super::spawn`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Kernel image. libkrun ignores it unless the plan is made with
    /// [`super::KernelMode::External`]: by default libkrun boots the kernel
    /// bundled in libkrunfw.
    pub kernel: PathBuf,
    /// Initramfs; only with [`super::KernelMode::External`].
    pub initramfs: Option<PathBuf>,
    /// Host directory shared as the guest's root filesystem (`krun_set_root`).
    pub rootfs_dir: Option<PathBuf>,
    /// Extra kernel command line words (`bottle.*` keys).
    pub cmdline: String,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Number of vCPUs.
    pub vcpus: u8,
    /// The host listens on `<vsock_base>_<port>` Unix sockets for the ports
    /// the guest connects to.
    pub vsock_base: PathBuf,
    /// Vsock ports the guest connects to on the host (6001, 6002, 6003).
    pub guest_ports: Vec<u32>,
    /// Where the guest console goes (default: the child's stdout).
    pub console_log: Option<PathBuf>,
    /// Path of `bottle-guest` inside the guest, e.g. `/sbin/bottle-guest`.
    pub guest_exec: String,
    /// Arguments after the program name.
    pub guest_args: Vec<String>,
    /// The guest program's whole environment (nothing is inherited).
    pub guest_env: Vec<(String, String)>,
}
