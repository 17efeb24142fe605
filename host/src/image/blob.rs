//! Digests, and a reader that hashes what passes through it and checks
//! size and digest at the end: every blob (manifest, config, layer) is read
//! through one, streamed, never whole in memory (except small JSON).

use std::io::{self, Read};

use ring::digest::{Context, SHA256};

use super::{ImageError, Progress};

/// Largest JSON blob (index, manifest, config) read into memory.
pub const MAX_JSON: u64 = 16 << 20;

/// A `sha256:<64 lowercase hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parse `sha256:<hex>`; other algorithms are refused.
    pub fn parse(s: &str) -> Result<Digest, ImageError> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| ImageError::Format(format!("digest {s:?}: only sha256 is supported")))?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ImageError::Format(format!(
                "digest {s:?}: not 64 lowercase hex digits"
            )));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest {
            hex: data_encoding::HEXLOWER.encode(ring::digest::digest(&SHA256, bytes).as_ref()),
        }
    }

    /// The 64 hex digits (safe as a file name).
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// What a blob must be: its digest (when known) and size (when known).
#[derive(Debug, Clone)]
pub struct Expect {
    /// A name for errors.
    pub name: String,
    pub digest: Option<Digest>,
    pub size: Option<u64>,
}

/// Hashes and counts what is read; at end of input, a size or digest
/// mismatch is an `InvalidData` error carrying an [`ImageError::Verify`]
/// message. Reading past the expected size is an error at once.
pub struct Verifying<'p, R> {
    inner: R,
    ctx: Context,
    read: u64,
    expect: Expect,
    progress: &'p dyn Progress,
    done: bool,
}

impl<'p, R: Read> Verifying<'p, R> {
    pub fn new(inner: R, expect: Expect, progress: &'p dyn Progress) -> Self {
        Verifying {
            inner,
            ctx: Context::new(&SHA256),
            read: 0,
            expect,
            progress,
            done: false,
        }
    }

    /// Read whatever is left (a layer's tar may end before its padding)
    /// and check; callers call this after consuming the content.
    pub fn finish(mut self) -> Result<(), ImageError> {
        let mut buf = [0u8; 8192];
        loop {
            match self.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(verify_error(&self.expect.name, e)),
            }
        }
    }

    fn check(&mut self) -> io::Result<()> {
        self.done = true;
        if let Some(size) = self.expect.size {
            if self.read != size {
                return Err(mismatch(format!("{} bytes, expected {size}", self.read)));
            }
        }
        if let Some(want) = &self.expect.digest {
            let got = data_encoding::HEXLOWER.encode(self.ctx.clone().finish().as_ref());
            if got != want.hex() {
                return Err(mismatch(format!("digest is sha256:{got}, expected {want}")));
            }
        }
        Ok(())
    }
}

/// Marker carried in an `io::Error` for a verification failure.
#[derive(Debug)]
pub struct Mismatch(pub String);

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Mismatch {}

fn mismatch(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Mismatch(reason))
}

/// An `io::Error` from a [`Verifying`] reader as an [`ImageError`]: a
/// mismatch becomes `Verify`, anything else (a truncated file) stays I/O.
pub fn verify_error(blob: &str, e: io::Error) -> ImageError {
    match mismatch_reason(&e) {
        Some(reason) => ImageError::Verify {
            blob: blob.to_string(),
            reason,
        },
        None => ImageError::io(format!("reading blob {blob}"), e),
    }
}

/// The mismatch text if `e` (or what it wraps) is one.
pub fn mismatch_reason(e: &io::Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|r| r as _);
    while let Some(err) = cur {
        if let Some(m) = err.downcast_ref::<Mismatch>() {
            return Some(m.0.clone());
        }
        cur = err.source();
    }
    None
}

impl<R: Read> Read for Verifying<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.check()?;
            return Ok(0);
        }
        let chunk = buf.get(..n).unwrap_or_default();
        self.ctx.update(chunk);
        self.read += n as u64;
        self.progress.advance(n as u64);
        if let Some(size) = self.expect.size {
            if self.read > size {
                self.done = true;
                return Err(mismatch(format!("more than the expected {size} bytes")));
            }
        }
        Ok(n)
    }
}

/// Read a small JSON blob whole, verified.
pub fn read_json_blob(r: impl Read, expect: Expect) -> Result<Vec<u8>, ImageError> {
    if expect.size.is_some_and(|s| s > MAX_JSON) {
        return Err(ImageError::Format(format!(
            "blob {}: {} bytes is too large for JSON metadata",
            expect.name,
            expect.size.unwrap_or_default()
        )));
    }
    let name = expect.name.clone();
    let mut v = Verifying::new(r.take(MAX_JSON + 1), expect, &super::NoProgress);
    let mut out = Vec::new();
    v.read_to_end(&mut out)
        .map_err(|e| verify_error(&name, e))?;
    if out.len() as u64 > MAX_JSON {
        return Err(ImageError::Format(format!(
            "blob {name}: too large for JSON metadata"
        )));
    }
    Ok(out)
}
