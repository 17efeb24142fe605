//! What the guest boots into and what it mounts: the root (today's
//! initramfs, or an OCI image or directory shared read-only over virtio-fs
//! — or, experimentally, an OCI image as a read-only ext4 disk,
//! [`DELIVERY_ENV`] — with the guest's own writable overlay on top) and the `[[mounts]]`
//! workspaces; and the agent's command, user, directory and environment
//! from the manifest over the image's config (docs/images.md,
//! docs/workspaces.md).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bottle_shared::message::{AgentSpec, SharedDir};

use crate::image::{self, ImageConfig, ImageSource};
use crate::manifest::Manifest;
use crate::vmm::image::Image;
use crate::vmm::virtiofs::{FsShare, IdMap};

/// The virtio-fs tag of an image root.
pub const ROOT_TAG: &str = "root";

/// `BOTTLE_ROOT_DELIVERY=ext4`: an image root reaches the guest as a
/// read-only ext4 disk on virtio-blk instead of a virtio-fs share
/// (experimental; docs/images.md, "How the root reaches the VM").
pub const DELIVERY_ENV: &str = "BOTTLE_ROOT_DELIVERY";

/// The resolved root and shares of one bottle.
#[derive(Debug)]
pub struct Root {
    /// Kernel, initramfs and modules to boot.
    pub image: Image,
    /// Directories the VMM shares (root first, then workspaces).
    pub shares: Vec<FsShare>,
    /// Read-only disks (the image root as ext4, experimental).
    pub disks: Vec<PathBuf>,
    /// The same workspaces as the guest mounts them.
    pub mounts: Vec<SharedDir>,
    /// `bottle.*` kernel parameters to add.
    pub cmdline: Vec<String>,
    /// The image's config (empty for the initramfs).
    pub config: ImageConfig,
    /// One line for the banner and `ps`.
    pub describe: String,
}

/// Resolve `m`'s root and workspaces; `progress` reports pulls and
/// unpacking.
pub fn resolve(
    m: &Manifest,
    state: &Path,
    dirs: &[PathBuf],
    progress: &dyn image::Progress,
) -> Result<Root> {
    let base = m.path.parent().unwrap_or(Path::new("."));
    let source = match &m.vm.image {
        None => None,
        Some(s) => Some(ImageSource::parse(s, base).with_context(|| format!("[vm] image {s:?}"))?),
    };
    let (mut img, prepared) = match &source {
        None => (
            crate::vmm::image::find(m.vm.kernel.as_deref(), None, dirs)?,
            None,
        ),
        Some(ImageSource::Initramfs(p)) => (
            crate::vmm::image::find(m.vm.kernel.as_deref(), Some(p), dirs)?,
            None,
        ),
        Some(src) => {
            let img = crate::vmm::image::find(m.vm.kernel.as_deref(), None, dirs)?;
            let prepared = image::prepare(src, state, progress)
                .with_context(|| format!("[vm] image {}", m.vm.image.as_deref().unwrap_or("")))?;
            (img, Some(prepared))
        }
    };
    let mut shares = Vec::new();
    let mut disks = Vec::new();
    let mut cmdline = Vec::new();
    let mut describe = format!("{} + {}", img.kernel.display(), img.initramfs.display());
    let mut config = ImageConfig::default();
    if let Some(p) = &prepared {
        let Some(boot) = img.boot_initramfs.clone() else {
            bail!(
                "an image root boots the small initramfs-boot.cpio beside {}, which is missing; \
                 rebuild with `bash images/build.sh`",
                img.initramfs.display()
            );
        };
        img.initramfs = boot;
        match std::env::var(DELIVERY_ENV).as_deref() {
            Ok("ext4") => {
                let disk = image::disk::ext4_image(&p.root)
                    .with_context(|| format!("{DELIVERY_ENV}=ext4: the root's disk image"))?;
                disks.push(disk);
                cmdline.push("bottle.root=blk:/dev/vda:ext4".into());
            }
            Ok("virtiofs") | Err(_) => {
                shares.push(FsShare {
                    tag: ROOT_TAG.into(),
                    dir: p.root.clone(),
                    readonly: true,
                    owner: None,
                });
                cmdline.push(format!("bottle.root={ROOT_TAG}"));
            }
            Ok(other) => bail!("{DELIVERY_ENV}={other:?}: use virtiofs (the default) or ext4"),
        }
        describe = format!("{} ({})", m.vm.image.as_deref().unwrap_or(""), p.digest);
        config = p.config.clone();
    }
    // The root whose /etc/passwd names the agent's user.
    let passwd_root = prepared
        .as_ref()
        .map(|p| p.root.clone())
        .or_else(|| img.rootfs_dir.clone());
    let user = m
        .agent
        .user
        .clone()
        .or_else(|| config.user.clone())
        .unwrap_or_else(|| "root".into());
    let mut mounts = Vec::new();
    if !m.mounts.is_empty() {
        check_state_dir_is_private(m, state)?;
        let (guest_uid, guest_gid) = agent_ids(&user, passwd_root.as_deref())?;
        let owner = IdMap {
            guest_uid,
            guest_gid,
            host_uid: nix::unistd::geteuid().as_raw(),
            host_gid: nix::unistd::getegid().as_raw(),
        };
        for (i, mnt) in m.mounts.iter().enumerate() {
            if let Some(w) = open_root_workspace(
                &mnt.host,
                owner.host_uid == 0 && !mnt.readonly,
                std::fs::metadata(&mnt.host).ok().map(|md| {
                    use std::os::unix::fs::PermissionsExt;
                    md.permissions().mode()
                }),
            ) {
                tracing::warn!("{w}");
            }
            let tag = format!("ws{i}");
            shares.push(FsShare {
                tag: tag.clone(),
                dir: mnt.host.clone(),
                readonly: mnt.readonly,
                owner: Some(owner),
            });
            mounts.push(SharedDir {
                tag,
                path: mnt.guest.clone(),
                readonly: mnt.readonly,
            });
        }
    }
    // The overlay module comes with the virtio-fs ones.
    if !shares.is_empty() || !disks.is_empty() {
        if img.fs_modules.is_empty() {
            tracing::warn!(
                "the image directory lists no virtio-fs modules (modules.fs); \
                 rebuild it with `bash images/build.sh` if the guest cannot mount"
            );
        }
        img.modules.extend(img.fs_modules.iter().cloned());
    }
    Ok(Root {
        image: img,
        shares,
        disks,
        mounts,
        cmdline,
        config,
        describe,
    })
}

/// The warning for a writable workspace shared by a daemon running as root
/// (`root_writable`) whose directory lets group or others in (`mode &
/// 0o077`; `None`: unreadable, the daemon will say). The agent can leave
/// setuid/setgid files and FIFOs there owned by root (docs/workspaces.md);
/// a warning, not a refusal, since a project directory is usually 0755
/// (the README's `host = "."`). Only the directory itself is looked at,
/// not its parents.
fn open_root_workspace(host: &Path, root_writable: bool, mode: Option<u32>) -> Option<String> {
    let mode = mode?;
    if !root_writable || mode & 0o077 == 0 {
        return None;
    }
    Some(format!(
        "[[mounts]] host {} is writable, shared as root and open to group/others \
         (mode {:o}): the agent can leave setuid-root files in it; run bottle-host \
         as an ordinary user, mount it read-only, or chmod 700 it \
         (docs/workspaces.md)",
        host.display(),
        mode & 0o7777
    ))
}

/// A workspace may neither hold the state directory (the CA key, other
/// bottles' logs) nor sit inside it.
fn check_state_dir_is_private(m: &Manifest, state: &Path) -> Result<()> {
    let state = state.canonicalize().unwrap_or_else(|_| state.to_path_buf());
    for mnt in &m.mounts {
        if state.starts_with(&mnt.host) || mnt.host.starts_with(&state) {
            bail!(
                "[[mounts]] host {} overlaps the state directory {} (the CA key and audit \
                 logs must stay out of the bottle)",
                mnt.host.display(),
                state.display()
            );
        }
    }
    Ok(())
}

/// The agent's numeric uid and gid: `uid[:gid]` as written, or a name
/// looked up in the root's `/etc/passwd`.
pub fn agent_ids(user: &str, root: Option<&Path>) -> Result<(u32, u32)> {
    let (name, gid) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let gid_num = match gid {
        Some(g) => Some(
            g.parse::<u32>()
                .with_context(|| format!("[agent] user {user:?}: the group must be numeric"))?,
        ),
        None => None,
    };
    if let Ok(uid) = name.parse::<u32>() {
        return Ok((uid, gid_num.unwrap_or(uid)));
    }
    if name == "root" {
        return Ok((0, gid_num.unwrap_or(0)));
    }
    let entry = root
        .and_then(|r| read_passwd(r).ok())
        .and_then(|text| passwd_ids(&text, name));
    match entry {
        Some((uid, g)) => Ok((uid, gid_num.unwrap_or(g))),
        None => bail!(
            "[agent] user {user:?} is not in the image's /etc/passwd; workspaces need the \
             agent's uid: write it as uid:gid"
        ),
    }
}

/// The most of the image's `/etc/passwd` the host reads.
const MAX_PASSWD: u64 = 4 << 20;

/// The root's `/etc/passwd`: the tree may come from an untrusted image,
/// so no symlink is followed on the way (the host must not read its own
/// files through it), and a FIFO, device or over-large file is refused
/// rather than read (`image::read_file_beneath`).
fn read_passwd(root: &Path) -> std::io::Result<String> {
    let b = crate::image::read_file_beneath(root, "etc/passwd", MAX_PASSWD)?;
    String::from_utf8(b).map_err(std::io::Error::other)
}

fn passwd_ids(text: &str, name: &str) -> Option<(u32, u32)> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// The agent as the guest runs it: the manifest's values over the
/// image's, over the defaults (root, `/`). Errors when neither names a
/// command.
pub fn agent_spec(m: &Manifest, config: &ImageConfig) -> Result<AgentSpec> {
    let command = if !m.agent.command.is_empty() {
        m.agent.command.clone()
    } else {
        let mut c = config.entrypoint.clone();
        c.extend(config.cmd.iter().cloned());
        c
    };
    if command.is_empty() {
        bail!(
            "{}: [agent] command is not set and the image gives no Entrypoint or Cmd",
            m.path.display()
        );
    }
    let mut env: Vec<(String, String)> = config
        .env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| !m.agent.env.contains_key(*k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.extend(m.agent.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(AgentSpec {
        command,
        user: m
            .agent
            .user
            .clone()
            .or_else(|| config.user.clone().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "root".into()),
        workdir: m
            .agent
            .workdir
            .clone()
            .or_else(|| config.working_dir.clone().filter(|w| w.starts_with('/')))
            .unwrap_or_else(|| "/".into()),
        env,
        restart: m.agent.restart.clone(),
        grace_ms: m.agent.grace_ms,
    })
}

#[cfg(test)]
#[path = "root_tests.rs"]
mod tests;
