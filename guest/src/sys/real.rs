//! The Linux implementation of [`Sys`].

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use super::{MountSpec, SpawnPlan, Sys, SysError};

/// Real system calls.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealSys;

fn cstr(op: &str, s: &str) -> Result<CString, SysError> {
    CString::new(s).map_err(|e| SysError::new(op, io::Error::new(io::ErrorKind::InvalidInput, e)))
}

fn check(op: impl FnOnce() -> String, rc: libc::c_int) -> Result<(), SysError> {
    if rc < 0 {
        Err(SysError::new(op(), io::Error::last_os_error()))
    } else {
        Ok(())
    }
}

impl Sys for RealSys {
    fn mount(&self, m: &MountSpec) -> Result<(), SysError> {
        let op = format!("mount {} on {}", m.fstype, m.target);
        let source = cstr(&op, m.source)?;
        let target = cstr(&op, m.target)?;
        let fstype = cstr(&op, m.fstype)?;
        let data = cstr(&op, m.data)?;
        // SAFETY: every pointer is a valid NUL-terminated string that
        // outlives the call.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                m.flags,
                data.as_ptr().cast(),
            )
        };
        check(|| op, rc)
    }

    fn mount_at(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: libc::c_ulong,
        data: &str,
    ) -> Result<(), SysError> {
        let op = format!("mount {fstype} {source} on {}", target.display());
        let fstype = (!fstype.is_empty()).then_some(fstype);
        let data = (!data.is_empty()).then_some(data);
        nix::mount::mount(
            Some(source),
            target,
            fstype,
            nix::mount::MsFlags::from_bits_retain(flags),
            data,
        )
        .map_err(|e| SysError::new(op, io::Error::from(e)))
    }

    fn touch(&self, path: &Path) -> Result<(), SysError> {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(SysError::new(format!("create {}", path.display()), e)),
        }
    }

    fn switch_root(&self, new_root: &Path) -> Result<(), SysError> {
        let op = |what: &str| format!("switch root to {}: {what}", new_root.display());
        let err = |what: &str, e: nix::Error| SysError::new(op(what), io::Error::from(e));
        nix::unistd::chdir(new_root).map_err(|e| err("chdir", e))?;
        nix::mount::mount(
            Some("."),
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(|e| err("move mount", e))?;
        nix::unistd::chroot(".").map_err(|e| err("chroot", e))?;
        nix::unistd::chdir("/").map_err(|e| err("chdir /", e))
    }

    fn mkdir_all(&self, path: &Path) -> Result<(), SysError> {
        std::fs::create_dir_all(path)
            .map_err(|e| SysError::new(format!("mkdir {}", path.display()), e))
    }

    fn attach_console(&self) -> Result<bool, SysError> {
        // SAFETY: F_GETFD only queries the descriptor table.
        if unsafe { libc::fcntl(2, libc::F_GETFD) } >= 0 {
            return Ok(false);
        }
        let console = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open("/dev/console")
            .map_err(|e| SysError::new("open /dev/console", e))?;
        let fd = console.as_raw_fd();
        for target in 0..3 {
            if fd != target {
                // SAFETY: dup2 onto the standard descriptors, which are
                // closed (or ours to replace); `console` stays valid.
                check(|| format!("dup2 console to {target}"), unsafe {
                    libc::dup2(fd, target)
                })?;
            }
        }
        if fd <= 2 {
            // The console landed on a standard descriptor: keep it open.
            std::mem::forget(console);
        }
        Ok(true)
    }

    fn sethostname(&self, name: &str) -> Result<(), SysError> {
        nix::unistd::sethostname(name)
            .map_err(|e| SysError::new(format!("sethostname {name}"), e.into()))
    }

    fn loopback_up(&self) -> Result<(), SysError> {
        let op = || "bring lo up".to_string();
        // SAFETY: plain socket(2) call; the fd is closed below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        check(op, fd)?;
        // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
        let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        // SAFETY: SIOCGIFFLAGS reads the name and writes ifru_flags of a
        // properly sized ifreq we own.
        check(op, unsafe {
            libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req)
        })?;
        // SAFETY: the kernel just filled ifru_flags, the union member read here.
        unsafe {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        }
        // SAFETY: SIOCSIFFLAGS reads a properly sized ifreq we own.
        check(op, unsafe {
            libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req)
        })
    }

    fn load_module(&self, path: &Path) -> Result<(), SysError> {
        let op = || format!("finit_module {}", path.display());
        let file = std::fs::File::open(path).map_err(|e| SysError::new(op(), e))?;
        // SAFETY: finit_module takes an open fd, a NUL-terminated (empty)
        // parameter string and flags; the file outlives the call.
        let rc =
            unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), c"".as_ptr(), 0) };
        check(op, rc as libc::c_int)
    }

    fn set_subreaper(&self) -> Result<(), SysError> {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        check(|| "PR_SET_CHILD_SUBREAPER".into(), rc)
    }

    fn spawn(&self, plan: &SpawnPlan) -> Result<i32, SysError> {
        let mut cmd = Command::new(&plan.program);
        if let Some(arg0) = plan.argv.first() {
            cmd.arg0(arg0);
        }
        cmd.args(plan.argv.iter().skip(1))
            .env_clear()
            .envs(plan.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&plan.workdir);
        if let super::AgentStdio::Fds {
            stdin,
            stdout,
            stderr,
            ..
        } = &plan.stdio
        {
            let dup = |fd: &OwnedFd| {
                fd.try_clone()
                    .map_err(|e| SysError::new("dup the session's descriptors", e))
            };
            cmd.stdin(dup(stdin)?)
                .stdout(dup(stdout)?)
                .stderr(dup(stderr)?);
        }
        let creds = plan.creds.clone();
        let groups: Vec<libc::gid_t> = creds.as_ref().map(|c| c.groups.clone()).unwrap_or_default();
        // SAFETY: the closure runs between fork and exec and only makes
        // async-signal-safe system calls on data prepared before the fork;
        // it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::isatty(0) == 1 {
                    // Best effort: a console that cannot become our
                    // controlling terminal still works for plain I/O.
                    libc::ioctl(0, libc::TIOCSCTTY as _, 0);
                }
                if let Some(c) = &creds {
                    if libc::setgroups(groups.len(), groups.as_ptr()) < 0
                        || libc::setgid(c.gid) < 0
                        || libc::setuid(c.uid) < 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                }
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| SysError::new(format!("spawn {}", plan.program.display()), e))?;
        // The child is reaped by the init's waitpid(-1) loop, never through
        // the `Child` handle, which is dropped here without waiting.
        Ok(child.id() as i32)
    }

    fn kill(&self, pid: i32, signal: i32) -> Result<(), SysError> {
        // SAFETY: kill(2) with integer arguments only.
        let rc = unsafe { libc::kill(pid, signal) };
        check(|| format!("kill({pid}, {signal})"), rc)
    }

    fn reap(&self) -> Option<(i32, i32)> {
        let mut status = 0;
        // SAFETY: waitpid writes only to the status integer we own.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        (pid > 0).then_some((pid, status))
    }

    fn sync(&self) {
        // SAFETY: sync(2) takes no arguments and cannot fail.
        unsafe { libc::sync() };
    }

    fn power_off(&self) -> SysError {
        match nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF) {
            Err(e) => SysError::new("reboot(RB_POWER_OFF)", e.into()),
        }
    }
}
