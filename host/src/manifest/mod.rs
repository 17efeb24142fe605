//! `bottle.toml`: the one file a user writes.
//!
//! Read in two steps (see `../../shared/STYLE.md`): [`raw`] mirrors the TOML
//! with unknown keys refused, then [`validate`] checks every value and
//! builds the typed [`Manifest`]. Every error names the file, the line and
//! the key. The format is documented in `docs/manifest.md`.

mod describe;
mod mounts;
pub mod pattern;
mod raw;
mod types;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use pattern::{is_ip_literal, normalize_name, HostPattern, NameError};
pub use types::*;

/// A manifest could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML, or a key that does not belong, or a wrong type.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// The parser's message (names the key).
        message: String,
    },
    /// A value that parses but is not allowed.
    #[error("{file}:{line}: {key}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// Dotted key, e.g. `egress.routes[0].host`.
        key: String,
        /// What is wrong and what to write instead.
        message: String,
    },
    /// A secret's value could not be loaded on the host.
    #[error("{file}: secrets.{name}: {message}")]
    Secret {
        /// The file.
        file: String,
        /// The secret's name.
        name: String,
        /// Why.
        message: String,
    },
}

/// Largest manifest accepted, bytes.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// Read and validate the manifest at `path`.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let read_err = |source| ManifestError::Read {
        file: path.display().to_string(),
        source,
    };
    let src = read_bounded(path, MAX_MANIFEST_BYTES).map_err(read_err)?;
    parse(&src, path)
}

/// Longest secret value read from a file.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Shortest secret value: a shorter one would be found in ordinary text
/// (every request refused, every response redacted) while protecting
/// almost nothing.
pub const MIN_SECRET_BYTES: usize = 8;

/// Read the text at `path`, at most `max` bytes. Opened without blocking,
/// so a named pipe nobody writes to reads as empty instead of hanging;
/// a pipe that is written to (`<(…)`) is read as it comes, and a device
/// that never ends (`/dev/zero`) stops at the limit.
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    // Reads block again (a pipe's writer may be slow).
    let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) & !nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    let mut buf = Vec::new();
    file.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    String::from_utf8(buf)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Validate manifest text; `path` is used in errors and to resolve
/// relative paths.
pub fn parse(src: &str, path: &Path) -> Result<Manifest, ManifestError> {
    let cx = validate::Ctx { file: path, src };
    let raw: raw::RawManifest = toml::from_str(src).map_err(|e| {
        let line = e.span().map(|s| cx.line(s.start)).unwrap_or(1);
        ManifestError::Syntax {
            file: path.display().to_string(),
            line,
            message: e.message().trim().to_string(),
        }
    })?;
    validate::manifest(&cx, raw)
}

/// One secret's value, loaded on the host. Never sent to the guest.
#[derive(Clone)]
pub struct Secret {
    /// Its name in `[secrets]`.
    pub name: String,
    /// Its value.
    pub value: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({}, <{} bytes>)", self.name, self.value.len())
    }
}

impl Manifest {
    /// Load every secret's value from the host's environment or files.
    pub fn load_secrets(&self) -> Result<Vec<Secret>, ManifestError> {
        let mut out = Vec::new();
        for (name, source) in &self.secrets {
            let fail = |message: String| ManifestError::Secret {
                file: self.path.display().to_string(),
                name: name.clone(),
                message,
            };
            let value = match source {
                SecretSource::Env(var) => std::env::var(var)
                    .map_err(|_| fail(format!("environment variable {var} is not set")))?,
                SecretSource::File(p) => read_bounded(p, MAX_SECRET_BYTES)
                    .map_err(|e| fail(format!("cannot read {}: {e}", p.display())))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            };
            if value.is_empty() {
                return Err(fail("is empty".into()));
            }
            if value.len() < MIN_SECRET_BYTES {
                return Err(fail(format!(
                    "is shorter than {MIN_SECRET_BYTES} bytes: the proxy would find it in \
                     ordinary text (refusing requests, redacting answers) while it protects little"
                )));
            }
            out.push(Secret {
                name: name.clone(),
                value,
            });
        }
        Ok(out)
    }
}
