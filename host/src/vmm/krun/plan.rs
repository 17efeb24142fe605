//! [`plan`]: a [`VmSpec`] turned into the exact libkrun calls, checked and
//! with every string already a `CString`. Pure; [`super::execute`] only
//! replays it.
//!
//! What the plan relies on (from libkrun's `include/libkrun.h` and
//! `src/libkrun/src/lib.rs`):
//!
//! - **TSI stays off.** Unless told otherwise libkrun adds a vsock device by
//!   itself and, when no virtio-net device is configured, turns on TSI
//!   (Transparent Socket Impersonation): the guest's AF_INET sockets are
//!   hijacked and proxied by the VMM onto the host's network. That would be
//!   a way out of the bottle that skips the DNS allowlist and the proxy. The
//!   header says `krun_add_vsock` adds the vsock device with an explicit TSI
//!   feature mask (0 for no hijacking) and must follow
//!   `krun_disable_implicit_vsock`. The plan always makes both calls, with a
//!   mask of 0, and never adds a network device or a port map.
//! - **Guest-initiated ports.** `krun_add_vsock_port(ctx, port, path)` pairs
//!   a vsock port the guest connects to with a Unix socket on the host;
//!   it is `krun_add_vsock_port2(..., listen = false)`, so libkrun dials the
//!   path and the host must be listening there (with `listen = true` libkrun
//!   would bind it itself). The plan maps each guest port to
//!   `<vsock_base>_<port>`, the vhost-device-vsock naming the host uses.
//! - **The environment is explicit.** `krun_set_exec` with a NULL `envp`
//!   copies the host's whole environment into the guest; the plan always
//!   passes an array, empty if the spec has no variables.
//! - **argv, env and exec travel on the kernel command line.** libkrun's
//!   `krun_set_exec` wraps each argv and env entry in double quotes and
//!   joins them with spaces into the guest's kernel command line. A `"`
//!   inside an entry would end the quoting early, and older libkrun
//!   releases did not quote at all, so entries with quotes or whitespace are
//!   refused; together they must fit in [`CMDLINE_BUDGET`].

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{KrunError, VmSpec};

/// `KRUN_LOG_LEVEL_WARN`.
pub const LOG_LEVEL_WARN: u32 = 2;
/// TSI feature mask for `krun_add_vsock`: no hijacking at all.
pub const TSI_NONE: u32 = 0;
/// Smallest memory size accepted (MiB).
pub const MIN_MEMORY_MIB: u32 = 64;
/// Bytes of kernel command line left for our words. The x86 kernel's
/// `COMMAND_LINE_SIZE` is 2048; libkrun's own prefix
/// (`console=…`, `init=/init.krun`, `KRUN_INIT=…`) takes the rest.
pub const CMDLINE_BUDGET: usize = 1792;
/// `sizeof(sun_path)`: 108 on Linux, 104 on macOS; the smaller is used.
pub const SUN_PATH_MAX: usize = 104;

/// Which kernel libkrun boots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelMode {
    /// The kernel bundled in libkrunfw; needs `rootfs_dir`. The spec's
    /// `kernel` and `initramfs` are ignored and the `cmdline` words reach
    /// the guest's kernel command line through libkrun's environment list.
    #[default]
    Bundled,
    /// `krun_set_kernel` with the spec's kernel, initramfs and cmdline.
    External(KernelFormat),
}

/// `KRUN_KERNEL_FORMAT_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum KernelFormat {
    /// Raw image.
    Raw = 0,
    /// ELF (`vmlinux`).
    Elf = 1,
    /// gzip-compressed PE.
    PeGz = 2,
    /// bzip2-compressed arm64 `Image`.
    ImageBz2 = 3,
    /// gzip-compressed arm64 `Image`.
    ImageGz = 4,
    /// zstd-compressed arm64 `Image`.
    ImageZstd = 5,
}

/// One libkrun call. The context id is not stored: [`super::execute`] takes
/// it from `krun_create_ctx` and passes it to every later call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KrunCall {
    /// `krun_create_ctx()`.
    CreateCtx,
    /// `krun_set_log_level(level)` (process-wide).
    SetLogLevel {
        /// 0 off … 5 trace.
        level: u32,
    },
    /// `krun_set_vm_config(ctx, vcpus, ram_mib)`.
    SetVmConfig {
        /// vCPUs.
        vcpus: u8,
        /// RAM in MiB.
        ram_mib: u32,
    },
    /// `krun_set_kernel(ctx, path, format, initramfs, cmdline)`.
    SetKernel {
        /// Kernel image on the host.
        path: CString,
        /// `KRUN_KERNEL_FORMAT_*`.
        format: u32,
        /// Initramfs, or NULL.
        initramfs: Option<CString>,
        /// Kernel command line.
        cmdline: CString,
    },
    /// `krun_set_root(ctx, path)`.
    SetRoot {
        /// Host directory.
        path: CString,
    },
    /// `krun_disable_implicit_vsock(ctx)`.
    DisableImplicitVsock,
    /// `krun_add_vsock(ctx, tsi_features)`.
    AddVsock {
        /// TSI feature mask; the plan always uses [`TSI_NONE`].
        tsi_features: u32,
    },
    /// `krun_add_vsock_port(ctx, port, path)`: guest connects, host listens.
    AddVsockPort {
        /// Vsock port.
        port: u32,
        /// Unix socket the host listens on.
        path: CString,
    },
    /// `krun_set_console_output(ctx, path)`.
    SetConsoleOutput {
        /// File the console is written to.
        path: CString,
    },
    /// `krun_set_exec(ctx, exec, argv, envp)`; argv excludes the program name.
    SetExec {
        /// Program inside the guest.
        exec: CString,
        /// Arguments.
        argv: Vec<CString>,
        /// `KEY=VALUE` entries (and, in bundled mode, the cmdline words).
        envp: Vec<CString>,
    },
    /// `krun_start_enter(ctx)`: never returns on success.
    StartEnter,
}

impl KrunCall {
    /// The C function this call makes.
    pub fn name(&self) -> &'static str {
        match self {
            KrunCall::CreateCtx => "krun_create_ctx",
            KrunCall::SetLogLevel { .. } => "krun_set_log_level",
            KrunCall::SetVmConfig { .. } => "krun_set_vm_config",
            KrunCall::SetKernel { .. } => "krun_set_kernel",
            KrunCall::SetRoot { .. } => "krun_set_root",
            KrunCall::DisableImplicitVsock => "krun_disable_implicit_vsock",
            KrunCall::AddVsock { .. } => "krun_add_vsock",
            KrunCall::AddVsockPort { .. } => "krun_add_vsock_port",
            KrunCall::SetConsoleOutput { .. } => "krun_set_console_output",
            KrunCall::SetExec { .. } => "krun_set_exec",
            KrunCall::StartEnter => "krun_start_enter",
        }
    }
}

/// The plan for the default [`KernelMode::Bundled`].
pub fn plan(spec: &VmSpec) -> Result<Vec<KrunCall>, KrunError> {
    plan_with(spec, KernelMode::Bundled)
}

/// The calls that boot `spec` under libkrun, in order: context first,
/// `krun_start_enter` last.
pub fn plan_with(spec: &VmSpec, mode: KernelMode) -> Result<Vec<KrunCall>, KrunError> {
    if spec.vcpus == 0 {
        return Err(KrunError::Invalid("vcpus must be at least 1".into()));
    }
    if !spec.shares.is_empty() || !spec.disks.is_empty() {
        // krun_add_virtiofs exists; it is not wired (libkrun cannot run on
        // the machines this is developed on).
        return Err(KrunError::Invalid(
            "image roots and [[mounts]] are not supported with libkrun yet; use backend = \"qemu\""
                .into(),
        ));
    }
    if spec.memory_mib < MIN_MEMORY_MIB {
        return Err(KrunError::Invalid(format!(
            "memory_mib is {}; libkrun needs at least {MIN_MEMORY_MIB}",
            spec.memory_mib
        )));
    }
    let mut calls = vec![
        KrunCall::CreateCtx,
        KrunCall::SetLogLevel {
            level: LOG_LEVEL_WARN,
        },
        KrunCall::SetVmConfig {
            vcpus: spec.vcpus,
            ram_mib: spec.memory_mib,
        },
    ];

    let cmdline_words = words(&spec.cmdline);
    let mut env_words = Vec::new();
    match mode {
        KernelMode::Bundled => {
            if spec.rootfs_dir.is_none() {
                return Err(KrunError::Invalid(
                    "libkrun's bundled kernel boots from a shared root directory: rootfs_dir is required".into(),
                ));
            }
            for w in &cmdline_words {
                // libkrun puts env entries on the kernel command line; the
                // kernel hands `key=value` words to init as environment
                // unless the key has a dot (then it is a module parameter,
                // left in /proc/cmdline only). Only dotted words are safe.
                let key = w.split_once('=').map_or(w.as_str(), |(k, _)| k);
                if !key.contains('.') {
                    return Err(KrunError::Invalid(format!(
                        "cmdline word {w:?}: with libkrun's bundled kernel only dotted keys (bottle.*) can be passed"
                    )));
                }
                env_words.push(cmdline_cstring(w, "cmdline")?);
            }
        }
        KernelMode::External(format) => calls.push(KrunCall::SetKernel {
            path: path_cstring(&spec.kernel, "kernel")?,
            format: format as u32,
            initramfs: spec
                .initramfs
                .as_deref()
                .map(|p| path_cstring(p, "initramfs"))
                .transpose()?,
            cmdline: cstring(&spec.cmdline, "cmdline")?,
        }),
    }
    if let Some(root) = &spec.rootfs_dir {
        calls.push(KrunCall::SetRoot {
            path: path_cstring(root, "rootfs_dir")?,
        });
    }

    calls.push(KrunCall::DisableImplicitVsock);
    calls.push(KrunCall::AddVsock {
        tsi_features: TSI_NONE,
    });
    let mut seen = Vec::new();
    for &port in &spec.guest_ports {
        if port == 0 || port == u32::MAX {
            return Err(KrunError::Invalid(format!("vsock port {port} is reserved")));
        }
        if seen.contains(&port) {
            return Err(KrunError::Invalid(format!(
                "vsock port {port} listed twice"
            )));
        }
        seen.push(port);
        calls.push(KrunCall::AddVsockPort {
            port,
            path: port_path(&spec.vsock_base, port)?,
        });
    }

    if let Some(log) = &spec.console_log {
        calls.push(KrunCall::SetConsoleOutput {
            path: path_cstring(log, "console_log")?,
        });
    }

    calls.push(exec_call(spec, env_words)?);
    calls.push(KrunCall::StartEnter);
    Ok(calls)
}

/// The `krun_set_exec` call, with the command-line budget checked.
fn exec_call(spec: &VmSpec, mut extra_env: Vec<CString>) -> Result<KrunCall, KrunError> {
    if !spec.guest_exec.starts_with('/') {
        return Err(KrunError::Invalid(format!(
            "guest_exec {:?} must be an absolute path",
            spec.guest_exec
        )));
    }
    let exec = cmdline_cstring(&spec.guest_exec, "guest_exec")?;
    let argv = spec
        .guest_args
        .iter()
        .enumerate()
        .map(|(i, a)| cmdline_cstring(a, &format!("guest_args[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut envp = Vec::with_capacity(spec.guest_env.len() + extra_env.len());
    for (k, v) in &spec.guest_env {
        if k.is_empty() || k.contains('=') {
            return Err(KrunError::Invalid(format!(
                "guest_env key {k:?} must be non-empty and have no '='"
            )));
        }
        envp.push(cmdline_cstring(
            &format!("{k}={v}"),
            &format!("guest_env {k}"),
        )?);
    }
    envp.append(&mut extra_env);
    let used: usize = std::iter::once(&exec)
        .chain(&argv)
        .chain(&envp)
        // Each entry costs its bytes, two quotes and a separating space.
        .map(|c| c.as_bytes().len() + 3)
        .sum();
    if used > CMDLINE_BUDGET {
        return Err(KrunError::Invalid(format!(
            "guest_exec, guest_args, guest_env and cmdline take {used} bytes of the kernel command line; \
             libkrun leaves about {CMDLINE_BUDGET}"
        )));
    }
    Ok(KrunCall::SetExec { exec, argv, envp })
}

/// `<vsock_base>_<port>` as a C string, within `sun_path`.
fn port_path(base: &Path, port: u32) -> Result<CString, KrunError> {
    let mut bytes = base.as_os_str().as_bytes().to_vec();
    bytes.extend_from_slice(format!("_{port}").as_bytes());
    if bytes.len() >= SUN_PATH_MAX {
        return Err(KrunError::PathTooLong {
            path: PathBuf::from(std::ffi::OsStr::from_bytes(&bytes)),
            len: bytes.len(),
            max: SUN_PATH_MAX,
        });
    }
    CString::new(bytes).map_err(|_| KrunError::Nul {
        what: "vsock_base".into(),
    })
}

/// Whitespace-separated words, as the kernel splits them (quotes aside:
/// a quote is refused later).
fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

fn cstring(s: &str, what: &str) -> Result<CString, KrunError> {
    CString::new(s).map_err(|_| KrunError::Nul { what: what.into() })
}

/// A string that libkrun will put on the kernel command line.
fn cmdline_cstring(s: &str, what: &str) -> Result<CString, KrunError> {
    let c = cstring(s, what)?;
    if s.chars().any(|c| c.is_whitespace() || c == '"') {
        return Err(KrunError::Unquotable {
            what: what.into(),
            value: s.into(),
        });
    }
    Ok(c)
}

fn path_cstring(p: &Path, what: &str) -> Result<CString, KrunError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| KrunError::Nul { what: what.into() })
}
