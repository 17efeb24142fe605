//! Applying layers to a root directory, entry by entry, each written by
//! us with `*at` calls (never `tar`'s own unpack):
//!
//! - paths: a leading `/` or `./` is stripped; `..`, over-long names, a
//!   parent that is a symlink (or not a directory) are refused
//!   (`safe.rs`);
//! - whiteouts and opaque directories (`whiteout.rs`); a whiteout entry
//!   is never written itself;
//! - regular files keep their mode bits, setuid/setgid/sticky included
//!   (the cache is under a `0700` directory: no other host user reaches
//!   them); directories, symlinks (target text is only data here, never
//!   followed), hard links (`linkat` within the root), fifos;
//! - character and block devices are skipped (the guest has devtmpfs),
//!   counted in one warning;
//! - owners are set when running as root; unprivileged, every file is the
//!   user's;
//! - PAX `SCHILY.xattr.*` on files and directories; `trusted.*` and
//!   `security.*` refused by the kernel when not root are skipped, counted;
//! - mtimes: files, links and fifos as they are written; directories'
//!   modes, owners and mtimes once every layer is applied, deepest first
//!   (until then they stay `0700` so that later entries can be written).
//! - limits (`limits.rs`): bytes written and entries per image, bytes of
//!   one member's headers; sparse holes stay holes.

mod limits;
mod safe;
mod whiteout;

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, futimens, mkdirat, utimensat, FchmodatFlags, Mode, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{
    fchown, fchownat, linkat, mkfifoat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags,
};

pub use limits::Limits;
use limits::{bytes_exceeded, entries_exceeded, Budgeted, MAX_HEADERS};
#[cfg(test)]
pub(crate) use limits::{MAX_DEPTH, PATH_COMPONENT_COST};
pub use safe::read_file_beneath;
use safe::{make_dirs, open_beneath, open_dir, unsafe_entry, CleanPath, EntryError};

use super::ImageError;

/// What was unpacked.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Bytes of regular files written.
    pub bytes: u64,
    /// Device nodes skipped.
    pub devices_skipped: u64,
    /// Extended attributes the kernel refused (not root, or unsupported).
    pub xattrs_skipped: u64,
}

#[derive(Debug, Clone, Copy)]
struct DirMeta {
    mode: u32,
    uid: Uid,
    gid: Gid,
    mtime: i64,
}

/// Layers applied into one root directory.
pub struct Unpacker {
    root: OwnedFd,
    privileged: bool,
    dirs: BTreeMap<CleanPath, DirMeta>,
    stats: Stats,
    limits: Limits,
    /// Bytes counted against `limits.max_bytes`.
    used: u64,
    entries: u64,
    /// Path memory counted against `MAX_BOOKKEEPING`.
    book: usize,
}

type Xattrs = Vec<(CString, Vec<u8>)>;

impl Unpacker {
    /// Unpack into `root`, an existing empty directory, within the
    /// environment's limits (`limits.rs`).
    pub fn new(root: &Path) -> Result<Unpacker, ImageError> {
        Unpacker::with_limits(root, Limits::from_env()?)
    }

    /// [`Unpacker::new`] within `limits`.
    pub fn with_limits(root: &Path, limits: Limits) -> Result<Unpacker, ImageError> {
        let fd = nix::fcntl::open(
            root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ImageError::io(format!("opening {}", root.display()), e.into()))?;
        Ok(Unpacker {
            root: fd,
            privileged: nix::unistd::geteuid().is_root(),
            dirs: BTreeMap::new(),
            stats: Stats::default(),
            limits,
            used: 0,
            entries: 0,
            book: 0,
        })
    }

    /// Apply one layer's (uncompressed) tar stream; `layer` names it in
    /// errors.
    pub fn apply_layer(&mut self, layer: &str, r: impl Read) -> Result<(), ImageError> {
        // While the parser looks for the next member it reads (and holds)
        // PAX records and GNU long names whole: it gets MAX_HEADERS bytes.
        let budget = Cell::new(None);
        let mut ar = tar::Archive::new(Budgeted {
            inner: r,
            left: &budget,
        });
        let mut made: HashSet<CleanPath> = HashSet::new();
        let mut entries = ar.entries().map_err(|e| read_error(layer, "", e))?;
        loop {
            budget.set(Some(MAX_HEADERS));
            let next = entries.next();
            budget.set(None);
            let Some(entry) = next else {
                break;
            };
            let mut entry = entry.map_err(|e| read_error(layer, "", e))?;
            let raw = entry.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&raw).into_owned();
            let map = |e: EntryError| match e {
                EntryError::Unsafe(reason) => ImageError::UnsafeEntry {
                    layer: layer.to_string(),
                    entry: shown.clone(),
                    reason,
                },
                EntryError::Io(e) => read_error(layer, &shown, e),
            };
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(map(entries_exceeded(self.limits.max_entries).into()));
            }
            self.entry(&mut entry, &raw, &mut made).map_err(map)?;
            // What the entry did not read (a skipped type's data) is read
            // here, counted, so that the parser's skip stays within its
            // header budget.
            self.drain(&mut entry).map_err(|e| map(e.into()))?;
        }
        Ok(())
    }

    /// Set directories' metadata (deepest first) and report.
    pub fn finish(self) -> Result<Stats, ImageError> {
        for (path, m) in self.dirs.iter().rev() {
            let Ok(rel) = CString::new(path.display()) else {
                continue;
            };
            // Gone (whiteout) or replaced by a non-directory: nothing to do.
            let Ok(fd) = open_beneath(
                self.root.as_fd(),
                &rel,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            ) else {
                continue;
            };
            let io = |e: Errno| ImageError::Unpack {
                layer: "the image".into(),
                entry: path.display(),
                source: e.into(),
            };
            if self.privileged {
                fchown(&fd, Some(m.uid), Some(m.gid)).map_err(io)?;
            }
            fchmod(&fd, Mode::from_bits_truncate(m.mode)).map_err(io)?;
            let t = TimeSpec::new(m.mtime, 0);
            futimens(&fd, &t, &t).map_err(io)?;
        }
        if self.stats.devices_skipped > 0 {
            tracing::warn!(
                "skipped {} device node(s): the guest has its own /dev",
                self.stats.devices_skipped
            );
        }
        if self.stats.xattrs_skipped > 0 {
            tracing::warn!(
                "skipped {} extended attribute(s) the host refused (not root, or not supported)",
                self.stats.xattrs_skipped
            );
        }
        Ok(self.stats)
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
        made: &mut HashSet<CleanPath>,
    ) -> Result<(), EntryError> {
        use tar::EntryType as T;
        let kind = entry.header().entry_type();
        match kind {
            T::Char | T::Block => {
                self.stats.devices_skipped += 1;
                return Ok(());
            }
            T::Regular
            | T::Continuous
            | T::GNUSparse
            | T::Directory
            | T::Symlink
            | T::Link
            | T::Fifo => {}
            other => {
                tracing::debug!("skipping tar entry of type {other:?}");
                return Ok(());
            }
        }
        let path = CleanPath::parse(raw)?;
        if path.comps().len() > limits::MAX_DEPTH {
            return Err(limits::too_deep().into());
        }
        let Some((parents, name)) = path.split_last() else {
            return Ok(()); // `./`: the root keeps its own mode.
        };
        if parents.iter().any(|c| c.as_bytes().starts_with(b".wh.")) {
            return Err(unsafe_entry(
                "a directory name starts with the whiteout prefix `.wh.`",
            ));
        }
        let root = self.root.as_fd();
        let nb = name.to_bytes();
        if nb == b".wh..wh..opq" {
            let dir_path = path.prefix(parents.len());
            let dir = make_dirs(root, parents)?;
            self.mark_ancestors(made, &path)?;
            whiteout::opaque(dir.as_fd(), &dir_path, made)?;
            return Ok(());
        }
        if let Some(target) = nb.strip_prefix(b".wh.") {
            if target.starts_with(b".wh.") {
                return Ok(()); // aufs bookkeeping (`.wh..wh.plnk`…)
            }
            if target.is_empty() || target == b"." || target == b".." {
                return Err(unsafe_entry("a whiteout of nothing, `.` or `..`"));
            }
            let parent = match open_dir(root, parents) {
                Ok(fd) => fd,
                Err(EntryError::Io(e)) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
                Err(e) => return Err(e),
            };
            let target = CString::new(target).map_err(|_| unsafe_entry("NUL in a whiteout"))?;
            whiteout::remove(parent.as_fd(), &target)?;
            let gone = path.prefix(parents.len()).join(&target);
            self.dirs
                .retain(|k, _| !k.comps().starts_with(gone.comps()));
            return Ok(());
        }
        let h = entry.header();
        let mode = h.mode().map_err(EntryError::Io)? & 0o7777;
        let uid =
            Uid::from_raw(u32::try_from(h.uid()?).map_err(|_| unsafe_entry("uid out of range"))?);
        let gid =
            Gid::from_raw(u32::try_from(h.gid()?).map_err(|_| unsafe_entry("gid out of range"))?);
        let mtime = i64::try_from(h.mtime()?).unwrap_or(0);
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let xattrs = xattrs(entry)?;

        // A hard link's target is resolved before anything is replaced.
        let link_src = if kind == T::Link {
            let l = link
                .as_deref()
                .ok_or_else(|| unsafe_entry("hard link without a target"))?;
            let t = CleanPath::parse(l).map_err(|e| match e {
                EntryError::Unsafe(r) => unsafe_entry(format!("hard link target: {r}")),
                e => e,
            })?;
            if t == path {
                return Err(unsafe_entry("hard link to itself"));
            }
            let Some((tp, tn)) = t.split_last() else {
                return Err(unsafe_entry("hard link to the root"));
            };
            let fd = open_dir(root, tp).map_err(|e| match e {
                EntryError::Unsafe(r) => unsafe_entry(format!("hard link target: {r}")),
                EntryError::Io(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    unsafe_entry("hard link target does not exist in the image")
                }
                e => e,
            })?;
            Some((fd, tn.to_owned()))
        } else {
            None
        };

        let parent = make_dirs(root, parents)?;
        self.mark_ancestors(made, &path)?;
        if made.insert(path.clone()) {
            self.remember(&path)?;
        }
        let p = parent.as_fd();
        let existing_dir = clear_slot(p, name, kind == T::Directory)?;
        match kind {
            T::Directory => {
                if !existing_dir {
                    mkdirat(p, name, Mode::from_bits_truncate(0o700))?;
                }
                if !xattrs.is_empty() {
                    let fd = open_beneath(p, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
                    set_xattrs(&mut self.stats, self.privileged, fd.as_fd(), &xattrs)?;
                }
                self.remember(&path)?;
                self.dirs.insert(
                    path.clone(),
                    DirMeta {
                        mode,
                        uid,
                        gid,
                        mtime,
                    },
                );
            }
            T::Symlink => {
                let l = link.ok_or_else(|| unsafe_entry("symlink without a target"))?;
                let l = CString::new(l).map_err(|_| unsafe_entry("NUL in a symlink target"))?;
                symlinkat(l.as_c_str(), p, name)?;
                self.owner_and_time(p, name, uid, gid, mtime)?;
            }
            T::Link => {
                if let Some((tfd, tn)) = link_src {
                    linkat(tfd.as_fd(), tn.as_c_str(), p, name, AtFlags::empty()).map_err(|e| {
                        match e {
                            Errno::ENOENT => {
                                unsafe_entry("hard link target does not exist in the image")
                            }
                            e => e.into(),
                        }
                    })?;
                }
            }
            T::Fifo => {
                mkfifoat(p, name, Mode::from_bits_truncate(0o600))?;
                fchmodat(
                    p,
                    name,
                    Mode::from_bits_truncate(mode),
                    FchmodatFlags::NoFollowSymlink,
                )?;
                self.owner_and_time(p, name, uid, gid, mtime)?;
            }
            _ => {
                let fd = nix::fcntl::openat(
                    p,
                    name,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )?;
                let mut f = File::from(fd);
                // The declared size (a sparse file's full size) first, so
                // that an entry over the limit writes nothing.
                if self.used.saturating_add(entry.size()) > self.limits.max_bytes {
                    return Err(bytes_exceeded(self.limits.max_bytes).into());
                }
                self.stats.bytes += self.copy(entry, &mut f)?;
                if self.privileged {
                    fchown(&f, Some(uid), Some(gid))?;
                }
                // After chown, which clears setuid/setgid.
                fchmod(&f, Mode::from_bits_truncate(mode))?;
                set_xattrs(&mut self.stats, self.privileged, f.as_fd(), &xattrs)?;
                let t = TimeSpec::new(mtime, 0);
                futimens(&f, &t, &t)?;
            }
        }
        Ok(())
    }

    fn owner_and_time(
        &self,
        p: BorrowedFd<'_>,
        name: &CStr,
        uid: Uid,
        gid: Gid,
        mtime: i64,
    ) -> Result<(), EntryError> {
        if self.privileged {
            fchownat(p, name, Some(uid), Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        }
        let t = TimeSpec::new(mtime, 0);
        utimensat(p, name, &t, &t, UtimensatFlags::NoFollowSymlink)?;
        Ok(())
    }
}

/// Set `xattrs` on `fd`; those the kernel refuses for want of privilege or
/// support are counted in `stats`, not errors.
fn set_xattrs(
    stats: &mut Stats,
    privileged: bool,
    fd: BorrowedFd<'_>,
    xattrs: &Xattrs,
) -> Result<(), EntryError> {
    {
        for (k, v) in xattrs {
            // SAFETY: `fd` is open for the call; `k` is NUL-terminated and
            // `v` is a valid buffer of `v.len()` bytes.
            let rc = unsafe {
                libc::fsetxattr(fd.as_raw_fd(), k.as_ptr(), v.as_ptr().cast(), v.len(), 0)
            };
            if rc == 0 {
                continue;
            }
            let e = Errno::last();
            let kb = k.as_bytes();
            let privileged_ns = kb.starts_with(b"trusted.") || kb.starts_with(b"security.");
            match e {
                Errno::ENOTSUP => stats.xattrs_skipped += 1,
                Errno::EPERM if privileged_ns && !privileged => stats.xattrs_skipped += 1,
                e => {
                    return Err(EntryError::Io(std::io::Error::new(
                        std::io::Error::from(e).kind(),
                        format!("xattr {}: {e}", k.to_string_lossy()),
                    )))
                }
            }
        }
        Ok(())
    }
}

/// Remove the directory tree (or file) at `path` without following
/// symlinks, making read-only directories writable on the way.
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::other("not a removable path"));
    };
    let pfd = nix::fcntl::open(
        parent,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let name = CString::new(name.as_bytes())?;
    whiteout::remove(pfd.as_fd(), &name)?;
    Ok(())
}

/// Make room for a new entry at `name`: an existing non-directory is
/// removed, and an existing directory too unless the new entry is one
/// (then it stays, and `true` is returned).
fn clear_slot(parent: BorrowedFd<'_>, name: &CStr, new_is_dir: bool) -> Result<bool, EntryError> {
    match whiteout::is_dir(parent, name)? {
        None => Ok(false),
        Some(true) if new_is_dir => Ok(true),
        Some(true) => {
            whiteout::remove(parent, name)?;
            Ok(false)
        }
        Some(false) => {
            unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)?;
            Ok(false)
        }
    }
}

/// PAX `SCHILY.xattr.NAME=VALUE` records.
fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Xattrs, EntryError> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                let name = CString::new(name).map_err(|_| unsafe_entry("NUL in an xattr name"))?;
                out.push((name, ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

/// An I/O error while applying `layer`: a digest or size mismatch of the
/// blob being read is reported as such.
fn read_error(layer: &str, entry: &str, e: std::io::Error) -> ImageError {
    if let Some(reason) = limits::limit_reason(&e) {
        return ImageError::Format(format!("layer {layer}: {reason}"));
    }
    match super::blob::mismatch_reason(&e) {
        Some(reason) => ImageError::Verify {
            blob: layer.to_string(),
            reason,
        },
        None => ImageError::Unpack {
            layer: layer.to_string(),
            entry: entry.to_string(),
            source: e,
        },
    }
}
