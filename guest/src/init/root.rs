//! Moving from the initramfs into an image root, and mounting the host's
//! shared directories (docs/images.md, docs/workspaces.md).
//!
//! The image arrives read-only over virtio-fs (tag `bottle.root`), or, as
//! an experiment (`bottle.root=blk:DEVICE:FSTYPE`, docs/images.md), as a
//! read-only block device holding an ext4 or erofs image; the guest puts an overlay over it whose upper layer is a tmpfs of its own,
//! so the agent may write anywhere and the host's copy never changes. The
//! overlay is moved over `/` and the init chroots into it (no
//! `pivot_root` from an initramfs) and stays PID 1. `bottle-guest` itself
//! is bound read-only at [`GUEST_BIN`] so `bottle-guest status` works in
//! any image, including one without a shell.

use std::path::Path;

use bottle_shared::message::SharedDir;

use crate::sys::{Sys, SysError};

/// Where the read-only image is mounted before the switch.
pub const LOWER: &str = "/.bottle/lower";
/// The tmpfs holding the overlay's upper and work directories.
pub const RW: &str = "/.bottle/rw";
/// Where the overlay is assembled before it becomes `/`.
pub const NEW_ROOT: &str = "/.bottle/root";
/// Where `bottle-guest` appears in the image.
pub const GUEST_BIN: &str = "/usr/local/bin/bottle-guest";

const RDONLY: libc::c_ulong = libc::MS_RDONLY;
const BIND: libc::c_ulong = libc::MS_BIND;

/// How long a block device may take to appear after its driver loads.
const DEVICE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The read-only lower layer named by `bottle.root`: `(source, fstype)`.
/// A virtio-fs tag, or `blk:/dev/NAME:ext4|erofs`; `None` when malformed.
pub fn lower_source(root: &str) -> Option<(&str, &str)> {
    let Some(blk) = root.strip_prefix("blk:") else {
        return Some((root, "virtiofs"));
    };
    let (dev, fstype) = blk.rsplit_once(':')?;
    let name = dev.strip_prefix("/dev/")?;
    let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric());
    (ok && ["ext4", "erofs"].contains(&fstype)).then_some((dev, fstype))
}

/// Mount the image (`bottle.root`: a virtio-fs tag or `blk:DEV:FSTYPE`)
/// with a writable overlay and make it the root.
pub fn enter_image_root(sys: &dyn Sys, root: &str) -> Result<(), SysError> {
    let (source, fstype) = lower_source(root).ok_or_else(|| {
        SysError::new(
            format!("bottle.root={root}"),
            std::io::Error::from_raw_os_error(libc::EINVAL),
        )
    })?;
    for d in [LOWER, RW, NEW_ROOT] {
        sys.mkdir_all(Path::new(d))?;
    }
    // A disk's node appears shortly after virtio_blk loads: retry while it
    // is missing.
    let start = std::time::Instant::now();
    loop {
        match sys.mount_at(source, Path::new(LOWER), fstype, RDONLY, "") {
            Err(e)
                if fstype != "virtiofs"
                    && matches!(e.errno(), Some(libc::ENOENT | libc::ENXIO))
                    && start.elapsed() < DEVICE_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => break r?,
        }
    }
    sys.mount_at("bottle-rw", Path::new(RW), "tmpfs", 0, "mode=0755")?;
    let upper = format!("{RW}/upper");
    let work = format!("{RW}/work");
    sys.mkdir_all(Path::new(&upper))?;
    sys.mkdir_all(Path::new(&work))?;
    sys.mount_at(
        "overlay",
        Path::new(NEW_ROOT),
        "overlay",
        0,
        &format!("lowerdir={LOWER},upperdir={upper},workdir={work}"),
    )?;
    // From here on paths (and the image's own symlinks) resolve in the
    // image.
    sys.switch_root(Path::new(NEW_ROOT))
}

/// Bind this binary read-only at [`GUEST_BIN`] (after the switch and the
/// standard mounts: `/proc/self/exe` still names the initramfs file).
pub fn expose_self(sys: &dyn Sys) -> Result<(), SysError> {
    let target = Path::new(GUEST_BIN);
    if let Some(dir) = target.parent() {
        sys.mkdir_all(dir)?;
    }
    sys.touch(target)?;
    sys.mount_at("/proc/self/exe", target, "", BIND, "")?;
    sys.mount_at("", target, "", BIND | libc::MS_REMOUNT | RDONLY, "")
}

/// Is `path` a mount point the init allows: absolute, normalised, not `/`
/// and not inside what the init mounts itself. The host checks the same
/// (`[[mounts]]`); this is the guest's own line.
pub fn mount_point_ok(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    path.starts_with('/')
        && !parts.is_empty()
        && parts
            .iter()
            .all(|c| !c.is_empty() && *c != "." && *c != "..")
        && !["proc", "sys", "dev", "run"].contains(&parts[0])
}

/// Mount each shared directory (virtio-fs): `nosuid`, `nodev`, read-only
/// when asked. The first failure stops and is returned.
pub fn mount_shared(sys: &dyn Sys, dirs: &[SharedDir]) -> Result<(), String> {
    for d in dirs {
        if !mount_point_ok(&d.path) {
            return Err(format!("refusing to mount {} at {:?}", d.tag, d.path));
        }
        let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
        if d.readonly {
            flags |= RDONLY;
        }
        sys.mkdir_all(Path::new(&d.path))
            .map_err(|e| e.to_string())?;
        sys.mount_at(&d.tag, Path::new(&d.path), "virtiofs", flags, "")
            .map_err(|e| format!("workspace {}: {e}", d.path))?;
        tracing::info!(tag = %d.tag, path = %d.path, readonly = d.readonly, "workspace mounted");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::{Call, FakeSys};

    #[test]
    fn image_root_is_an_overlay_moved_over_slash() {
        let sys = FakeSys::new();
        enter_image_root(&sys, "root").unwrap();
        let calls = sys.calls();
        let mounts: Vec<&Call> = calls
            .iter()
            .filter(|c| matches!(c, Call::MountAt(_)))
            .collect();
        assert_eq!(
            mounts,
            [
                &Call::MountAt("root /.bottle/lower virtiofs 0x1 ".into()),
                &Call::MountAt("bottle-rw /.bottle/rw tmpfs 0x0 mode=0755".into()),
                &Call::MountAt(
                    "overlay /.bottle/root overlay 0x0 lowerdir=/.bottle/lower,\
                     upperdir=/.bottle/rw/upper,workdir=/.bottle/rw/work"
                        .into()
                ),
            ]
        );
        assert_eq!(calls.last(), Some(&Call::SwitchRoot(NEW_ROOT.into())));
    }

    #[test]
    fn a_block_device_root_is_mounted_read_only_as_the_lower() {
        let sys = FakeSys::new();
        enter_image_root(&sys, "blk:/dev/vda:ext4").unwrap();
        assert!(sys
            .calls()
            .contains(&Call::MountAt("/dev/vda /.bottle/lower ext4 0x1 ".into())));
        assert_eq!(sys.calls().last(), Some(&Call::SwitchRoot(NEW_ROOT.into())));
    }

    #[test]
    fn root_sources_are_checked() {
        assert_eq!(lower_source("root"), Some(("root", "virtiofs")));
        assert_eq!(
            lower_source("blk:/dev/vda:erofs"),
            Some(("/dev/vda", "erofs"))
        );
        for bad in [
            "blk:/dev/vda",
            "blk:/dev/vda:xfs",
            "blk:/etc/x:ext4",
            "blk:/dev/../x:ext4",
            "blk:/dev/:ext4",
        ] {
            assert_eq!(lower_source(bad), None, "{bad}");
            assert!(enter_image_root(&FakeSys::new(), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_failed_image_mount_stops_before_the_switch() {
        let sys = FakeSys::new();
        sys.fail_mount(LOWER);
        assert!(enter_image_root(&sys, "root").is_err());
        assert!(!sys.calls().iter().any(|c| matches!(c, Call::SwitchRoot(_))));
    }

    #[test]
    fn workspaces_mount_nosuid_nodev_and_readonly_when_asked() {
        let sys = FakeSys::new();
        let dirs = [
            SharedDir {
                tag: "ws0".into(),
                path: "/work".into(),
                readonly: false,
            },
            SharedDir {
                tag: "ws1".into(),
                path: "/ref".into(),
                readonly: true,
            },
        ];
        mount_shared(&sys, &dirs).unwrap();
        let flags = libc::MS_NOSUID | libc::MS_NODEV;
        assert!(sys
            .calls()
            .contains(&Call::MountAt(format!("ws0 /work virtiofs {flags:#x} "))));
        assert!(sys.calls().contains(&Call::MountAt(format!(
            "ws1 /ref virtiofs {:#x} ",
            flags | RDONLY
        ))));
    }

    #[test]
    fn mount_points_the_init_needs_are_refused() {
        for bad in [
            "", "/", "work", "/proc", "/proc/x", "/dev", "/run/a", "/sys", "/a/../b", "/a//b",
            "/a/",
        ] {
            assert!(!mount_point_ok(bad), "{bad:?}");
            let sys = FakeSys::new();
            let d = [SharedDir {
                tag: "ws0".into(),
                path: bad.into(),
                readonly: false,
            }];
            assert!(mount_shared(&sys, &d).is_err(), "{bad:?}");
            assert!(sys.calls().is_empty(), "nothing is done for {bad:?}");
        }
        for good in ["/work", "/home/agent/src", "/procfs", "/etc2"] {
            assert!(mount_point_ok(good), "{good}");
        }
    }
}
