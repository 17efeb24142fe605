//! The first things PID 1 does: mount what is missing, set the hostname,
//! bring `lo` up, load the modules named on the command line. Nothing here
//! is fatal; every failure is logged and the boot goes on.

use std::collections::HashSet;
use std::path::Path;

use super::cmdline::{BootParams, DEFAULT_MODDIR};
use crate::sys::{MountSpec, Sys};

const NOSUID: libc::c_ulong = libc::MS_NOSUID;
const NODEV: libc::c_ulong = libc::MS_NODEV;
const NOEXEC: libc::c_ulong = libc::MS_NOEXEC;

/// Hostname used until the config names one.
pub const DEFAULT_HOSTNAME: &str = "bottle";

/// What the init mounts, in order (a mount point must exist before what is
/// mounted below it).
pub const MOUNTS: [MountSpec; 7] = [
    MountSpec {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID | NODEV | NOEXEC,
        data: "",
    },
    MountSpec {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID | NODEV | NOEXEC,
        data: "",
    },
    MountSpec {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: NOSUID,
        data: "mode=0755",
    },
    MountSpec {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: NOSUID | NOEXEC,
        data: "mode=620,ptmxmode=666",
    },
    MountSpec {
        source: "shm",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: NOSUID | NODEV,
        data: "mode=1777",
    },
    MountSpec {
        source: "run",
        target: "/run",
        fstype: "tmpfs",
        flags: NOSUID | NODEV,
        data: "mode=0755",
    },
    MountSpec {
        source: "tmp",
        target: "/tmp",
        fstype: "tmpfs",
        flags: NOSUID | NODEV,
        data: "mode=1777",
    },
];

/// Mount points listed in a `/proc/self/mountinfo` text (field 5, with the
/// kernel's octal escapes such as `\040` undone).
pub fn mount_points(mountinfo: &str) -> HashSet<String> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match (b[i], oct) {
            (b'\\', Some(v)) => {
                out.push(v);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What [`boot`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootReport {
    /// Mount points mounted now.
    pub mounted: Vec<String>,
    /// Mount points already there (listed, or EBUSY).
    pub skipped: Vec<String>,
    /// Mounts that failed otherwise.
    pub failed: Vec<String>,
    /// Modules loaded.
    pub modules: Vec<String>,
    /// Why the image root (`bottle.root`) could not be entered; the init
    /// reports it to the host and stops.
    pub root_error: Option<String>,
}

/// Mount every missing filesystem. `mountinfo` reads the current mount
/// table (it is read again after each mount, since `/proc` comes first).
pub fn mount_missing(
    sys: &dyn Sys,
    mountinfo: &dyn Fn() -> Option<String>,
    report: &mut BootReport,
) {
    for m in &MOUNTS {
        let present = mountinfo()
            .map(|t| mount_points(&t).contains(m.target))
            .unwrap_or(false);
        if present {
            report.skipped.push(m.target.to_string());
            continue;
        }
        let _ = sys.mkdir_all(Path::new(m.target));
        match sys.mount(m) {
            Ok(()) => {
                tracing::debug!(target = m.target, "mounted");
                report.mounted.push(m.target.to_string());
            }
            Err(e) if e.errno() == Some(libc::EBUSY) => report.skipped.push(m.target.to_string()),
            Err(e) => {
                tracing::warn!(error = %e, "mount failed; continuing");
                report.failed.push(m.target.to_string());
            }
        }
    }
}

/// The PID 1 boot sequence.
pub fn boot(
    sys: &dyn Sys,
    params: &BootParams,
    mountinfo: &dyn Fn() -> Option<String>,
) -> BootReport {
    let mut report = BootReport::default();
    mount_missing(sys, mountinfo, &mut report);
    match sys.attach_console() {
        Ok(true) => tracing::info!("standard streams attached to /dev/console"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "no console"),
    }
    let hostname = params
        .hostname
        .as_deref()
        .filter(|h| !h.is_empty())
        .unwrap_or(DEFAULT_HOSTNAME);
    if let Err(e) = sys.sethostname(hostname) {
        tracing::warn!(error = %e, "cannot set the hostname");
    }
    if let Err(e) = sys.loopback_up() {
        tracing::warn!(error = %e, "cannot bring lo up");
    }
    let dir = Path::new(params.moddir.as_deref().unwrap_or(DEFAULT_MODDIR));
    for name in &params.modules {
        let path = dir.join(format!("{name}.ko"));
        match sys.load_module(&path) {
            Ok(()) => report.modules.push(name.clone()),
            // Already loaded (or built in) is fine.
            Err(e) if e.errno() == Some(libc::EEXIST) => report.modules.push(name.clone()),
            Err(e) => tracing::warn!(error = %e, module = %name, "module not loaded"),
        }
    }
    if let Some(tag) = &params.root {
        match super::root::enter_image_root(sys, tag) {
            Ok(()) => {
                // The image's own /proc, /dev, /run, … (the initramfs's
                // are behind the new root now).
                let _ = sys.mkdir_all(Path::new("/proc"));
                mount_missing(sys, &|| None, &mut report);
                if let Err(e) = super::root::expose_self(sys) {
                    tracing::warn!(error = %e, "bottle-guest is not in the image's PATH");
                }
                tracing::info!(tag, "moved into the image root");
            }
            Err(e) => report.root_error = Some(format!("image root {tag:?}: {e}")),
        }
    }
    tracing::info!(
        mounted = ?report.mounted, skipped = ?report.skipped, failed = ?report.failed,
        modules = ?report.modules, hostname, "boot done"
    );
    report
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::sys::fake::{Call, FakeSys};

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs devtmpfs rw
24 22 0:22 / /run rw,nosuid shared:5 - tmpfs tmpfs rw
25 22 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw
";

    fn mounts_of(calls: &[Call]) -> Vec<String> {
        calls
            .iter()
            .filter_map(|c| match c {
                Call::Mount(m) => m.split(' ').nth(1).map(str::to_string),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn mountinfo_points_are_unescaped() {
        let points = mount_points(MOUNTINFO);
        for p in ["/", "/dev", "/run", "/mnt/with space"] {
            assert!(points.contains(p), "{p} missing from {points:?}");
        }
        assert_eq!(points.len(), 4);
    }

    #[test]
    fn fresh_boot_mounts_everything_in_order() {
        let sys = FakeSys::new();
        let params = BootParams {
            hostname: Some("box".into()),
            modules: vec!["vsock".into()],
            ..Default::default()
        };
        let report = boot(&sys, &params, &|| None);
        let calls = sys.calls();
        assert_eq!(
            mounts_of(&calls),
            ["/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/run", "/tmp"]
        );
        assert_eq!(calls[0], Call::Mkdir("/proc".into()), "mkdir before mount");
        let tail = &calls[calls.len() - 4..];
        assert_eq!(
            tail,
            [
                Call::Console,
                Call::Hostname("box".into()),
                Call::LoopbackUp,
                Call::LoadModule("/lib/modules/bottle/vsock.ko".into()),
            ]
        );
        assert_eq!(report.modules, ["vsock"]);
        assert!(report.skipped.is_empty());
    }

    #[test]
    fn an_image_root_is_entered_after_the_modules_and_mounted_again() {
        let sys = FakeSys::new();
        let params = BootParams {
            modules: vec!["virtiofs".into()],
            root: Some("root".into()),
            ..Default::default()
        };
        let report = boot(&sys, &params, &|| None);
        assert_eq!(report.root_error, None);
        let calls = sys.calls();
        let at = |c: &Call| calls.iter().position(|x| x == c).unwrap();
        let module = at(&Call::LoadModule("/lib/modules/bottle/virtiofs.ko".into()));
        let switch = at(&Call::SwitchRoot(super::super::root::NEW_ROOT.into()));
        assert!(module < switch);
        // Everything is mounted twice: in the initramfs, then in the image.
        assert_eq!(
            mounts_of(&calls).iter().filter(|m| *m == "/proc").count(),
            2
        );
        assert!(calls[switch..].contains(&Call::Touch(super::super::root::GUEST_BIN.into())));
    }

    #[test]
    fn a_root_that_cannot_be_mounted_is_reported() {
        let sys = FakeSys::new();
        sys.fail_mount(super::super::root::LOWER);
        let params = BootParams {
            root: Some("root".into()),
            ..Default::default()
        };
        let report = boot(&sys, &params, &|| None);
        assert!(report.root_error.unwrap().contains("image root"));
    }

    #[test]
    fn present_and_busy_mounts_are_skipped() {
        let sys = FakeSys::new();
        sys.fail_mount("/sys");
        // /proc appears in the table once it is mounted, like the real one.
        let proc_up = RefCell::new(false);
        let read = || {
            let up = *proc_up.borrow();
            *proc_up.borrow_mut() = true;
            up.then(|| format!("{MOUNTINFO}30 22 0:6 / /proc rw - proc proc rw\n"))
        };
        let report = boot(&sys, &BootParams::default(), &read);
        assert_eq!(report.mounted, ["/proc", "/dev/pts", "/dev/shm", "/tmp"]);
        assert_eq!(report.skipped, ["/sys", "/dev", "/run"]);
        assert!(report.failed.is_empty());
        assert_eq!(
            mounts_of(&sys.calls()),
            ["/proc", "/sys", "/dev/pts", "/dev/shm", "/tmp"],
            "mounted points are never mounted again"
        );
        assert!(sys
            .calls()
            .contains(&Call::Hostname(DEFAULT_HOSTNAME.into())));
    }
}
