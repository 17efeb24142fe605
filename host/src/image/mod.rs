//! OCI images as a bottle's root: `[vm] image` parsed ([`ImageSource`]),
//! read with every blob checked against its digest, unpacked safely on the
//! host (no entry can write outside the root) and cached by digest under
//! `<state>/images/`.
//!
//! - `source.rs`: the `[vm] image` string (skopeo's transport names).
//! - `spec.rs`: the OCI / Docker JSON shapes we read, and [`ImageConfig`].
//! - `blob.rs`: digests, and a reader that hashes while it reads.
//! - `layout.rs`: OCI image layouts (a directory, or inside a tar) and
//!   picking the manifest (tag, platform).
//! - `archive.rs`: tar archives read in place (an index of member
//!   offsets) and `docker save`'s `manifest.json`.
//! - `unpack/`: applying layers: `safe.rs` (path resolution with
//!   `openat2`, `*at` calls, reading an image's file safely),
//!   `whiteout.rs` (whiteouts, opaque directories, removing subtrees
//!   without following links), `limits.rs` (bytes, entries and header
//!   size per image).
//! - `registry.rs`: `docker://` images pulled (oci-client over rustls),
//!   blobs downloaded into `tmp/`, then unpacked as a layout's.
//! - `cache.rs`: `<state>/images/sha256/<hex>/`, `list`, `remove`, `prune`.
//! - `disk.rs`: the cached tree as a read-only ext4 disk image (the
//!   experimental block-device root).
//!
//! See docs/images.md, "OCI images".

use std::path::{Path, PathBuf};

mod archive;
pub mod bars;
mod blob;
mod cache;
pub mod disk;
mod layout;
mod registry;
mod source;
mod spec;
mod unpack;

#[cfg(test)]
mod testimg;
#[cfg(test)]
mod tests_hostile;
#[cfg(test)]
mod tests_limits;
#[cfg(test)]
mod tests_prepare;
#[cfg(test)]
mod tests_registry;
#[cfg(test)]
mod tests_source;
#[cfg(test)]
mod tests_unpack;

pub use cache::{list, prune, remove, CachedImage};
pub use source::{ImageSource, RegistryRef};
pub use spec::ImageConfig;
pub use unpack::read_file_beneath;

/// An image ready to be a bottle's root.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedImage {
    /// The unpacked root directory (callers use it read-only).
    pub root: PathBuf,
    /// `sha256:<hex>` of the manifest (of the config, the image ID, for a
    /// `docker save` archive without an OCI layout), or `dir:<path>` for
    /// `rootfs:`.
    pub digest: String,
    /// The image config's `config` object.
    pub config: ImageConfig,
}

/// Errors reading, checking or unpacking an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The `[vm] image` string is not understood.
    #[error("image {input:?}: {reason}")]
    Syntax {
        /// The string as given.
        input: String,
        /// What is wrong, and the syntax.
        reason: String,
    },
    /// An I/O error outside of a layer.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// A blob whose content does not match its descriptor.
    #[error("blob {blob}: {reason}; the image is damaged or was tampered with")]
    Verify {
        /// The blob (digest or file name).
        blob: String,
        /// Digest or size mismatch.
        reason: String,
    },
    /// Malformed or unexpected image metadata.
    #[error("{0}")]
    Format(String),
    /// A media type we do not read.
    #[error("unsupported media type {media_type:?} ({what})")]
    MediaType {
        /// The media type.
        media_type: String,
        /// Of what.
        what: String,
    },
    /// The image is for another platform.
    #[error("image is {image}; this host runs {host}")]
    Platform {
        /// The image's os/architecture.
        image: String,
        /// The host's.
        host: String,
    },
    /// A layer entry refused: it would write outside the root or is
    /// malformed.
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The layer's digest (or name).
        layer: String,
        /// The entry's path as in the archive.
        entry: String,
        /// Why.
        reason: String,
    },
    /// Writing an entry failed.
    #[error("{entry:?} while unpacking {layer}: {source}")]
    Unpack {
        /// The layer's digest (or name).
        layer: String,
        /// The entry's path as in the archive.
        entry: String,
        /// The error.
        source: std::io::Error,
    },
    /// The registry refused or failed.
    #[error("pulling {reference}: {reason}")]
    Registry {
        /// The image reference.
        reference: String,
        /// What went wrong.
        reason: String,
    },
    /// Not possible (yet) for this source.
    #[error("{0}")]
    Unsupported(String),
}

impl ImageError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ImageError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Progress of the slow steps (reading and applying layers).
pub trait Progress {
    /// A step starts; `total` is its size in bytes when known.
    fn begin(&self, step: &str, total: Option<u64>);
    /// `bytes` more bytes of the current step are done.
    fn advance(&self, bytes: u64);
    /// The current step is done.
    fn finish(&self);
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _step: &str, _total: Option<u64>) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
}

/// Make `src` ready as a root directory: unpack it into the cache under
/// `state_dir` (or reuse the cached copy), or, for `rootfs:`, use the
/// directory as is.
pub fn prepare(
    src: &ImageSource,
    state_dir: &Path,
    progress: &dyn Progress,
) -> Result<PreparedImage, ImageError> {
    match src {
        ImageSource::Rootfs(dir) => {
            let canon = std::fs::canonicalize(dir)
                .map_err(|e| ImageError::io(format!("rootfs {}", dir.display()), e))?;
            if !canon.is_dir() {
                return Err(ImageError::Format(format!(
                    "rootfs {}: not a directory",
                    canon.display()
                )));
            }
            Ok(PreparedImage {
                digest: format!("dir:{}", canon.display()),
                root: canon,
                config: ImageConfig::default(),
            })
        }
        ImageSource::Initramfs(p) => Err(ImageError::Unsupported(format!(
            "{} is an initramfs: it is booted as is, not prepared as a root directory",
            p.display()
        ))),
        ImageSource::Registry(r) => {
            let images = cache::Images::open(state_dir)?;
            images.clean_stale_tmp();
            registry::pull(src, r, &images, progress)
        }
        ImageSource::Oci { .. }
        | ImageSource::OciArchive { .. }
        | ImageSource::DockerArchive { .. } => {
            let images = cache::Images::open(state_dir)?;
            images.clean_stale_tmp();
            let resolved = layout::resolve(src)?;
            images.get_or_unpack(src, resolved, progress)
        }
    }
}
