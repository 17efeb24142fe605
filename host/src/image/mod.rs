//! PLACEHOLDER until the `img` branch lands: only `rootfs:` and
//! `initramfs:`; replaced wholesale by the real module.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    #[error("{0}")]
    Unsupported(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum ImageSource {
    Initramfs(PathBuf),
    Rootfs(PathBuf),
}

impl ImageSource {
    pub fn parse(s: &str, base: &Path) -> Result<ImageSource, ImageError> {
        let rel = |p: &str| base.join(p);
        if let Some(p) = s.strip_prefix("rootfs:") {
            return Ok(ImageSource::Rootfs(rel(p)));
        }
        if let Some(p) = s.strip_prefix("initramfs:") {
            return Ok(ImageSource::Initramfs(rel(p)));
        }
        let p = rel(s);
        if p.is_dir() {
            Ok(ImageSource::Rootfs(p))
        } else {
            Ok(ImageSource::Initramfs(p))
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

pub struct PreparedImage {
    pub root: PathBuf,
    pub digest: String,
    pub config: ImageConfig,
}

pub trait Progress {}
pub struct NoProgress;
impl Progress for NoProgress {}

pub fn prepare(
    src: &ImageSource,
    _state: &Path,
    _p: &dyn Progress,
) -> Result<PreparedImage, ImageError> {
    match src {
        ImageSource::Rootfs(p) => Ok(PreparedImage {
            root: p
                .canonicalize()
                .map_err(|e| ImageError::Unsupported(e.to_string()))?,
            digest: format!("dir:{}", p.display()),
            config: ImageConfig::default(),
        }),
        ImageSource::Initramfs(_) => Err(ImageError::Unsupported("initramfs".into())),
    }
}
