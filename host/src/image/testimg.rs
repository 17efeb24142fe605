//! Test images built in Rust: layers written entry by entry (raw names, so
//! hostile ones too), OCI layouts with correct digests, `docker save`
//! archives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tar::{EntryType, Header};

use super::blob::Digest;

pub const MTIME: u64 = 1_700_000_000;

/// A layer's tar, built entry by entry. Names are written as given (no
/// checks): `..` and absolute paths reach the reader.
pub struct Layer {
    b: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

fn long_entry(b: &mut tar::Builder<Vec<u8>>, kind: EntryType, value: &[u8]) {
    let mut h = Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    h.set_mode(0o644);
    h.set_entry_type(kind);
    let mut data = value.to_vec();
    data.push(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data.as_slice()).unwrap();
}

impl Layer {
    pub fn new() -> Layer {
        Layer {
            b: tar::Builder::new(Vec::new()),
        }
    }

    /// One entry with every field given.
    #[allow(clippy::too_many_arguments)]
    pub fn raw(
        mut self,
        path: &str,
        kind: EntryType,
        mode: u32,
        owner: (u64, u64),
        link: Option<&str>,
        data: &[u8],
        pax: &[(&str, &[u8])],
    ) -> Layer {
        if !pax.is_empty() {
            self.b.append_pax_extensions(pax.iter().copied()).unwrap();
        }
        let p = path.as_bytes();
        if p.len() > 100 {
            long_entry(&mut self.b, EntryType::GNULongName, p);
        }
        let mut h = Header::new_gnu();
        let n = p.len().min(100);
        h.as_gnu_mut().unwrap().name[..n].copy_from_slice(&p[..n]);
        if let Some(l) = link {
            let l = l.as_bytes();
            if l.len() > 100 {
                long_entry(&mut self.b, EntryType::GNULongLink, l);
            }
            let n = l.len().min(100);
            h.as_gnu_mut().unwrap().linkname[..n].copy_from_slice(&l[..n]);
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_mtime(MTIME);
        h.set_size(data.len() as u64);
        if matches!(kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn file(self, path: &str, data: &str, mode: u32) -> Layer {
        self.raw(
            path,
            EntryType::Regular,
            mode,
            (0, 0),
            None,
            data.as_bytes(),
            &[],
        )
    }

    pub fn owned(self, path: &str, data: &str, mode: u32, uid: u64, gid: u64) -> Layer {
        self.raw(
            path,
            EntryType::Regular,
            mode,
            (uid, gid),
            None,
            data.as_bytes(),
            &[],
        )
    }

    pub fn dir(self, path: &str, mode: u32) -> Layer {
        self.raw(path, EntryType::Directory, mode, (0, 0), None, b"", &[])
    }

    pub fn symlink(self, path: &str, target: &str) -> Layer {
        self.raw(
            path,
            EntryType::Symlink,
            0o777,
            (0, 0),
            Some(target),
            b"",
            &[],
        )
    }

    pub fn hardlink(self, path: &str, target: &str) -> Layer {
        self.raw(path, EntryType::Link, 0o644, (0, 0), Some(target), b"", &[])
    }

    pub fn fifo(self, path: &str) -> Layer {
        self.raw(path, EntryType::Fifo, 0o640, (0, 0), None, b"", &[])
    }

    pub fn chardev(self, path: &str) -> Layer {
        self.raw(path, EntryType::Char, 0o666, (0, 0), None, b"", &[])
    }

    pub fn tar(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

/// Layer compression in a test image.
#[derive(Debug, Clone, Copy)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

/// A layer's blob and media type.
pub fn blob(tar: Vec<u8>, c: Comp) -> (Vec<u8>, String) {
    let base = "application/vnd.oci.image.layer.v1.tar";
    match c {
        Comp::None => (tar, base.into()),
        Comp::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar).unwrap();
            (e.finish().unwrap(), format!("{base}+gzip"))
        }
        Comp::Zstd => (
            zstd::encode_all(tar.as_slice(), 1).unwrap(),
            format!("{base}+zstd"),
        ),
    }
}

/// An image config for `arch` with `config` as its `config` object.
pub fn config(arch: &str, config: Value, diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": arch, "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

pub fn digest(b: &[u8]) -> String {
    Digest::of(b).to_string()
}

/// An OCI image layout being written.
pub struct Layout {
    pub dir: PathBuf,
    index: Vec<Value>,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let l = Layout {
            dir: dir.to_path_buf(),
            index: Vec::new(),
        };
        l.write_index();
        l
    }

    /// Store a blob; its descriptor.
    pub fn blob(&self, bytes: &[u8], media_type: &str) -> Value {
        let d = Digest::of(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
        json!({"mediaType": media_type, "digest": d.to_string(), "size": bytes.len()})
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// A manifest for `layers` (blob, media type) with this config; its
    /// descriptor (not yet in the index).
    /// A config whose `rootfs.diff_ids` is empty gets one per layer (the
    /// blob's digest: an OCI image's layers are checked by their
    /// descriptors, only the count of `diff_ids` is).
    pub fn manifest(&self, config: &[u8], layers: &[(Vec<u8>, String)]) -> Value {
        let mut c: Value = serde_json::from_slice(config).unwrap();
        if c["rootfs"]["diff_ids"]
            .as_array()
            .is_some_and(Vec::is_empty)
        {
            let ids: Vec<String> = layers.iter().map(|(b, _)| digest(b)).collect();
            c["rootfs"]["diff_ids"] = json!(ids);
        }
        let config = serde_json::to_vec(&c).unwrap();
        let cfg = self.blob(&config, "application/vnd.oci.image.config.v1+json");
        let ls: Vec<Value> = layers.iter().map(|(b, mt)| self.blob(b, mt)).collect();
        let m = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": cfg, "layers": ls});
        self.blob(
            &serde_json::to_vec(&m).unwrap(),
            "application/vnd.oci.image.manifest.v1+json",
        )
    }

    /// Add a descriptor to index.json, tagged, with a platform.
    pub fn add(&mut self, mut desc: Value, tag: Option<&str>, platform: Option<&str>) -> String {
        if let Some(t) = tag {
            desc["annotations"] = json!({"org.opencontainers.image.ref.name": t});
        }
        if let Some(a) = platform {
            desc["platform"] = json!({"architecture": a, "os": "linux"});
        }
        let d = desc["digest"].as_str().unwrap().to_string();
        self.index.push(desc);
        self.write_index();
        d
    }

    /// A simple image (amd64, uncompressed layers from tars) under `tag`;
    /// the manifest digest.
    pub fn simple(&mut self, tag: Option<&str>, layers: Vec<Vec<u8>>) -> String {
        let ls: Vec<_> = layers.into_iter().map(|t| blob(t, Comp::None)).collect();
        let m = self.manifest(&config("amd64", json!({}), &[]), &ls);
        self.add(m, tag, None)
    }

    fn write_index(&self) {
        let i = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": self.index});
        std::fs::write(self.dir.join("index.json"), serde_json::to_vec(&i).unwrap()).unwrap();
    }
}

/// A `docker save` tar: `manifest.json`, `<hex>.json`, `<n>/layer.tar`
/// (gzipped when `gzip`).
pub fn docker_archive(path: &Path, tag: &str, layers: &[Vec<u8>], gzip: bool) {
    docker_archive_listing(path, tag, layers, gzip, layers.len());
}

/// [`docker_archive`] whose `manifest.json` lists (and holds) only the
/// first `listed` layers; the config names them all.
pub fn docker_archive_listing(
    path: &Path,
    tag: &str,
    layers: &[Vec<u8>],
    gzip: bool,
    listed: usize,
) {
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    let cfg = config("amd64", json!({"Cmd": ["/bin/sh"]}), &diff_ids);
    let cfg_name = format!("{}.json", Digest::of(&cfg).hex());
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    };
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate().take(listed) {
        let name = format!("{i}/layer.tar");
        let data = if gzip {
            blob(l.clone(), Comp::Gzip).0
        } else {
            l.clone()
        };
        add(&name, &data);
        names.push(name);
    }
    add(&cfg_name, &cfg);
    let m = json!([{"Config": cfg_name, "RepoTags": [tag], "Layers": names}]);
    add("manifest.json", &serde_json::to_vec(&m).unwrap());
    std::fs::write(path, b.into_inner().unwrap()).unwrap();
}

/// A tar of the directory `dir` (for `oci-archive:`).
pub fn tar_dir(dir: &Path, out: &Path) {
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}
