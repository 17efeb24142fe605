//! An unpacked root as a read-only ext4 disk image, for the experimental
//! block-device delivery (`BOTTLE_ROOT_DELIVERY=ext4`, docs/images.md,
//! "How the root reaches the VM"). Built once with `mkfs.ext4 -d` beside
//! the cached tree (`<state>/images/sha256/<hex>/root.ext4`, so `image rm`
//! removes it with the tree) and reused by every later launch.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The disk image's name in a cache entry, beside `rootfs/`.
pub const FILE_NAME: &str = "root.ext4";

/// Free space and metadata on top of the files' own blocks.
const SLACK_KIB: u64 = 16 * 1024;

/// The ext4 image of the cached tree `root`, built when missing. `root`
/// must be a cache entry's `rootfs` (the image goes beside it).
pub fn ext4_image(root: &Path) -> io::Result<PathBuf> {
    let dir = root
        .parent()
        .filter(|_| root.file_name().is_some_and(|n| n == "rootfs"))
        .ok_or_else(|| io::Error::other("not a cached image root"))?;
    let out = dir.join(FILE_NAME);
    if out.exists() {
        return Ok(out);
    }
    let (kib, inodes) = size_of_tree(root)?;
    let tmp = dir.join(format!("root.ext4.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let status = Command::new("mkfs.ext4")
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin",
        )
        .args(mkfs_args(root, &tmp, kib, inodes))
        .status()
        .map_err(|e| io::Error::new(e.kind(), format!("mkfs.ext4 (e2fsprogs): {e}")))?;
    if !status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io::Error::other(format!("mkfs.ext4 -d failed ({status})")));
    }
    std::fs::rename(&tmp, &out)?;
    Ok(out)
}

/// `mkfs.ext4`'s arguments (pure; tested): page-sized blocks (mke2fs
/// would pick 1 KiB ones for a small disk), no journal (the disk is
/// read-only), owners and modes copied from the tree.
pub fn mkfs_args(root: &Path, out: &Path, kib: u64, inodes: u64) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = [
        "-q",
        "-F",
        "-t",
        "ext4",
        "-b",
        "4096",
        "-O",
        "^has_journal",
        "-L",
        "bottle-root",
    ]
    .iter()
    .map(Into::into)
    .collect();
    a.push("-N".into());
    a.push(inodes.to_string().into());
    a.push("-E".into());
    a.push("root_owner=0:0".into());
    a.push("-d".into());
    a.push(root.into());
    a.push(out.into());
    a.push(format!("{kib}k").into());
    a
}

/// The image's size in KiB and its inode count for the tree at `root`
/// (not following links).
fn size_of_tree(root: &Path) -> io::Result<(u64, u64)> {
    let (mut blocks, mut entries) = (0u64, 0u64);
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let md = e.metadata()?;
            entries += 1;
            blocks += md.len().div_ceil(4096);
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    // Files' blocks, one more block per entry (directories, extents,
    // inode table at 256 bytes an inode), and slack.
    let kib = (blocks + entries) * 4 + entries / 4 + SLACK_KIB;
    Ok((kib + kib / 10, entries + entries / 5 + 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mkfs_copies_the_tree_without_a_journal() {
        let a: Vec<String> = mkfs_args(Path::new("/c/rootfs"), Path::new("/c/x"), 1000, 50)
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            a.join(" "),
            "-q -F -t ext4 -b 4096 -O ^has_journal -L bottle-root -N 50 -E root_owner=0:0 \
             -d /c/rootfs /c/x 1000k"
        );
    }

    #[test]
    fn only_a_cache_entry_gets_an_image_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = ext4_image(dir.path()).unwrap_err();
        assert!(e.to_string().contains("not a cached image root"), "{e}");
    }

    #[test]
    fn the_size_covers_the_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), vec![0u8; 100_000]).unwrap();
        let (kib, inodes) = size_of_tree(dir.path()).unwrap();
        assert!(kib > 100 + SLACK_KIB, "{kib}");
        assert!(inodes >= 2, "{inodes}");
    }
}
