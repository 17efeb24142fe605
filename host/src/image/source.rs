//! The `[vm] image` string, with skopeo's transport names: `oci:`,
//! `oci-archive:`, `docker-archive:`, `docker://`, plus our `rootfs:` and
//! `initramfs:`, or a bare path (or registry reference) recognised by
//! what it is.
//!
//! As in skopeo, `TRANSPORT:PATH:REF` splits at the first colon after the
//! transport: a path cannot hold a colon, a reference (`name:tag`) can.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::ImageError;

/// Where a bottle's root comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageSource {
    /// An OCI image layout directory, and a tag
    /// (`org.opencontainers.image.ref.name`).
    Oci {
        /// The layout directory.
        path: PathBuf,
        /// The tag; `None`: the index's only manifest.
        tag: Option<String>,
    },
    /// A tar of an OCI image layout.
    OciArchive {
        /// The tar file.
        path: PathBuf,
        /// The tag; `None`: the index's only manifest.
        tag: Option<String>,
    },
    /// A `docker save` / `podman save` tar.
    DockerArchive {
        /// The tar file.
        path: PathBuf,
        /// `name:tag` among its `RepoTags`; `None`: its only image.
        reference: Option<String>,
    },
    /// A plain root directory, used as is.
    Rootfs(PathBuf),
    /// A cpio initramfs, booted as is (not prepared).
    Initramfs(PathBuf),
    /// An image in a registry.
    Registry(RegistryRef),
}

/// `docker://REGISTRY/NAME[:TAG|@DIGEST]`, normalised as Docker does
/// (`debian` is `docker.io/library/debian:latest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    /// `docker.io`, `ghcr.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// `library/debian`.
    pub repository: String,
    /// The tag (`latest` when neither tag nor digest is given).
    pub tag: Option<String>,
    /// `sha256:<hex>`.
    pub digest: Option<String>,
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with = |f: &mut fmt::Formatter<'_>, t: &str, p: &Path, r: &Option<String>| {
            write!(f, "{t}:{}", p.display())?;
            match r {
                Some(r) => write!(f, ":{r}"),
                None => Ok(()),
            }
        };
        match self {
            ImageSource::Oci { path, tag } => with(f, "oci", path, tag),
            ImageSource::OciArchive { path, tag } => with(f, "oci-archive", path, tag),
            ImageSource::DockerArchive { path, reference } => {
                with(f, "docker-archive", path, reference)
            }
            ImageSource::Rootfs(p) => write!(f, "rootfs:{}", p.display()),
            ImageSource::Initramfs(p) => write!(f, "initramfs:{}", p.display()),
            ImageSource::Registry(r) => write!(f, "docker://{r}"),
        }
    }
}

const SYNTAX: &str = "expected oci:PATH[:TAG], oci-archive:PATH[:TAG], \
    docker-archive:PATH[:NAME:TAG], rootfs:PATH, initramfs:PATH, \
    docker://REGISTRY/NAME[:TAG|@sha256:HEX], or the path of an OCI layout, \
    root directory, initramfs or image tar";

/// `p` relative to `base_dir`; `~/…` is under `$HOME` (as in `[[mounts]]`).
fn join(base_dir: &Path, p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => base_dir.join(p),
    }
}

fn syntax(input: &str, reason: impl Into<String>) -> ImageError {
    ImageError::Syntax {
        input: input.to_string(),
        reason: reason.into(),
    }
}

impl ImageSource {
    /// Parse a `[vm] image` string; relative paths resolve against
    /// `base_dir` (the manifest's directory). A bare path is looked at to
    /// tell what it is.
    pub fn parse(s: &str, base_dir: &Path) -> Result<ImageSource, ImageError> {
        if s.is_empty() {
            return Err(syntax(s, format!("empty; {SYNTAX}")));
        }
        if let Some(rest) = s.strip_prefix("docker://") {
            return parse_registry(s, rest).map(ImageSource::Registry);
        }
        let split = |rest: &str| -> Result<(PathBuf, Option<String>), ImageError> {
            let (p, r) = match rest.split_once(':') {
                Some((p, r)) => (p, Some(r)),
                None => (rest, None),
            };
            if p.is_empty() {
                return Err(syntax(s, format!("no path; {SYNTAX}")));
            }
            if r == Some("") {
                return Err(syntax(s, "empty reference after the path"));
            }
            Ok((join(base_dir, p), r.map(str::to_string)))
        };
        if let Some((transport, rest)) = s.split_once(':') {
            match transport {
                "oci" => {
                    let (path, tag) = split(rest)?;
                    return Ok(ImageSource::Oci { path, tag });
                }
                "oci-archive" => {
                    let (path, tag) = split(rest)?;
                    return Ok(ImageSource::OciArchive { path, tag });
                }
                "docker-archive" => {
                    let (path, reference) = split(rest)?;
                    return Ok(ImageSource::DockerArchive { path, reference });
                }
                "rootfs" | "initramfs" => {
                    if rest.is_empty() {
                        return Err(syntax(s, format!("no path; {SYNTAX}")));
                    }
                    let p = join(base_dir, rest);
                    return Ok(if transport == "rootfs" {
                        ImageSource::Rootfs(p)
                    } else {
                        ImageSource::Initramfs(p)
                    });
                }
                "docker" => {
                    return Err(syntax(
                        s,
                        "a registry reference is docker://REGISTRY/NAME[:TAG]",
                    ))
                }
                _ => {}
            }
        }
        bare(s, base_dir)
    }
}

/// A bare string: what the path is, else a registry reference.
fn bare(s: &str, base_dir: &Path) -> Result<ImageSource, ImageError> {
    let path = join(base_dir, s);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => {
            if path.join("oci-layout").is_file() {
                Ok(ImageSource::Oci { path, tag: None })
            } else {
                Ok(ImageSource::Rootfs(path))
            }
        }
        Ok(m) if m.is_file() => sniff_file(s, path),
        Ok(_) => Err(syntax(
            s,
            format!("{} is neither a file nor a directory", path.display()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if looks_like_reference(s) {
                parse_registry(s, s).map(ImageSource::Registry)
            } else {
                Err(syntax(
                    s,
                    format!("{} does not exist; {SYNTAX}", path.display()),
                ))
            }
        }
        Err(e) => Err(ImageError::io(format!("image {}", path.display()), e)),
    }
}

/// The magic number of LZ4's legacy frame (`lz4 -l`).
const LZ4_LEGACY: &[u8] = &[0x02, 0x21, 0x4c, 0x18];

fn sniff_file(s: &str, path: PathBuf) -> Result<ImageSource, ImageError> {
    let mut head = [0u8; 512];
    let n = std::fs::File::open(&path)
        .and_then(|f| read_up_to(f, &mut head))
        .map_err(|e| ImageError::io(format!("image {}", path.display()), e))?;
    let head = &head[..n];
    // A cpio, or one compressed as `images/build.sh` writes it (LZ4's
    // legacy frame, which the kernel unpacks).
    if head.starts_with(b"070701") || head.starts_with(b"070702") || head.starts_with(LZ4_LEGACY) {
        return Ok(ImageSource::Initramfs(path));
    }
    if head.get(257..262) == Some(b"ustar") {
        let index = super::archive::TarIndex::read(&path)?;
        if index.contains("manifest.json") {
            return Ok(ImageSource::DockerArchive {
                path,
                reference: None,
            });
        }
        if index.contains("index.json") {
            return Ok(ImageSource::OciArchive { path, tag: None });
        }
        return Err(syntax(
            s,
            "a tar with neither manifest.json (docker save) nor index.json (OCI layout)",
        ));
    }
    Err(syntax(
        s,
        format!(
            "{} is not an initramfs (cpio) or image tar; {SYNTAX}",
            path.display()
        ),
    ))
}

fn read_up_to(mut r: impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// `name:tag`, `host/name`, `name@sha256:…`: no leading `.` or `/`, only
/// reference characters, and a `:`, `/` or `@`.
fn looks_like_reference(s: &str) -> bool {
    !s.starts_with(['.', '/', '-'])
        && s.contains([':', '/', '@'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b))
}

fn parse_registry(input: &str, rest: &str) -> Result<RegistryRef, ImageError> {
    let bad = |why: &str| {
        syntax(
            input,
            format!("{why}; expected docker://REGISTRY/NAME[:TAG|@sha256:HEX]"),
        )
    };
    let (name, digest) = match rest.split_once('@') {
        Some((n, d)) => {
            super::blob::Digest::parse(d).map_err(|_| bad("the digest is not sha256:<64 hex>"))?;
            (n, Some(d.to_string()))
        }
        None => (rest, None),
    };
    // A tag is after the last colon that follows the last slash.
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (
            &name[..last_slash + i],
            Some(name[last_slash + i + 1..].to_string()),
        ),
        None => (name, None),
    };
    if let Some(t) = &tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            return Err(bad("bad tag"));
        }
    }
    let (registry, repo) = match name.split_once('/') {
        Some((first, more)) if first.contains(['.', ':']) || first == "localhost" => {
            (first.to_string(), more.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let repo = if registry == "docker.io" && !repo.contains('/') {
        format!("library/{repo}")
    } else {
        repo
    };
    let repo_ok = !repo.is_empty()
        && repo.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
    if !repo_ok || registry.is_empty() {
        return Err(bad("bad repository name"));
    }
    let tag = if tag.is_none() && digest.is_none() {
        Some("latest".to_string())
    } else {
        tag
    };
    Ok(RegistryRef {
        registry,
        repository: repo,
        tag,
        digest,
    })
}
