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
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_MANIFEST_BYTES} bytes"),
        )));
    }
    let src = std::fs::read_to_string(path).map_err(read_err)?;
    parse(&src, path)
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
                SecretSource::File(p) => std::fs::read_to_string(p)
                    .map_err(|e| fail(format!("cannot read {}: {e}", p.display())))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            };
            if value.is_empty() {
                return Err(fail("is empty".into()));
            }
            out.push(Secret {
                name: name.clone(),
                value,
            });
        }
        Ok(out)
    }
}
