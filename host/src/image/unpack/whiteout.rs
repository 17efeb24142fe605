//! Removing what a layer hides: a `.wh.NAME` whiteout removes `NAME` (a
//! whole subtree), `.wh..wh..opq` empties its directory of what lower
//! layers put there. Removal uses `*at` calls on directory fds and never
//! follows a symlink: a link is removed, not what it points to.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fchmodat, fstatat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::safe::{open_beneath, CleanPath};

/// Whether `name` under `parent` is a directory (not following a link);
/// `None` if it does not exist.
pub fn is_dir(parent: BorrowedFd<'_>, name: &CStr) -> Result<Option<bool>, Errno> {
    match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(
            SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR,
        )),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The names in a directory, `.` and `..` left out.
fn names(dir: BorrowedFd<'_>) -> Result<Vec<CString>, Errno> {
    let fd = open_beneath(dir, c".", OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    let mut d = Dir::from_fd(fd)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name();
        if n != c"." && n != c".." {
            out.push(n.to_owned());
        }
    }
    Ok(out)
}

/// Remove `name` under `parent`, a whole subtree if it is a directory; a
/// missing name is not an error.
pub fn remove(parent: BorrowedFd<'_>, name: &CStr) -> Result<(), Errno> {
    match is_dir(parent, name)? {
        None => Ok(()),
        Some(false) => unlinkat(parent, name, UnlinkatFlags::NoRemoveDir),
        Some(true) => {
            // A directory left without write or search permission (0555
            // in an image) must still be emptied when we are not root.
            let _ = fchmodat(
                parent,
                name,
                Mode::from_bits_truncate(0o700),
                FchmodatFlags::NoFollowSymlink,
            );
            let dir = open_beneath(parent, name, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
            for child in names(dir.as_fd())? {
                remove(dir.as_fd(), &child)?;
            }
            unlinkat(parent, name, UnlinkatFlags::RemoveDir)
        }
    }
}

/// Empty directory `dir` (at `path`) of everything this layer did not put
/// there: names in `keep` stay, and directories among them are emptied
/// the same way.
pub fn opaque(
    dir: BorrowedFd<'_>,
    path: &CleanPath,
    keep: &HashSet<CleanPath>,
) -> Result<(), Errno> {
    for name in names(dir)? {
        let child = path.join(&name);
        if !keep.contains(&child) {
            remove(dir, &name)?;
        } else if is_dir(dir, &name)? == Some(true) {
            let fd = open_beneath(dir, &name, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
            opaque(fd.as_fd(), &child, keep)?;
        }
    }
    Ok(())
}
