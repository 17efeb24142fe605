//! The JSON we read: OCI index and manifest (and Docker's schema 2
//! manifest and list, the same shape), the image config, `docker save`'s
//! `manifest.json`. Small serde structs with only the fields we use
//! (unknown fields are allowed: the formats grow).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ImageError;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A content descriptor.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

/// An OCI index or Docker manifest list.
#[derive(Debug, Deserialize)]
pub struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// An OCI image manifest or Docker schema 2 manifest.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// The image config blob.
#[derive(Debug, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<RawRunConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

#[derive(Debug, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRunConfig {
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

/// One image of `docker save`'s `manifest.json`.
#[derive(Debug, Deserialize)]
pub struct DockerArchiveEntry {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

/// What the bottle runs by default, from the image config's `config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `K=V`.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// The config blob parsed and checked against the host platform.
#[derive(Debug)]
pub struct CheckedConfig {
    pub config: ImageConfig,
    pub architecture: String,
    pub diff_ids: Vec<String>,
}

/// The host's OCI architecture name.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

pub fn parse_json<'a, T: Deserialize<'a>>(what: &str, bytes: &'a [u8]) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::Format(format!("{what}: {e}")))
}

/// Parse the config blob; an image for another OS or architecture is
/// refused.
pub fn check_config(bytes: &[u8]) -> Result<CheckedConfig, ImageError> {
    let raw: RawConfig = parse_json("image config", bytes)?;
    let host = format!("linux/{}", host_arch());
    let image = format!("{}/{}", raw.os, raw.architecture);
    if image != host {
        return Err(ImageError::Platform { image, host });
    }
    let rc = raw.config.unwrap_or_default();
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    Ok(CheckedConfig {
        config: ImageConfig {
            entrypoint: rc.entrypoint.unwrap_or_default(),
            cmd: rc.cmd.unwrap_or_default(),
            env: rc.env.unwrap_or_default(),
            working_dir: nonempty(rc.working_dir),
            user: nonempty(rc.user),
        },
        architecture: raw.architecture,
        diff_ids: raw.rootfs.map(|r| r.diff_ids).unwrap_or_default(),
    })
}

/// How a layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    /// Look at the first bytes (`docker save` layers).
    Sniff,
}

/// A layer media type's compression; unknown types are refused.
pub fn layer_compression(media_type: &str) -> Result<Compression, ImageError> {
    Ok(match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Compression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Compression::Zstd,
        other => {
            return Err(ImageError::MediaType {
                media_type: other.to_string(),
                what: "layer".into(),
            })
        }
    })
}
