//! The image cache: `<state>/images/sha256/<hex>/{rootfs/,config.json}`,
//! keyed by manifest digest. An image is unpacked into
//! `<state>/images/tmp/<random>/` and renamed into place only when
//! complete; if a parallel launch got there first, its copy is kept and
//! ours removed. Every directory is `0700`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::blob::{read_json_blob, verify_error, Digest, Expect, Verifying};
use super::layout::{LayerRef, Resolved, Store};
use super::spec::{self, Compression, ImageConfig};
use super::unpack::{remove_tree, Unpacker};
use super::{ImageError, ImageSource, NoProgress, PreparedImage, Progress};

/// Temporary unpack directories older than this are a crashed run's.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// One cached image, as `image ls` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CachedImage {
    /// `sha256:<hex>`.
    pub digest: String,
    /// The `[vm] image` source it was first prepared from.
    pub source: String,
    /// Bytes of regular files in its root, plus the disk space of its ext4
    /// image when one was made (`BOTTLE_ROOT_DELIVERY=ext4`).
    pub size_bytes: u64,
    /// When it was unpacked (seconds since the epoch).
    pub created: u64,
}

/// `config.json` beside `rootfs/`.
#[derive(Debug, Serialize, Deserialize)]
struct CacheMeta {
    digest: String,
    source: String,
    architecture: String,
    size_bytes: u64,
    created: u64,
    config: ImageConfig,
}

/// `<state>/images`.
pub struct Images {
    dir: PathBuf,
}

fn private(p: &Path) -> Result<(), ImageError> {
    crate::hardening::private_dir(p).map_err(|e| ImageError::Format(e.to_string()))
}

impl Images {
    /// Open (creating, `0700`) the cache under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Images, ImageError> {
        let dir = state_dir.join("images");
        for d in [dir.clone(), dir.join("sha256"), dir.join("tmp")] {
            private(&d)?;
        }
        Ok(Images { dir })
    }

    /// Remove `tmp/*` left by runs that died more than an hour ago.
    pub fn clean_stale_tmp(&self) {
        let Ok(rd) = std::fs::read_dir(self.dir.join("tmp")) else {
            return;
        };
        let now = SystemTime::now();
        for e in rd.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_TMP);
            if old {
                if let Err(err) = remove_tree(&e.path()) {
                    tracing::warn!("removing stale {}: {err}", e.path().display());
                }
            }
        }
    }

    fn entry(&self, d: &Digest) -> PathBuf {
        self.dir.join("sha256").join(d.hex())
    }

    /// The cached image, if complete.
    pub(super) fn load(&self, d: &Digest) -> Option<PreparedImage> {
        let dir = self.entry(d);
        let meta: CacheMeta =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).ok()?).ok()?;
        let root = dir.join("rootfs");
        root.is_dir().then(|| PreparedImage {
            root,
            digest: d.to_string(),
            config: meta.config,
        })
    }

    /// A new private directory under `tmp/`.
    pub(super) fn new_tmp(&self) -> Result<PathBuf, ImageError> {
        let tmp = self.dir.join("tmp").join(random_name());
        private(&tmp)?;
        Ok(tmp)
    }

    /// The cached copy of `r`, or unpack it now.
    pub fn get_or_unpack(
        &self,
        src: &ImageSource,
        r: Resolved,
        progress: &dyn Progress,
    ) -> Result<PreparedImage, ImageError> {
        if let Some(p) = self.load(&r.digest) {
            tracing::debug!("image {} is cached", r.digest);
            return Ok(p);
        }
        let final_dir = self.entry(&r.digest);
        if final_dir.exists() {
            // Not complete (tampered with or damaged): start again.
            remove_tree(&final_dir)
                .map_err(|e| ImageError::io(format!("removing {}", final_dir.display()), e))?;
        }
        let tmp = self.new_tmp()?;
        let made = unpack_into(&tmp, src, &r, progress);
        if let Err(e) = made {
            if let Err(rm) = remove_tree(&tmp) {
                tracing::warn!("removing {}: {rm}", tmp.display());
            }
            return Err(e);
        }
        match std::fs::rename(&tmp, &final_dir) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => {
                tracing::debug!(
                    "image {} was unpacked meanwhile; keeping that copy",
                    r.digest
                );
                remove_tree(&tmp)
                    .map_err(|e| ImageError::io(format!("removing {}", tmp.display()), e))?;
            }
            Err(e) => {
                let _ = remove_tree(&tmp);
                return Err(ImageError::io(
                    format!("moving the image to {}", final_dir.display()),
                    e,
                ));
            }
        }
        self.load(&r.digest).ok_or_else(|| {
            ImageError::Format(format!("{}: incomplete cache entry", final_dir.display()))
        })
    }
}

fn random_name() -> String {
    let mut b = [0u8; 8];
    // Failing the system RNG leaves zeros: the name then only needs to
    // differ from a concurrent run's, which `private` would notice.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    data_encoding::HEXLOWER.encode(&b)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Read the config, apply every layer into `tmp/rootfs`, write
/// `tmp/config.json`.
fn unpack_into(
    tmp: &Path,
    src: &ImageSource,
    r: &Resolved,
    progress: &dyn Progress,
) -> Result<(), ImageError> {
    let (cr, _) = r.store.open(&r.config.path)?;
    let checked = spec::check_config(&read_json_blob(cr, r.config.expect.clone())?)?;
    let rootfs = tmp.join("rootfs");
    std::fs::create_dir(&rootfs)
        .map_err(|e| ImageError::io(format!("creating {}", rootfs.display()), e))?;
    let total = r.layers.len();
    // The cache key names the config (docker-archive) or a manifest that
    // names it: an image with fewer (or more) layers than the config's
    // `diff_ids` would be cached under the key of a different root.
    if checked.diff_ids.len() != total {
        return Err(ImageError::Format(format!(
            "the image config lists {} layers (rootfs.diff_ids), the {} {total}",
            checked.diff_ids.len(),
            if r.layers.iter().any(|l| l.check_diff_id) {
                "archive's manifest.json"
            } else {
                "manifest"
            }
        )));
    }
    let mut u = Unpacker::new(&rootfs)?;
    for (i, l) in r.layers.iter().enumerate() {
        let diff_id = match (l.check_diff_id, checked.diff_ids.get(i)) {
            (true, Some(d)) => Some(Digest::parse(d)?),
            _ => None,
        };
        progress.begin(
            &format!("layer {}/{total} {}", i + 1, short(&l.blob.expect.name)),
            l.blob.expect.size,
        );
        apply(&mut u, &r.store, l, diff_id, progress)?;
        progress.finish();
    }
    let stats = u.finish()?;
    let meta = CacheMeta {
        digest: r.digest.to_string(),
        source: src.to_string(),
        architecture: checked.architecture,
        size_bytes: stats.bytes,
        created: now_secs(),
        config: checked.config,
    };
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| ImageError::Format(e.to_string()))?;
    std::fs::write(tmp.join("config.json"), json)
        .map_err(|e| ImageError::io("writing the image's config.json", e))
}

fn short(name: &str) -> &str {
    let n = name.strip_prefix("sha256:").unwrap_or(name);
    n.get(..12).unwrap_or(n)
}

/// One layer: read (hashed), decompressed, checked, applied.
fn apply(
    u: &mut Unpacker,
    store: &Store,
    l: &LayerRef,
    diff_id: Option<Digest>,
    progress: &dyn Progress,
) -> Result<(), ImageError> {
    let name = l.blob.expect.name.clone();
    let (r, _) = store.open(&l.blob.path)?;
    let mut raw = Verifying::new(r, l.blob.expect.clone(), progress);
    {
        let mut br = BufReader::with_capacity(256 << 10, &mut raw);
        let comp = match l.compression {
            Compression::Sniff => {
                let head = br.fill_buf().map_err(|e| verify_error(&name, e))?;
                if head.starts_with(&[0x1f, 0x8b]) {
                    Compression::Gzip
                } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                    Compression::Zstd
                } else {
                    Compression::None
                }
            }
            c => c,
        };
        let dec: Box<dyn Read + '_> = match comp {
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(br)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(br)
                    .map_err(|e| ImageError::io(format!("layer {name}"), e))?,
            ),
            _ => Box::new(br),
        };
        let expect = Expect {
            name: name.clone(),
            digest: diff_id,
            size: None,
        };
        let mut inner = Verifying::new(dec, expect, &NoProgress);
        u.apply_layer(&name, &mut inner)?;
        inner.finish()?;
    }
    raw.finish()
}

fn read_meta(dir: &Path) -> Option<CacheMeta> {
    serde_json::from_slice(&std::fs::read(dir.join("config.json")).ok()?).ok()
}

/// The cached images, newest first.
pub fn list(state_dir: &Path) -> Vec<CachedImage> {
    let Ok(rd) = std::fs::read_dir(state_dir.join("images").join("sha256")) else {
        return Vec::new();
    };
    let mut v: Vec<CachedImage> = rd
        .flatten()
        .filter_map(|e| Some((read_meta(&e.path())?, e.path())))
        .map(|(m, dir)| {
            use std::os::unix::fs::MetadataExt;
            let disk = std::fs::metadata(dir.join(crate::image::disk::FILE_NAME))
                .map_or(0, |d| d.blocks() * 512);
            CachedImage {
                digest: m.digest,
                source: m.source,
                size_bytes: m.size_bytes + disk,
                created: m.created,
            }
        })
        .collect();
    v.sort_by(|a, b| b.created.cmp(&a.created).then(a.digest.cmp(&b.digest)));
    v
}

/// Remove one cached image by digest or unique prefix (`sha256:` optional);
/// returns its digest.
pub fn remove(state_dir: &Path, digest_or_prefix: &str) -> Result<String, ImageError> {
    let want = digest_or_prefix
        .strip_prefix("sha256:")
        .unwrap_or(digest_or_prefix);
    if want.is_empty() || !want.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ImageError::Format(format!(
            "{digest_or_prefix:?} is not a digest or its hex prefix"
        )));
    }
    let dir = state_dir.join("images").join("sha256");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    let hits: Vec<&String> = names.iter().filter(|n| n.starts_with(want)).collect();
    match hits.as_slice() {
        [one] => {
            remove_entry(state_dir, one)?;
            Ok(format!("sha256:{one}"))
        }
        [] => Err(ImageError::Format(format!(
            "no cached image {digest_or_prefix}"
        ))),
        many => Err(ImageError::Format(format!(
            "{digest_or_prefix} matches {} cached images; give more digits",
            many.len()
        ))),
    }
}

/// Remove every cached image whose digest is not in `keep`; returns the
/// digests removed.
pub fn prune(state_dir: &Path, keep: &[String]) -> Result<Vec<String>, ImageError> {
    let keep: Vec<&str> = keep
        .iter()
        .map(|k| k.strip_prefix("sha256:").unwrap_or(k))
        .collect();
    let dir = state_dir.join("images").join("sha256");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for e in rd.flatten() {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if !keep.contains(&name.as_str()) {
            remove_entry(state_dir, &name)?;
            removed.push(format!("sha256:{name}"));
        }
    }
    removed.sort();
    Ok(removed)
}

/// Move the entry to `tmp/` first (it disappears at once for readers),
/// then delete it.
fn remove_entry(state_dir: &Path, hex: &str) -> Result<(), ImageError> {
    let images = Images::open(state_dir)?;
    let from = images.dir.join("sha256").join(hex);
    let to = images.dir.join("tmp").join(random_name());
    std::fs::rename(&from, &to)
        .map_err(|e| ImageError::io(format!("removing {}", from.display()), e))?;
    remove_tree(&to).map_err(|e| ImageError::io(format!("removing {}", to.display()), e))
}
