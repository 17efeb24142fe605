//! Finding the guest image: a kernel, an initramfs with `bottle-guest` as
//! `/init`, and the kernel modules that initramfs carries (loaded by the
//! guest at boot, named on the kernel command line).
//!
//! `images/build.sh` writes `vmlinuz`, `initramfs.cpio`, `modules`
//! (comma-separated load order) and `rootfs/` (the same tree as a
//! directory, for libkrun) into one directory. That directory is the first
//! of: `$BOTTLE_IMAGE_DIR`; `.bottle/image` under the current directory;
//! `.bottle/image` in the source tree the running binary was built in;
//! `image/` in the state directory. The manifest's `[vm] kernel` and
//! `[vm] image` override the two files.

use std::path::{Path, PathBuf};

/// The initramfs's name in an image directory.
pub const INITRAMFS: &str = "initramfs.cpio";
/// The boot initramfs (bottle-guest and modules) for image roots.
pub const BOOT_INITRAMFS: &str = "initramfs-boot.cpio";

/// The files a VM boots from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Kernel.
    pub kernel: PathBuf,
    /// Initramfs.
    pub initramfs: PathBuf,
    /// Modules to load, in order (file names without `.ko`).
    pub modules: Vec<String>,
    /// Modules for shared directories (virtio-fs, overlay), loaded after
    /// `modules` when the bottle has any.
    pub fs_modules: Vec<String>,
    /// The small initramfs (bottle-guest and modules only) booted when the
    /// root is an OCI image or a directory.
    pub boot_initramfs: Option<PathBuf>,
    /// The same root as a directory (`rootfs/` beside the initramfs), for
    /// backends that share a directory (libkrun).
    pub rootfs_dir: Option<PathBuf>,
}

/// No usable image.
#[derive(Debug, thiserror::Error)]
#[error("{what}; build the default image with `bash images/build.sh` (looked in: {looked})")]
pub struct ImageError {
    what: String,
    looked: String,
}

/// Candidate image directories, in order.
pub fn candidate_dirs(state_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("BOTTLE_IMAGE_DIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd.join(".bottle/image"));
    }
    // target/<profile>/bottle-host → the source tree's .bottle/image.
    if let Some(root) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent()?.parent().map(Path::to_path_buf))
    {
        dirs.push(root.join(".bottle/image"));
    }
    if let Some(s) = state_dir {
        dirs.push(s.join("image"));
    }
    dirs.dedup();
    dirs
}

/// Resolve the image from the manifest's overrides and the candidates.
pub fn find(
    kernel: Option<&Path>,
    initramfs: Option<&Path>,
    dirs: &[PathBuf],
) -> Result<Image, ImageError> {
    let looked = || {
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let dir = dirs
        .iter()
        .find(|d| d.join("vmlinuz").is_file() && d.join(INITRAMFS).is_file());
    let pick = |given: Option<&Path>, name: &str, key: &str| -> Result<PathBuf, ImageError> {
        match (given, dir) {
            (Some(p), _) if p.is_file() => Ok(p.to_path_buf()),
            (Some(p), _) => Err(ImageError {
                what: format!("[vm] {key} {} does not exist or is not a file", p.display()),
                looked: looked(),
            }),
            (None, Some(d)) => Ok(d.join(name)),
            (None, None) => Err(ImageError {
                what: "no guest image found".into(),
                looked: looked(),
            }),
        }
    };
    let kernel = pick(kernel, "vmlinuz", "kernel")?;
    let initramfs = pick(initramfs, INITRAMFS, "image")?;
    let beside = |name: &str| initramfs.parent().map(|d| d.join(name));
    let modules = beside("modules")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|s| parse_modules(&s))
        .unwrap_or_default();
    let fs_modules = beside("modules.fs")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|s| parse_modules(&s))
        .unwrap_or_default();
    let rootfs_dir = beside("rootfs").filter(|p| p.is_dir());
    let boot_initramfs = beside(BOOT_INITRAMFS).filter(|p| p.is_file());
    Ok(Image {
        kernel,
        initramfs,
        modules,
        fs_modules,
        rootfs_dir,
        boot_initramfs,
    })
}

/// `a,b,c` or one name per line; `.ko`, `.ko.xz` suffixes dropped.
pub fn parse_modules(s: &str) -> Vec<String> {
    s.split([',', '\n'])
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| {
            m.trim_end_matches(".xz")
                .trim_end_matches(".zst")
                .trim_end_matches(".ko")
                .to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_parse_both_forms() {
        assert_eq!(parse_modules("a.ko\nb.ko.xz\n\n"), vec!["a", "b"]);
        assert_eq!(parse_modules("virtio,vsock"), vec!["virtio", "vsock"]);
        assert!(parse_modules("").is_empty());
    }

    #[test]
    fn finds_first_complete_dir_and_reads_modules() {
        let t = tempfile::tempdir().unwrap();
        let empty = t.path().join("empty");
        let full = t.path().join("full");
        std::fs::create_dir_all(&empty).unwrap();
        std::fs::create_dir_all(&full).unwrap();
        std::fs::write(empty.join("vmlinuz"), b"k").unwrap(); // no initramfs
        std::fs::write(full.join("vmlinuz"), b"k").unwrap();
        std::fs::write(full.join(INITRAMFS), b"i").unwrap();
        std::fs::write(full.join("modules"), "virtio_ring.ko\nvsock.ko\n").unwrap();
        let img = find(None, None, &[empty, full.clone()]).unwrap();
        assert_eq!(img.kernel, full.join("vmlinuz"));
        assert_eq!(img.modules, vec!["virtio_ring", "vsock"]);
    }

    #[test]
    fn missing_image_names_the_fix_and_the_places() {
        let t = tempfile::tempdir().unwrap();
        let e = find(None, None, &[t.path().to_path_buf()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("images/build.sh"), "{e}");
        assert!(e.contains(&t.path().display().to_string()), "{e}");
        let e = find(Some(Path::new("/nonexistent/vmlinuz")), None, &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[vm] kernel /nonexistent/vmlinuz does not exist"),
            "{e}"
        );
    }
}
