//! Host-side protections (`docs/security.md`, "Host side"): the bottle's
//! state is its owner's alone, `bottle-host` cannot be read through
//! `ptrace`, `/proc` or a core dump while it holds secrets, and the
//! processes it starts (QEMU, the vsock daemon, the libkrun child) inherit
//! no secret from its environment.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The only variables a child process inherits; everything else in
/// `bottle-host`'s environment (where `[secrets]` values usually live) is
/// dropped.
pub const CHILD_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "NO_COLOR",
];

/// A state path that must not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A file-system call failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Someone else owns it.
    #[error(
        "{}: owned by uid {owner}, not by this user (uid {me}); refusing to keep bottle \
         state there (choose another --state-dir)",
        path.display()
    )]
    NotOwner {
        /// The path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        me: u32,
    },
    /// Others may write to it.
    #[error(
        "{}: writable by {who} (mode {mode:04o}); refusing to keep bottle state there \
         (`chmod 700 {}` if it is yours)",
        path.display(),
        path.display()
    )]
    Loose {
        /// The path.
        path: PathBuf,
        /// `group` or `others`.
        who: &'static str,
        /// Its permission bits.
        mode: u32,
    },
    /// Not a directory.
    #[error("{}: not a directory", path.display())]
    NotDir {
        /// The path.
        path: PathBuf,
    },
}

/// This process's effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

/// Make sure `path` is a directory only this user can use: created `0700`
/// in one step when missing (its missing parents too), and, when it
/// exists, owned by this user and writable by no one else. Read or search
/// bits for others on an existing directory are taken away (older
/// versions made it `0755`).
pub fn private_dir(path: &Path) -> Result<(), StateError> {
    let err = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    if !path.exists() {
        let r = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path);
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e)),
        }
    }
    let meta = std::fs::metadata(path).map_err(err)?;
    if !meta.is_dir() {
        return Err(StateError::NotDir {
            path: path.to_path_buf(),
        });
    }
    check_owner_and_mode(path, &meta)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))
            .map_err(err)?;
        tracing::info!(
            "{}: made private (mode {:04o} → {:04o})",
            path.display(),
            mode,
            mode & 0o700
        );
    }
    Ok(())
}

fn check_owner_and_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), StateError> {
    let me = euid();
    if meta.uid() != me {
        return Err(StateError::NotOwner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    let who = if mode & 0o002 != 0 {
        Some("others")
    } else if mode & 0o020 != 0 {
        Some("its group")
    } else {
        None
    };
    match who {
        Some(who) => Err(StateError::Loose {
            path: path.to_path_buf(),
            who,
            mode,
        }),
        None => Ok(()),
    }
}

/// Open `path` for appending, created `0600` in one step; an existing file
/// that others could read is made `0600` through the open handle.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    tighten(&f)?;
    Ok(f)
}

/// Create (or truncate) `path` as a `0600` file.
pub fn create_private(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    tighten(&f)?;
    Ok(f)
}

fn tighten(f: &File) -> io::Result<()> {
    let mode = f.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

/// From here on this process holds `secrets`: no core dump, and no other
/// process of the same user may `ptrace` it or read its `/proc/PID/mem`,
/// `environ` or file descriptors (`PR_SET_DUMPABLE` 0). Children get the
/// default back when they `exec`. A panic message is printed with every
/// secret value replaced by `<redacted>` ([`redact_panic`]).
pub fn hold_secrets(secrets: &[crate::manifest::Secret]) {
    let values: Vec<String> = secrets.iter().map(|s| s.value.clone()).collect();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if values.is_empty() {
            return default(info);
        }
        eprintln!("{}", redact_panic(info, &values));
    }));
    mark_non_dumpable();
}

/// The panic report (`thread panicked at FILE:LINE: MESSAGE`) with every
/// value in `secrets` replaced.
pub fn redact_panic(info: &std::panic::PanicHookInfo<'_>, secrets: &[String]) -> String {
    let payload = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Box<dyn Any>".into());
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("<unnamed>");
    let at = info
        .location()
        .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    let mut text = format!("thread '{name}' panicked{at}:\n{payload}");
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(s.as_str(), "<redacted>");
    }
    text
}

fn mark_non_dumpable() {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes integer arguments only and
    // changes no memory of this process.
    let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) };
    if r != 0 {
        tracing::warn!(
            "cannot mark bottle-host non-dumpable: {}",
            io::Error::last_os_error()
        );
    }
}

/// Whether this process is marked non-dumpable ([`hold_secrets`]).
pub fn is_dumpable() -> bool {
    // SAFETY: prctl(PR_GET_DUMPABLE) takes no pointers and only reads a flag.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) == 1 }
}

/// Give `cmd` only the [`CHILD_ENV`] variables of this process, plus the
/// `extra` ones the caller names.
pub fn scrub_env(cmd: &mut tokio::process::Command, extra: &[&str]) {
    cmd.env_clear();
    for name in CHILD_ENV.iter().chain(extra) {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
}

#[cfg(test)]
#[path = "hardening_tests.rs"]
mod tests;
