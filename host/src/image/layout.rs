//! Finding an image's manifest, config and layers: in an OCI image layout
//! (a directory, or a tar of one) by tag and platform, or in `docker
//! save`'s `manifest.json` by `RepoTags`. Only small JSON is read here;
//! layers are read later, and only when the digest is not cached.

use std::io::Read;
use std::path::PathBuf;

use super::archive::TarIndex;
use super::blob::{read_json_blob, Digest, Expect, MAX_JSON};
use super::source::ImageSource;
use super::spec::{self, Compression, Descriptor};
use super::ImageError;

/// Where blobs are read from.
#[derive(Debug)]
pub enum Store {
    Dir(PathBuf),
    Tar(TarIndex),
}

impl Store {
    /// A member (`blobs/sha256/<hex>`, `manifest.json`…) and its size.
    pub fn open(&self, rel: &str) -> Result<(Box<dyn Read + Send>, u64), ImageError> {
        match self {
            Store::Dir(dir) => {
                let p = dir.join(rel);
                let f = std::fs::File::open(&p)
                    .map_err(|e| ImageError::io(format!("blob {}", p.display()), e))?;
                let len = f
                    .metadata()
                    .map_err(|e| ImageError::io(format!("blob {}", p.display()), e))?
                    .len();
                Ok((Box::new(f), len))
            }
            Store::Tar(t) => t.open(rel).map(|(r, n)| (Box::new(r) as _, n)),
        }
    }

    fn read_small(&self, rel: &str) -> Result<Vec<u8>, ImageError> {
        let (r, _) = self.open(rel)?;
        read_json_blob(
            r,
            Expect {
                name: rel.to_string(),
                digest: None,
                size: None,
            },
        )
    }

    fn read_blob(&self, d: &Descriptor) -> Result<(Digest, Vec<u8>), ImageError> {
        let digest = Digest::parse(&d.digest)?;
        let (r, _) = self.open(&blob_path(&digest))?;
        let bytes = read_json_blob(r, expect(d, &digest))?;
        Ok((digest, bytes))
    }
}

pub fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn expect(d: &Descriptor, digest: &Digest) -> Expect {
    Expect {
        name: digest.to_string(),
        digest: Some(digest.clone()),
        size: Some(d.size),
    }
}

/// A blob to read: its member path and what it must be.
#[derive(Debug, Clone)]
pub struct BlobRef {
    pub path: String,
    pub expect: Expect,
}

/// A layer to apply.
#[derive(Debug, Clone)]
pub struct LayerRef {
    pub blob: BlobRef,
    pub compression: Compression,
    /// Check the uncompressed stream against the config's `diff_ids`
    /// (`docker save` layers carry no digest of their own).
    pub check_diff_id: bool,
}

/// An image located: its cache key, and how to read the rest.
#[derive(Debug)]
pub struct Resolved {
    pub digest: Digest,
    pub store: Store,
    pub config: BlobRef,
    pub layers: Vec<LayerRef>,
}

/// Locate `src`'s manifest (reading only small JSON).
pub fn resolve(src: &ImageSource) -> Result<Resolved, ImageError> {
    match src {
        ImageSource::Oci { path, tag } => {
            if !path.join("oci-layout").is_file() {
                return Err(ImageError::Format(format!(
                    "{}: not an OCI image layout (no oci-layout file)",
                    path.display()
                )));
            }
            oci(Store::Dir(path.clone()), tag.as_deref())
        }
        ImageSource::OciArchive { path, tag } => {
            let t = TarIndex::read(path)?;
            if !t.contains("oci-layout") {
                return Err(ImageError::Format(format!(
                    "{}: not an OCI archive (no oci-layout member)",
                    path.display()
                )));
            }
            oci(Store::Tar(t), tag.as_deref())
        }
        ImageSource::DockerArchive { path, reference } => {
            docker_archive(TarIndex::read(path)?, reference.as_deref())
        }
        other => Err(ImageError::Unsupported(format!(
            "{other}: nothing to unpack"
        ))),
    }
}

fn oci(store: Store, tag: Option<&str>) -> Result<Resolved, ImageError> {
    let index: spec::Index = spec::parse_json("index.json", &store.read_small("index.json")?)?;
    let tags: Vec<&str> = index
        .manifests
        .iter()
        .filter_map(|d| d.annotations.get(spec::REF_NAME).map(String::as_str))
        .collect();
    let listed = || {
        if tags.is_empty() {
            "it has no tags".to_string()
        } else {
            format!("its tags: {}", tags.join(", "))
        }
    };
    let candidates: Vec<&Descriptor> = match tag {
        Some(t) => {
            let c: Vec<_> = index
                .manifests
                .iter()
                .filter(|d| d.annotations.get(spec::REF_NAME).map(String::as_str) == Some(t))
                .collect();
            if c.is_empty() {
                return Err(ImageError::Format(format!(
                    "no tag {t:?} in the layout; {}",
                    listed()
                )));
            }
            c
        }
        None if index.manifests.len() == 1 => index.manifests.iter().collect(),
        None => {
            return Err(ImageError::Format(format!(
                "the layout holds {} manifests; name one as oci:PATH:TAG ({})",
                index.manifests.len(),
                listed()
            )))
        }
    };
    let desc = if candidates.len() == 1 {
        candidates[0].clone()
    } else {
        pick_platform(&candidates)?.clone()
    };
    let (digest, manifest) = follow(&store, &desc, 0)?;
    from_manifest(store, digest, &manifest)
}

/// The config and layers of `manifest` (whose digest is `digest`), their
/// media types checked, blobs at `blobs/sha256/<hex>` in `store`.
pub fn from_manifest(
    store: Store,
    digest: Digest,
    manifest: &spec::Manifest,
) -> Result<Resolved, ImageError> {
    if !matches!(
        manifest.config.media_type.as_str(),
        spec::OCI_CONFIG | spec::DOCKER_CONFIG
    ) {
        return Err(ImageError::MediaType {
            media_type: manifest.config.media_type.clone(),
            what: "image config".into(),
        });
    }
    let cfg_digest = Digest::parse(&manifest.config.digest)?;
    let config = BlobRef {
        path: blob_path(&cfg_digest),
        expect: expect(&manifest.config, &cfg_digest),
    };
    let mut layers = Vec::new();
    for l in &manifest.layers {
        let d = Digest::parse(&l.digest)?;
        layers.push(LayerRef {
            compression: spec::layer_compression(&l.media_type)?,
            blob: BlobRef {
                path: blob_path(&d),
                expect: expect(l, &d),
            },
            check_diff_id: false,
        });
    }
    Ok(Resolved {
        digest,
        store,
        config,
        layers,
    })
}

/// The media type of a manifest or index: its descriptor's, else its own
/// `mediaType`, else by shape.
pub fn media_type_of(declared: &str, bytes: &[u8]) -> Result<String, ImageError> {
    if !declared.is_empty() {
        return Ok(declared.to_string());
    }
    let probe: serde_json::Value = spec::parse_json("manifest", bytes)?;
    Ok(probe
        .get("mediaType")
        .and_then(|v| v.as_str())
        .unwrap_or(if probe.get("manifests").is_some() {
            spec::OCI_INDEX
        } else {
            spec::OCI_MANIFEST
        })
        .to_string())
}

/// Read `desc` (verified); an index is followed to this platform's entry.
fn follow(
    store: &Store,
    desc: &Descriptor,
    depth: u32,
) -> Result<(Digest, spec::Manifest), ImageError> {
    if depth > 2 {
        return Err(ImageError::Format("indexes nested too deep".into()));
    }
    if desc.size > MAX_JSON {
        return Err(ImageError::Format(format!(
            "manifest {}: too large",
            desc.digest
        )));
    }
    let (digest, bytes) = store.read_blob(desc)?;
    let mt = media_type_of(&desc.media_type, &bytes)?;
    match mt.as_str() {
        spec::OCI_INDEX | spec::DOCKER_LIST => {
            let idx: spec::Index = spec::parse_json(&format!("index {digest}"), &bytes)?;
            let refs: Vec<&Descriptor> = idx.manifests.iter().collect();
            let d = pick_platform(&refs)?.clone();
            follow(store, &d, depth + 1)
        }
        spec::OCI_MANIFEST | spec::DOCKER_MANIFEST => {
            let m: spec::Manifest = spec::parse_json(&format!("manifest {digest}"), &bytes)?;
            Ok((digest, m))
        }
        other => Err(ImageError::MediaType {
            media_type: other.to_string(),
            what: format!("manifest {digest}"),
        }),
    }
}

/// The `linux/<host arch>` entry of an index.
pub fn pick_platform<'a>(ds: &[&'a Descriptor]) -> Result<&'a Descriptor, ImageError> {
    let arch = spec::host_arch();
    if let Some(d) = ds.iter().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == arch)
    }) {
        return Ok(d);
    }
    let have: Vec<String> = ds
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| format!("{}/{}", p.os, p.architecture))
        .collect();
    Err(ImageError::Platform {
        image: if have.is_empty() {
            "for no stated platform".into()
        } else {
            have.join(", ")
        },
        host: format!("linux/{arch}"),
    })
}

/// `docker save`'s `manifest.json`. The cache key is the config's
/// digest (the image ID); layers are checked against its `diff_ids`.
fn docker_archive(t: TarIndex, reference: Option<&str>) -> Result<Resolved, ImageError> {
    let store = Store::Tar(t);
    let entries: Vec<spec::DockerArchiveEntry> =
        spec::parse_json("manifest.json", &store.read_small("manifest.json")?)?;
    let tags: Vec<&str> = entries
        .iter()
        .flat_map(|e| e.repo_tags.iter().flatten())
        .map(String::as_str)
        .collect();
    let entry = match reference {
        Some(r) => {
            let with_latest = format!("{r}:latest");
            entries
                .iter()
                .find(|e| {
                    e.repo_tags.iter().flatten().any(|t| {
                        t == r
                            || t == &with_latest
                            || t.strip_prefix("docker.io/library/") == Some(r)
                            || t.strip_prefix("localhost/") == Some(r)
                    })
                })
                .ok_or_else(|| {
                    ImageError::Format(format!(
                        "no image {r:?} in the archive; its tags: {}",
                        tags.join(", ")
                    ))
                })?
        }
        None if entries.len() == 1 => &entries[0],
        None => {
            return Err(ImageError::Format(format!(
            "the archive holds {} images; name one as docker-archive:PATH:NAME:TAG (its tags: {})",
            entries.len(),
            tags.join(", ")
        )))
        }
    };
    // The config's name carries its digest (`<hex>.json` or
    // `blobs/sha256/<hex>`); without one, the content is the ID.
    let cfg_name = entry.config.as_str();
    let stem = cfg_name
        .rsplit('/')
        .next()
        .unwrap_or(cfg_name)
        .trim_end_matches(".json");
    let named = Digest::parse(&format!("sha256:{stem}")).ok();
    let (r, size) = store.open(cfg_name)?;
    let bytes = read_json_blob(
        r,
        Expect {
            name: cfg_name.to_string(),
            digest: named.clone(),
            size: Some(size),
        },
    )?;
    let digest = named.unwrap_or_else(|| Digest::of(&bytes));
    let config = BlobRef {
        path: cfg_name.to_string(),
        expect: Expect {
            name: cfg_name.to_string(),
            digest: Some(digest.clone()),
            size: Some(size),
        },
    };
    let mut layers = Vec::new();
    for l in &entry.layers {
        let (_, size) = store.open(l)?;
        layers.push(LayerRef {
            blob: BlobRef {
                path: l.clone(),
                expect: Expect {
                    name: l.clone(),
                    digest: None,
                    size: Some(size),
                },
            },
            compression: Compression::Sniff,
            check_diff_id: true,
        });
    }
    Ok(Resolved {
        digest,
        store,
        config,
        layers,
    })
}
