//! Per-image unpacking limits: what a (digest-checked, but untrusted)
//! image may make the host write, and how much of one member's headers
//! the tar parser may hold in memory.
//!
//! - `BOTTLE_IMAGE_MAX_BYTES` (default [`MAX_BYTES`]): the file contents
//!   an image's layers write, added up over every layer, sparse files at
//!   their full size (their holes are left as holes on disk, but count),
//!   and the data of entries skipped unread (devices, unknown types);
//! - `BOTTLE_IMAGE_MAX_ENTRIES` (default [`MAX_ENTRIES`]): tar entries
//!   over every layer;
//! - [`MAX_HEADERS`]: the bytes read to reach one member's data: its
//!   header, PAX record, GNU long name and link, and sparse map. The tar
//!   crate reads those records whole into memory; a layer reader counts
//!   them and fails past this, before the record can grow further.
//!
//! Exceeding one fails the unpack with an error naming the limit and the
//! variable that raises it; nothing is cached.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use super::super::ImageError;
use super::Unpacker;

/// Default of `BOTTLE_IMAGE_MAX_BYTES`: 16 GiB (an agent image is about
/// 2.5 GiB unpacked).
pub const MAX_BYTES: u64 = 16 << 30;
/// Default of `BOTTLE_IMAGE_MAX_ENTRIES`.
pub const MAX_ENTRIES: u64 = 2_000_000;
/// Bytes of one member's headers (PAX, GNU long names, sparse map).
pub const MAX_HEADERS: u64 = 1 << 20;
/// Deepest path an entry may have, in components (real images: a few
/// dozen); a path's bookkeeping grows with its depth.
pub const MAX_DEPTH: usize = 128;
/// Memory the unpacker may use to remember paths (each directory's
/// metadata until the end, and what a layer made, for opaque whiteouts),
/// counted as each component's bytes plus [`PATH_COMPONENT_COST`].
pub const MAX_BOOKKEEPING: usize = 512 << 20;
/// What one remembered path component costs besides its bytes.
pub const PATH_COMPONENT_COST: usize = 48;

pub const BYTES_ENV: &str = "BOTTLE_IMAGE_MAX_BYTES";
pub const ENTRIES_ENV: &str = "BOTTLE_IMAGE_MAX_ENTRIES";

/// The limits for one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_entries: u64,
    /// Path bookkeeping, bytes ([`MAX_BOOKKEEPING`]; not from the
    /// environment: it only bounds memory).
    pub max_bookkeeping: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: MAX_BYTES,
            max_entries: MAX_ENTRIES,
            max_bookkeeping: MAX_BOOKKEEPING,
        }
    }
}

impl Limits {
    /// The environment's, else the defaults; a value that is not a
    /// positive whole number is an error.
    pub fn from_env() -> Result<Limits, ImageError> {
        Limits::from_lookup(|n| std::env::var(n).ok())
    }

    /// [`Limits::from_env`] with `var` for the environment.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Limits, ImageError> {
        let get = |name: &str, default: u64| -> Result<u64, ImageError> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        ImageError::Format(format!("{name}={v:?}: give a positive whole number"))
                    }),
            }
        };
        Ok(Limits {
            max_bytes: get(BYTES_ENV, MAX_BYTES)?,
            max_entries: get(ENTRIES_ENV, MAX_ENTRIES)?,
            max_bookkeeping: MAX_BOOKKEEPING,
        })
    }
}

/// A limit was reached (wrapped in an `io::Error` on its way out of the
/// tar parser).
#[derive(Debug)]
pub struct LimitHit(pub String);

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LimitHit {}

pub fn hit(msg: String) -> io::Error {
    io::Error::other(LimitHit(msg))
}

/// The limit's text if `e` (or what it wraps) is one.
pub fn limit_reason(e: &io::Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|r| r as _);
    while let Some(err) = cur {
        if let Some(m) = err.downcast_ref::<LimitHit>() {
            return Some(m.0.clone());
        }
        cur = err.source();
    }
    None
}

pub fn bytes_exceeded(max: u64) -> io::Error {
    hit(format!(
        "the image writes more than {max} bytes ({BYTES_ENV}, default {MAX_BYTES}; \
         set it to allow a larger image)"
    ))
}

/// The error for a path deeper than [`MAX_DEPTH`].
pub fn too_deep() -> io::Error {
    hit(format!("a path deeper than {MAX_DEPTH} components"))
}

/// The error for paths past `max` bytes of bookkeeping.
pub fn bookkeeping_exceeded(max: usize) -> io::Error {
    hit(format!(
        "the image's paths need more than {} MiB to keep track of (many deep directories)",
        max >> 20
    ))
}

pub fn entries_exceeded(max: u64) -> io::Error {
    hit(format!(
        "the image has more than {max} tar entries ({ENTRIES_ENV}, default {MAX_ENTRIES}; \
         set it to allow more)"
    ))
}

/// A layer's tar stream, with a budget while the parser looks for the
/// next member (`Some(bytes left)`), none while a member's data is read.
pub struct Budgeted<'a, R> {
    pub inner: R,
    pub left: &'a Cell<Option<u64>>,
}

impl<R: Read> Read for Budgeted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(left) = self.left.get() else {
            return self.inner.read(buf);
        };
        if left == 0 {
            return Err(hit(format!(
                "a member's headers (PAX record, GNU long name, sparse map) take more than \
                 {MAX_HEADERS} bytes"
            )));
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(buf.get_mut(..want).unwrap_or_default())?;
        self.left.set(Some(left - n as u64));
        Ok(n)
    }
}

/// Counting, as the unpacker writes.
impl Unpacker {
    /// Count `n` more bytes against the image's limit.
    pub(super) fn count(&mut self, n: u64) -> std::io::Result<()> {
        self.used = self.used.saturating_add(n);
        if self.used > self.limits.max_bytes {
            return Err(bytes_exceeded(self.limits.max_bytes));
        }
        Ok(())
    }

    pub(super) fn drain(&mut self, r: &mut impl Read) -> std::io::Result<()> {
        let mut buf = [0u8; 64 << 10];
        loop {
            let k = match r.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(k) => k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.count(k as u64)?;
        }
    }

    /// Copy a file's content, counted against the limit as it goes; runs
    /// of zeros a read returns whole (a sparse file's holes, as the tar
    /// parser hands them out) are skipped over and left as holes.
    pub(super) fn copy(&mut self, r: &mut impl Read, w: &mut File) -> std::io::Result<u64> {
        let mut buf = vec![0u8; 256 << 10];
        let mut n = 0u64;
        loop {
            let k = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.count(k as u64)?;
            let chunk = buf.get(..k).unwrap_or_default();
            if chunk.iter().all(|&b| b == 0) {
                w.seek(SeekFrom::Current(k as i64))?;
            } else {
                w.write_all(chunk)?;
            }
            n += k as u64;
        }
        // A trailing hole.
        if w.metadata()?.len() < n {
            w.set_len(n)?;
        }
        Ok(n)
    }
}

impl super::Unpacker {
    /// Every directory above `path` belongs to this layer's changes too (an
    /// opaque marker in an ancestor keeps them, with what this layer put in
    /// them, whether they were made now or existed before). From the
    /// deepest: a directory already marked has its ancestors marked.
    pub(super) fn mark_ancestors(
        &mut self,
        made: &mut std::collections::HashSet<super::safe::CleanPath>,
        path: &super::safe::CleanPath,
    ) -> Result<(), super::safe::EntryError> {
        for n in (1..path.comps().len()).rev() {
            let above = path.prefix(n);
            if made.contains(&above) {
                break;
            }
            self.remember(&above)?;
            made.insert(above);
        }
        Ok(())
    }

    /// Count a remembered path against `limits.max_bookkeeping`.
    pub(super) fn remember(
        &mut self,
        path: &super::safe::CleanPath,
    ) -> Result<(), super::safe::EntryError> {
        let cost: usize = path
            .comps()
            .iter()
            .map(|c| c.as_bytes().len() + PATH_COMPONENT_COST)
            .sum();
        self.book = self.book.saturating_add(cost);
        if self.book > self.limits.max_bookkeeping {
            return Err(bookkeeping_exceeded(self.limits.max_bookkeeping).into());
        }
        Ok(())
    }
}
