//! Image tars (`oci-archive:`, `docker-archive:`) read in place: one pass
//! over the headers makes an index of member offsets, then members are
//! read with `pread`, never extracted. Symlink members (newer `docker
//! save` links `<id>/layer.tar` to `blobs/sha256/<hex>`) resolve inside
//! the archive only.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::ImageError;

#[derive(Debug, Clone)]
enum Member {
    File { offset: u64, size: u64 },
    Link(String),
}

/// The members of a tar file by name.
#[derive(Debug)]
pub struct TarIndex {
    file: Arc<File>,
    members: HashMap<String, Member>,
    name: String,
}

/// Member names as `a/b`: no leading `./` or `/`, no trailing `/`.
fn normalize(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

impl TarIndex {
    /// Index the tar at `path`.
    pub fn read(path: &Path) -> Result<TarIndex, ImageError> {
        let name = path.display().to_string();
        let ioe = |e| ImageError::io(format!("reading archive {name}"), e);
        let file = File::open(path).map_err(ioe)?;
        let mut ar = tar::Archive::new(file.try_clone().map_err(ioe)?);
        let mut members = HashMap::new();
        for entry in ar.entries_with_seek().map_err(ioe)? {
            let entry = entry.map_err(ioe)?;
            let Ok(p) = std::str::from_utf8(&entry.path_bytes()).map(normalize) else {
                continue;
            };
            let member = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let Some(t) = entry.link_name_bytes() else {
                        continue;
                    };
                    let Ok(t) = std::str::from_utf8(&t) else {
                        continue;
                    };
                    let target = if entry.header().entry_type() == tar::EntryType::Link
                        || t.starts_with('/')
                    {
                        normalize(t)
                    } else {
                        let dir = p.rsplit_once('/').map_or("", |(d, _)| d);
                        normalize(&format!("{dir}/{t}"))
                    };
                    Member::Link(target)
                }
                _ => continue,
            };
            members.insert(p, member);
        }
        Ok(TarIndex {
            file: Arc::new(file),
            members,
            name,
        })
    }

    /// Whether the archive has a member `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.members.contains_key(&normalize(name))
    }

    /// A reader of member `name` and its size (links followed, at most 8).
    pub fn open(&self, name: &str) -> Result<(MemberReader, u64), ImageError> {
        let mut cur = normalize(name);
        for _ in 0..8 {
            match self.members.get(&cur) {
                Some(Member::File { offset, size }) => {
                    let r = MemberReader {
                        file: self.file.clone(),
                        pos: *offset,
                        end: offset.saturating_add(*size),
                    };
                    return Ok((r, *size));
                }
                Some(Member::Link(t)) => cur = t.clone(),
                None => break,
            }
        }
        Err(ImageError::Format(format!(
            "archive {}: no file {name:?}",
            self.name
        )))
    }
}

/// Reads one member's bytes with `pread`.
pub struct MemberReader {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for MemberReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive is truncated",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}
