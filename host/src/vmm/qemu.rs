//! The QEMU backend: `qemu-system-x86_64` (q35, KVM when usable, TCG
//! otherwise) with **no network device**, the kernel and initramfs booted
//! directly, and guest vsock through `vhost-user-vsock-pci` backed by the
//! `vhost-device-vsock` daemon. The daemon exposes guest-initiated
//! connections to host port P as the Unix socket `<vsock_base>_P`, which
//! is where `bottle-host` listens. vhost-user needs the guest memory
//! shared, hence the memfd backend with `share=on`.
//!
//! Both processes are [`super::supervised`]: their own process group, and
//! SIGKILL if `bottle-host` dies, so none outlive it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::daemon_log::DaemonLog;
use super::{BoxFuture, RunningVm, VmExit, VmSpec, Vmm, VmmError};
use crate::manifest::Accel;

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// The vhost-user vsock daemon.
pub const VSOCK_DAEMON: &str = "vhost-device-vsock";
/// The guest's vsock CID (each VM has its own daemon, so it can repeat).
pub const GUEST_CID: u32 = 3;
/// How long the daemon has to create its socket.
const DAEMON_READY: Duration = Duration::from_secs(10);

/// Resolved acceleration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accelerator {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl Accelerator {
    /// `kvm` or `tcg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
        }
    }
}

/// The QEMU backend, with its programs found.
#[derive(Clone, Debug)]
pub struct Qemu {
    /// `qemu-system-x86_64`.
    pub qemu: PathBuf,
    /// `vhost-device-vsock`.
    pub daemon: PathBuf,
    /// `virtiofsd`, when installed (needed only for shared directories).
    pub fs_daemon: Option<PathBuf>,
    /// KVM or TCG.
    pub accel: Accelerator,
    /// Why KVM is not used (for the banner), when it is not.
    pub kvm_note: Option<String>,
    /// qboot firmware when installed: boots straight into the kernel,
    /// faster than SeaBIOS and without its console output.
    pub bios: Option<PathBuf>,
    /// TCG's translated-code cache, MiB ([`TCG_TB_MIB`] unless
    /// [`TCG_TB_ENV`] says otherwise).
    pub tcg_tb_mib: u32,
}

/// TCG's translated-code cache, MiB (QEMU's default is 1024, and a
/// bottle's cache grows to it). 32 holds a guest's working set: 64 runs
/// Python no faster, 16 runs it twice as slowly (docs/performance.md,
/// "Density").
pub const TCG_TB_MIB: u32 = 32;

/// Sets the TCG cache size for the bottles this `bottle-host` launches:
/// smaller packs more bottles on a machine without KVM, at the cost of
/// re-translation (docs/vmm-qemu.md).
pub const TCG_TB_ENV: &str = "BOTTLE_TCG_TB_MIB";

/// The smallest and largest [`TCG_TB_ENV`] accepted, MiB.
pub const TCG_TB_RANGE: std::ops::RangeInclusive<u32> = 8..=1024;

/// The TCG cache size from [`TCG_TB_ENV`]'s value, if set (pure; tested).
pub fn tcg_tb_mib(value: Option<&str>) -> Result<u32, VmmError> {
    let Some(v) = value else {
        return Ok(TCG_TB_MIB);
    };
    v.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| TCG_TB_RANGE.contains(n))
        .ok_or_else(|| {
            VmmError::Spec(format!(
                "{TCG_TB_ENV}={v:?}: give the TCG cache size in MiB, {} to {} (unset: {TCG_TB_MIB})",
                TCG_TB_RANGE.start(),
                TCG_TB_RANGE.end()
            ))
        })
}

/// Where Debian's QEMU keeps qboot.
pub const QBOOT: &str = "/usr/share/qemu/qboot.rom";

/// Look `name` up in `PATH`, then in `~/.cargo/bin` (where `cargo install`
/// puts the daemon).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Is KVM usable for an ordinary guest kernel? `Err` says why not.
/// `sys_module` is `/sys/module` (a parameter for tests).
pub fn kvm_usable(dev_kvm: &Path, sys_module: &Path) -> Result<(), String> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev_kvm)
    {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            // The one thing an ordinary user may need (TCG needs nothing).
            return Err(format!(
                "{}: permission denied; add your user to the `kvm` group \
                 (`sudo usermod -aG kvm $USER`, then log in again)",
                dev_kvm.display()
            ));
        }
        return Err(format!("{}: {e}", dev_kvm.display()));
    }
    let vendor = ["kvm_intel", "kvm_amd"]
        .iter()
        .any(|m| sys_module.join(m).exists());
    if !vendor {
        if sys_module.join("kvm_pvm").exists() {
            return Err("KVM here is PVM (nested paravirtualisation); an ordinary guest kernel cannot use it".into());
        }
        return Err("no kvm_intel or kvm_amd module is loaded".into());
    }
    Ok(())
}

impl Qemu {
    /// Find the programs and pick the accelerator.
    pub fn detect(accel: Accel) -> Result<Qemu, VmmError> {
        let qemu = find_program(QEMU).ok_or_else(|| VmmError::Missing {
            program: QEMU.into(),
            hint:
                "install it with `apt-get install qemu-system-x86` (or run `bash tests/setup.sh`)"
                    .into(),
        })?;
        let daemon = find_program(VSOCK_DAEMON).ok_or_else(|| VmmError::Missing {
            program: VSOCK_DAEMON.into(),
            hint: "install it with `bash images/vsock-daemon.sh` (or run `bash tests/setup.sh`)"
                .into(),
        })?;
        let kvm = kvm_usable(Path::new("/dev/kvm"), Path::new("/sys/module"));
        let (accel, kvm_note) = match (accel, kvm) {
            (Accel::Tcg, _) => (Accelerator::Tcg, Some("TCG requested".into())),
            (Accel::Kvm, Ok(())) | (Accel::Auto, Ok(())) => (Accelerator::Kvm, None),
            (Accel::Kvm, Err(why)) => {
                return Err(VmmError::Spec(format!("[vm] accel = \"kvm\" but {why}")))
            }
            (Accel::Auto, Err(why)) => (Accelerator::Tcg, Some(why)),
        };
        let tb = std::env::var(TCG_TB_ENV).ok();
        let tcg_tb_mib = tcg_tb_mib(tb.as_deref())?;
        Ok(Qemu {
            qemu,
            daemon,
            fs_daemon: find_program(super::virtiofs::FS_DAEMON),
            accel,
            kvm_note,
            bios: Some(PathBuf::from(QBOOT)).filter(|p| p.is_file()),
            tcg_tb_mib,
        })
    }
}

/// The vhost-user socket between QEMU and the daemon.
pub fn vhost_socket(spec: &VmSpec) -> PathBuf {
    let mut s = spec.vsock_base.clone().into_os_string();
    s.push(".vhost");
    PathBuf::from(s)
}

/// The kernel command line: a quiet serial console, power off on panic
/// (with `-no-reboot`), and the `bottle.*` keys.
pub fn kernel_cmdline(spec: &VmSpec) -> String {
    let base = "console=ttyS0 quiet loglevel=3 panic=-1 reboot=t";
    if spec.cmdline.is_empty() {
        base.to_string()
    } else {
        format!("{base} {}", spec.cmdline)
    }
}

/// The q35 machine without the chipset devices a bottle never uses: the
/// SATA controller (disks are virtio-blk), SMBus, the PS/2 controller (no
/// keyboard), VMware's I/O port and SMM (qboot and SeaBIOS boot a kernel
/// without it). Each is emulated code the guest could otherwise reach, and
/// together they cost ~3 MiB of QEMU's heap per bottle.
pub const MACHINE: &str = "q35,memory-backend=mem,sata=off,smbus=off,i8042=off,vmport=off,smm=off";

/// QEMU's arguments for `spec`; `tcg_tb_mib` sizes TCG's translated-code
/// cache (pure; tested).
pub fn qemu_args(
    spec: &VmSpec,
    accel: Accelerator,
    bios: Option<&Path>,
    tcg_tb_mib: u32,
) -> Result<Vec<OsString>, VmmError> {
    let initrd = spec.initramfs.as_ref().ok_or_else(|| {
        VmmError::Spec("the QEMU backend boots an initramfs; none was given".into())
    })?;
    if spec.memory_mib < 64 {
        return Err(VmmError::Spec(format!(
            "memory {} MiB is too small (at least 64)",
            spec.memory_mib
        )));
    }
    let mem = spec.memory_mib;
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(s.into());
    for s in ["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"] {
        push(s);
    }
    if let Some(b) = bios {
        push("-bios");
        a.push(b.as_os_str().to_owned());
    }
    let mut push = |s: &str| a.push(s.into());
    push("-machine");
    push(MACHINE);
    push("-accel");
    if accel == Accelerator::Tcg {
        // TCG's translated-code cache defaults to 1 GiB and grows to it:
        // most of a TCG bottle's host memory (docs/performance.md).
        push(&format!("tcg,tb-size={tcg_tb_mib}"));
    } else {
        push(accel.as_str());
    }
    if accel == Accelerator::Kvm {
        push("-cpu");
        push("host");
    }
    push("-m");
    push(&format!("{mem}M"));
    push("-smp");
    push(&spec.vcpus.max(1).to_string());
    push("-object");
    push(&format!("memory-backend-memfd,id=mem,size={mem}M,share=on"));
    // No network device of any kind: vsock is the only way out.
    push("-nic");
    push("none");
    push("-chardev");
    let mut chardev = OsString::from("socket,id=vsock0,path=");
    chardev.push(vhost_socket(spec));
    a.push(chardev);
    a.push("-device".into());
    a.push("vhost-user-vsock-pci,chardev=vsock0".into());
    for (i, share) in spec.shares.iter().enumerate() {
        let ok = !share.tag.is_empty()
            && share.tag.len() <= 36
            && share
                .tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(VmmError::Spec(format!("bad virtio-fs tag {:?}", share.tag)));
        }
        a.push("-chardev".into());
        let mut chardev = OsString::from(format!("socket,id=fs{i},path="));
        chardev.push(super::virtiofs::socket(&spec.vsock_base, i));
        a.push(chardev);
        a.push("-device".into());
        a.push(format!("vhost-user-fs-pci,chardev=fs{i},tag={}", share.tag).into());
    }
    for (i, disk) in spec.disks.iter().enumerate() {
        // QEMU's option syntax: a comma in a value is written twice.
        let path = disk
            .to_str()
            .ok_or_else(|| VmmError::Spec(format!("disk path is not UTF-8: {}", disk.display())))?;
        a.push("-drive".into());
        a.push(
            format!(
                "file={},if=none,id=disk{i},format=raw,readonly=on",
                path.replace(',', ",,")
            )
            .into(),
        );
        a.push("-device".into());
        a.push(format!("virtio-blk-pci,drive=disk{i}").into());
    }
    // Always to the caller (`console()`), never straight to a file: the
    // root agent can write the console without end, and `launch` keeps
    // it within its cap wherever `console_log` puts it (launch/console.rs).
    a.push("-serial".into());
    a.push("stdio".into());
    a.push("-kernel".into());
    a.push(spec.kernel.clone().into_os_string());
    a.push("-initrd".into());
    a.push(initrd.clone().into_os_string());
    a.push("-append".into());
    a.push(kernel_cmdline(spec).into());
    Ok(a)
}

/// The daemon's arguments (pure; tested).
pub fn daemon_args(spec: &VmSpec) -> Vec<OsString> {
    vec![
        "--guest-cid".into(),
        GUEST_CID.to_string().into(),
        "--socket".into(),
        vhost_socket(spec).into_os_string(),
        "--uds-path".into(),
        spec.vsock_base.clone().into_os_string(),
    ]
}

/// A supervised command (see [`super::supervised`]).
fn command(program: &Path) -> Command {
    super::supervised(Command::new(program))
}

impl Vmm for Qemu {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn accelerator(&self) -> String {
        match (&self.accel, &self.kvm_note) {
            (Accelerator::Tcg, Some(why)) => format!("tcg (no KVM: {why})"),
            (a, _) => a.as_str().to_string(),
        }
    }

    fn start(&self, spec: &VmSpec) -> BoxFuture<'_, Result<Box<dyn RunningVm>, VmmError>> {
        let spec = spec.clone();
        Box::pin(async move {
            let args = qemu_args(&spec, self.accel, self.bios.as_deref(), self.tcg_tb_mib)?;
            let dlog = with_suffix(&spec.vsock_base, ".daemon.log");
            let (daemon, daemon_log) = spawn_daemon(
                command(&self.daemon).args(daemon_args(&spec)),
                VSOCK_DAEMON,
                &vhost_socket(&spec),
                &dlog,
            )
            .await?;
            let mut fs = Vec::new();
            let mut logs = vec![daemon_log];
            if !spec.shares.is_empty() {
                let program = self.fs_daemon.as_ref().ok_or_else(|| VmmError::Missing {
                    program: super::virtiofs::FS_DAEMON.into(),
                    hint:
                        "install it with `bash images/virtiofsd.sh` (or run `bash tests/setup.sh`)"
                            .into(),
                })?;
                let as_root = nix::unistd::geteuid().is_root();
                for (i, share) in spec.shares.iter().enumerate() {
                    let sock = super::virtiofs::socket(&spec.vsock_base, i);
                    let log = with_suffix(&spec.vsock_base, &format!(".fs{i}.log"));
                    let args = super::virtiofs::daemon_args(share, &sock, as_root);
                    let (child, log) = spawn_daemon(
                        command(program).args(args),
                        super::virtiofs::FS_DAEMON,
                        &sock,
                        &log,
                    )
                    .await?;
                    fs.push(child);
                    logs.push(log);
                }
            }
            let qlog = with_suffix(&spec.vsock_base, ".qemu.log");
            let (qemu_log, out) = DaemonLog::create(&qlog)?;
            let mut qemu_cmd = command(&self.qemu);
            qemu_cmd.args(&args).stderr(out.stderr);
            qemu_cmd.stdout(Stdio::piped());
            let qemu = qemu_cmd.spawn().map_err(|source| VmmError::Spawn {
                program: QEMU.into(),
                source,
            })?;
            // As in `spawn_daemon`: the log ends when QEMU does.
            qemu_cmd.stderr(Stdio::null());
            tracing::debug!(qemu = ?self.qemu, ?args, "qemu started");
            Ok(Box::new(QemuVm {
                qemu,
                daemon,
                fs,
                qemu_log,
                _logs: logs,
                killed: false,
            }) as Box<dyn RunningVm>)
        })
    }
}

/// Start a daemon that serves a vhost-user socket, its output in `log`
/// (capped), and wait until the socket exists (the daemon is killed on
/// drop if that fails).
async fn spawn_daemon(
    cmd: &mut Command,
    program: &str,
    sock: &Path,
    log: &Path,
) -> Result<(Child, DaemonLog), VmmError> {
    let _ = std::fs::remove_file(sock);
    let (mut log, out) = DaemonLog::create(log)?;
    let mut child = cmd
        .stdout(out.stdout)
        .stderr(out.stderr)
        .spawn()
        .map_err(|source| VmmError::Spawn {
            program: program.into(),
            source,
        })?;
    // The command holds its copy of the pipe until it is dropped: let go
    // of it now, so the log ends when the daemon does.
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let deadline = tokio::time::Instant::now() + DAEMON_READY;
    while !sock.exists() {
        if let Some(status) = child.try_wait()? {
            return Err(VmmError::EarlyExit {
                program: program.into(),
                status,
                output: log.read().await,
            });
        }
        if tokio::time::Instant::now() > deadline {
            return Err(VmmError::Timeout(format!(
                "{program} did not create {} within {DAEMON_READY:?}",
                sock.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok((child, log))
}

fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// A running QEMU and its vsock daemon.
#[derive(Debug)]
pub struct QemuVm {
    qemu: Child,
    daemon: Child,
    fs: Vec<Child>,
    /// QEMU's standard error (its errors).
    qemu_log: DaemonLog,
    /// The daemons' output; the copying ends when this is dropped.
    _logs: Vec<DaemonLog>,
    killed: bool,
}

impl RunningVm for QemuVm {
    fn wait(&mut self) -> BoxFuture<'_, std::io::Result<VmExit>> {
        Box::pin(async move {
            let status = self.qemu.wait().await?;
            let _ = self.daemon.start_kill();
            let _ = self.daemon.wait().await;
            for d in &mut self.fs {
                let _ = d.start_kill();
                let _ = d.wait().await;
            }
            if self.killed {
                Ok(VmExit::Killed)
            } else {
                if !status.success() {
                    let log = self.qemu_log.read().await;
                    if !log.trim().is_empty() {
                        tracing::error!("qemu: {}", log.trim());
                    }
                }
                Ok(VmExit::Exited(status))
            }
        })
    }

    fn kill(&mut self) {
        self.killed = true;
        let _ = self.qemu.start_kill();
        let _ = self.daemon.start_kill();
        for d in &mut self.fs {
            let _ = d.start_kill();
        }
    }

    fn pids(&self) -> Vec<u32> {
        [self.qemu.id(), self.daemon.id()]
            .into_iter()
            .chain(self.fs.iter().map(Child::id))
            .flatten()
            .collect()
    }

    fn console(&mut self) -> Option<super::Console> {
        self.qemu
            .stdout
            .take()
            .map(|s| Box::new(s) as super::Console)
    }
}

#[cfg(test)]
mod tests;
