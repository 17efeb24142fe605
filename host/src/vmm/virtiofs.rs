//! Shared directories: one `virtiofsd` (the Rust one, from crates.io;
//! `images/virtiofsd.sh`) per share, started before the VM and behind a
//! `vhost-user-fs-pci` device on the guest memory that is already shared.
//!
//! A read-only share is read-only in the daemon (`--readonly`), not only
//! in the guest's mount. A share with an owner ([`IdMap`]) translates ids
//! both ways: every file the guest creates belongs to the host user, and
//! the host user's files appear as the agent's (docs/workspaces.md).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file-system daemon.
pub const FS_DAEMON: &str = "virtiofsd";

/// One shared directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsShare {
    /// The device tag the guest mounts by (`[a-z0-9]`, at most 36 bytes).
    pub tag: String,
    /// The host directory.
    pub dir: PathBuf,
    /// Refuse writes in the daemon.
    pub readonly: bool,
    /// Translate owners between the agent and the host user.
    pub owner: Option<IdMap>,
}

/// The agent's ids in the guest and the host user's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdMap {
    /// Agent uid in the guest.
    pub guest_uid: u32,
    /// Agent gid in the guest.
    pub guest_gid: u32,
    /// The host user's uid.
    pub host_uid: u32,
    /// The host user's gid.
    pub host_gid: u32,
}

/// The daemon's vhost-user socket for share `i` of a VM whose vsock
/// sockets start with `base`.
pub fn socket(base: &Path, i: usize) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(format!(".fs{i}"));
    PathBuf::from(s)
}

/// The capabilities a daemon running as root gives up, in
/// `virtiofsd --modcaps` syntax: `mknod` (device nodes: a guest root could
/// otherwise make `/dev/sda` or `/dev/mem` in a host directory; FIFOs and
/// sockets need no capability and still work), `setfcap` (setting
/// `security.capability`, file capabilities) and `fsetid` (so a write
/// clears setuid/setgid, and setgid is dropped where the group is not the
/// daemon's). `fowner` stays: without it the guest cannot chmod or set
/// times on the host user's files when they are not root's.
pub const ROOT_MODCAPS: &str = "--modcaps=-mknod:-setfcap:-fsetid";

/// The extended attributes a workspace passes, in `virtiofsd --xattrmap`
/// syntax: `user.*` both ways, everything else (`security.*` with
/// `security.capability` and `security.selinux`, `trusted.*`, `system.*`)
/// refused. The guest's setxattr of those gets `EPERM`, its getxattr
/// `ENODATA` (what tools see for an absent attribute: `cp -a` and git go
/// on), and the host's are left out of listxattr. POSIX ACLs
/// (`system.posix_acl_*`) are not offered at all: the daemon answers
/// `EOPNOTSUPP` without `--posix-acl`, which id translation excludes. Not
/// used on the image's root share, whose file capabilities the guest
/// needs.
pub const WORKSPACE_XATTRMAP: &str = "--xattrmap=:ok:all:user.:user.::bad:all:::";

/// The daemon's arguments (pure; tested). `as_root`: the daemon may use
/// its namespace sandbox (mount, PID and network namespaces, pivoted into
/// the shared directory) and gives up [`ROOT_MODCAPS`]; otherwise it runs
/// unsandboxed, with no capabilities to give up, and relies on its own
/// path handling (docs/workspaces.md).
pub fn daemon_args(share: &FsShare, socket: &Path, as_root: bool) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![
        "--shared-dir".into(),
        share.dir.clone().into_os_string(),
        "--socket-path".into(),
        socket.as_os_str().to_owned(),
        "--sandbox".into(),
        if as_root { "namespace" } else { "none" }.into(),
        "--cache".into(),
        "auto".into(),
        "--log-level".into(),
        "warn".into(),
        "--xattr".into(),
    ];
    if as_root {
        a.push(ROOT_MODCAPS.into());
    }
    if share.readonly {
        a.push("--readonly".into());
    }
    if let Some(m) = share.owner {
        a.push(WORKSPACE_XATTRMAP.into());
        // Guest → host: whatever id the guest writes with becomes the host
        // user's. Host → guest: the host user's files show as the agent's.
        for (flag, guest, host) in [
            ("--translate-uid", m.guest_uid, m.host_uid),
            ("--translate-gid", m.guest_gid, m.host_gid),
        ] {
            a.push(flag.into());
            a.push(format!("squash-guest:0:{host}:4294967295").into());
            a.push(flag.into());
            a.push(format!("host:{host}:{guest}:1").into());
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(a: &[OsString]) -> Vec<&str> {
        a.iter().map(|s| s.to_str().unwrap()).collect()
    }

    #[test]
    fn readonly_root_share() {
        let share = FsShare {
            tag: "root".into(),
            dir: "/cache/rootfs".into(),
            readonly: true,
            owner: None,
        };
        let a = daemon_args(&share, Path::new("/run/b/vsock.fs0"), true);
        let a = strs(&a);
        assert_eq!(
            &a[..6],
            [
                "--shared-dir",
                "/cache/rootfs",
                "--socket-path",
                "/run/b/vsock.fs0",
                "--sandbox",
                "namespace"
            ]
        );
        assert!(a.contains(&"--readonly"));
        assert!(!a.iter().any(|s| s.starts_with("--translate")));
        assert!(a.contains(&ROOT_MODCAPS));
        // The image's file capabilities reach the guest.
        assert!(!a.iter().any(|s| s.starts_with("--xattrmap")));
    }

    #[test]
    fn root_daemon_gives_up_mknod_setfcap_fsetid() {
        let share = FsShare {
            tag: "ws0".into(),
            dir: "/srv/repo".into(),
            readonly: false,
            owner: Some(IdMap::default()),
        };
        let a = daemon_args(&share, Path::new("/s"), true);
        let a = strs(&a);
        assert!(a.windows(2).any(|w| w == ["--sandbox", "namespace"]));
        assert!(
            a.contains(&"--xattrmap=:ok:all:user.:user.::bad:all:::"),
            "{a:?}"
        );
        // One argument: "-mknod…" after a separate "--modcaps" would read
        // as an option.
        assert!(a.contains(&"--modcaps=-mknod:-setfcap:-fsetid"), "{a:?}");
        // An unprivileged daemon has nothing to give up.
        let a = daemon_args(&share, Path::new("/s"), false);
        assert!(!strs(&a).iter().any(|s| s.starts_with("--modcaps")));
    }

    #[test]
    fn workspace_share_maps_owners_both_ways() {
        let share = FsShare {
            tag: "ws0".into(),
            dir: "/home/u/repo".into(),
            readonly: false,
            owner: Some(IdMap {
                guest_uid: 1000,
                guest_gid: 1001,
                host_uid: 501,
                host_gid: 20,
            }),
        };
        let a = daemon_args(&share, Path::new("/s"), false);
        let a = strs(&a);
        assert!(a.windows(2).any(|w| w == ["--sandbox", "none"]));
        assert!(!a.contains(&"--readonly"));
        assert!(!a.iter().any(|s| s.starts_with("--modcaps")));
        assert!(a.contains(&WORKSPACE_XATTRMAP));
        let joined = a.join(" ");
        for want in [
            "--translate-uid squash-guest:0:501:4294967295",
            "--translate-uid host:501:1000:1",
            "--translate-gid squash-guest:0:20:4294967295",
            "--translate-gid host:20:1001:1",
        ] {
            assert!(joined.contains(want), "{want} in {joined}");
        }
        assert_eq!(
            socket(Path::new("/r/vsock"), 2),
            PathBuf::from("/r/vsock.fs2")
        );
    }
}
