//! Paths that cannot leave the root: entry names cleaned and checked, and
//! parent directories opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` from the root's fd, so a
//! symlink anywhere on the way (placed by an earlier entry or layer) stops
//! the walk instead of being followed. The final component is then made
//! with an `*at` call on that parent fd, never following a link.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// Linux `PATH_MAX` and `NAME_MAX`.
const PATH_MAX: usize = 4096;
const NAME_MAX: usize = 255;

/// Why an entry is refused or failed.
#[derive(Debug)]
pub enum EntryError {
    /// Refused: unsafe or malformed.
    Unsafe(String),
    /// The system call failed.
    Io(std::io::Error),
}

impl From<Errno> for EntryError {
    fn from(e: Errno) -> Self {
        EntryError::Io(std::io::Error::from(e))
    }
}

impl From<std::io::Error> for EntryError {
    fn from(e: std::io::Error) -> Self {
        EntryError::Io(e)
    }
}

pub fn unsafe_entry(why: impl Into<String>) -> EntryError {
    EntryError::Unsafe(why.into())
}

/// An entry's path, cleaned: a leading `/` and `./` are stripped (as
/// Docker does), empty and `.` components dropped; `..` anywhere, a NUL, a
/// component over 255 bytes or a path over 4096 are refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CleanPath {
    comps: Vec<CString>,
}

impl CleanPath {
    pub fn parse(raw: &[u8]) -> Result<CleanPath, EntryError> {
        if raw.len() > PATH_MAX {
            return Err(unsafe_entry(format!(
                "path of {} bytes is too long",
                raw.len()
            )));
        }
        let mut comps = Vec::new();
        for c in raw.split(|&b| b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => return Err(unsafe_entry("path has a `..` component")),
                c if c.len() > NAME_MAX => {
                    return Err(unsafe_entry(format!(
                        "a name of {} bytes is too long",
                        c.len()
                    )))
                }
                c => {
                    comps.push(CString::new(c).map_err(|_| unsafe_entry("path holds a NUL byte"))?)
                }
            }
        }
        Ok(CleanPath { comps })
    }

    /// The parent's components and the last name.
    pub fn split_last(&self) -> Option<(&[CString], &CStr)> {
        self.comps.split_last().map(|(l, p)| (p, l.as_c_str()))
    }

    pub fn comps(&self) -> &[CString] {
        &self.comps
    }

    /// `a/b/c` for messages and as a key.
    pub fn display(&self) -> String {
        self.comps
            .iter()
            .map(|c| c.to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The path of its first `n` components.
    pub fn prefix(&self, n: usize) -> CleanPath {
        CleanPath {
            comps: self.comps.iter().take(n).cloned().collect(),
        }
    }

    /// `self/name`.
    pub fn join(&self, name: &CStr) -> CleanPath {
        let mut comps = self.comps.clone();
        comps.push(name.to_owned());
        CleanPath { comps }
    }
}

fn resolve_flags() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

/// Open `rel` (one or more components, no `..`) under `dir` without
/// leaving it and without following any symlink.
pub fn open_beneath(dir: BorrowedFd<'_>, rel: &CStr, flags: OFlag) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(resolve_flags());
    openat2(dir, rel, how)
}

/// The directory at `comps` as an `O_PATH` fd (the root itself when
/// empty).
pub fn open_dir(root: BorrowedFd<'_>, comps: &[CString]) -> Result<OwnedFd, EntryError> {
    let rel = join(comps)?;
    open_beneath(root, &rel, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(|e| walk_error(root, e, comps))
}

/// Like [`open_dir`], making missing directories (mode 0755) on the way.
pub fn make_dirs(root: BorrowedFd<'_>, comps: &[CString]) -> Result<OwnedFd, EntryError> {
    match open_dir(root, comps) {
        Err(EntryError::Io(e)) if e.raw_os_error() == Some(libc::ENOENT) => {}
        other => return other,
    }
    let mut cur = open_beneath(root, c".", OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    for (i, c) in comps.iter().enumerate() {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        cur = match open_beneath(cur.as_fd(), c, flags) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                match nix::sys::stat::mkdirat(
                    cur.as_fd(),
                    c.as_c_str(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                open_beneath(cur.as_fd(), c, flags)
                    .map_err(|e| walk_error(root, e, &comps[..=i]))?
            }
            Err(e) => return Err(walk_error(root, e, &comps[..=i])),
        };
    }
    Ok(cur)
}

/// `a/b` for `openat2`.
fn join(comps: &[CString]) -> Result<CString, EntryError> {
    if comps.is_empty() {
        return Ok(c".".to_owned());
    }
    let v: Vec<&[u8]> = comps.iter().map(|c| c.as_bytes()).collect();
    CString::new(v.join(&b'/')).map_err(|_| unsafe_entry("path holds a NUL byte"))
}

/// The refusals `openat2` reports, in words. A symlink opened with
/// `O_DIRECTORY | O_NOFOLLOW` reports `ENOTDIR`: the components are looked
/// at (`lstat`, shortest first, so only real directories are crossed) to
/// tell a symlink from a file.
fn walk_error(root: BorrowedFd<'_>, e: Errno, comps: &[CString]) -> EntryError {
    let show = |n: usize| {
        comps[..n]
            .iter()
            .map(|c| c.to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    };
    let at = show(comps.len());
    if e == Errno::ENOTDIR {
        for n in 1..=comps.len() {
            let Ok(rel) = join(&comps[..n]) else { break };
            match nix::sys::stat::fstatat(
                root,
                rel.as_c_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(st) => {
                    let kind = nix::sys::stat::SFlag::from_bits_truncate(st.st_mode)
                        & nix::sys::stat::SFlag::S_IFMT;
                    if kind == nix::sys::stat::SFlag::S_IFLNK {
                        return unsafe_entry(format!(
                            "its path goes through a symlink ({:?})",
                            show(n)
                        ));
                    }
                    if kind != nix::sys::stat::SFlag::S_IFDIR {
                        return unsafe_entry(format!(
                            "a parent is not a directory ({:?})",
                            show(n)
                        ));
                    }
                }
                Err(_) => break,
            }
        }
    }
    match e {
        Errno::ELOOP => unsafe_entry(format!(
            "its path goes through a symlink (at or under {at:?})"
        )),
        Errno::EXDEV => unsafe_entry(format!("its path leaves the root (at {at:?})")),
        Errno::ENOTDIR => unsafe_entry(format!("a parent is not a directory (at or under {at:?})")),
        Errno::ENOSYS => EntryError::Io(std::io::Error::other(
            "openat2 is not available (Linux 5.6 or newer is needed to unpack images)",
        )),
        e => e.into(),
    }
}

/// Read the regular file `rel` under the (untrusted) tree `root`, as the
/// host must: resolved beneath `root` with no symlink anywhere
/// (`openat2`), opened `O_NONBLOCK` (a FIFO or device cannot block the
/// open), refused unless a regular file, and refused if over `max` bytes.
pub fn read_file_beneath(root: &Path, rel: &str, max: u64) -> std::io::Result<Vec<u8>> {
    let dir = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let rel_c = CString::new(rel)?;
    let fd = open_beneath(
        dir.as_fd(),
        &rel_c,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
    )?;
    let f = File::from(fd);
    let meta = f.metadata()?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::other(format!(
            "{rel} in the image is not a regular file"
        )));
    }
    if meta.len() > max {
        return Err(std::io::Error::other(format!(
            "{rel} in the image is over {max} bytes"
        )));
    }
    let mut out = Vec::new();
    f.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::other(format!(
            "{rel} in the image is over {max} bytes"
        )));
    }
    Ok(out)
}
