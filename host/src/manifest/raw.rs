//! Step one of reading a manifest: the TOML shape, exactly as written.
//!
//! Every struct denies unknown fields, so a typo is an error naming the key.
//! Values that are checked later keep their source span ([`Spanned`]) so the
//! checks can name the line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    #[serde(default)]
    pub vm: RawVm,
    pub agent: Spanned<RawAgent>,
    #[serde(default)]
    pub egress: RawEgress,
    #[serde(default)]
    pub secrets: BTreeMap<String, Spanned<RawSecret>>,
    #[serde(default)]
    pub dns: RawDns,
    #[serde(default)]
    pub mounts: Vec<Spanned<RawMount>>,
}

/// `[[mounts]]`: a host directory shared with the guest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMount {
    pub host: Spanned<PathBuf>,
    pub guest: Spanned<String>,
    #[serde(default)]
    pub readonly: bool,
}

/// `[vm]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVm {
    pub backend: Option<Spanned<String>>,
    pub kernel: Option<PathBuf>,
    pub image: Option<Spanned<String>>,
    pub cpus: Option<Spanned<i64>>,
    pub memory_mib: Option<Spanned<i64>>,
    pub accel: Option<Spanned<String>>,
    pub console_log: Option<PathBuf>,
}

/// `[agent]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub command: Option<Spanned<Vec<String>>>,
    pub user: Option<Spanned<String>>,
    pub workdir: Option<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<String>>,
    pub restart: Option<Spanned<String>>,
    pub max_restarts: Option<u32>,
    pub restart_backoff_ms: Option<Spanned<u64>>,
    pub grace_period_ms: Option<u64>,
}

/// `[egress]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEgress {
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub allow_private: bool,
    pub audit_log: Option<PathBuf>,
    pub proxy_port: Option<Spanned<i64>>,
    pub max_body_bytes: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
}

/// One `[[egress.routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub host: Spanned<String>,
    pub ports: Option<Spanned<Vec<i64>>>,
    pub methods: Option<Spanned<Vec<String>>>,
    pub paths: Option<Spanned<Vec<String>>>,
    pub inject: Option<Spanned<RawInject>>,
}

/// A route's `inject = { header, secret, format }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInject {
    pub header: Spanned<String>,
    pub secret: Spanned<String>,
    pub format: Option<Spanned<String>>,
}

/// One `[secrets]` entry: `name = { env = "VAR" }` or `{ file = "path" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

/// `[dns]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    pub upstreams: Option<Vec<Spanned<String>>>,
    pub record_types: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub extra_names: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow_private_answers: bool,
    pub cache_min_ttl: Option<u32>,
    pub cache_max_ttl: Option<Spanned<u32>>,
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub limits: RawLimits,
}

/// `[dns.limits]`: the exfiltration limits inside allowed zones.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_label_len: Option<usize>,
    pub max_name_len: Option<usize>,
    pub max_labels_below_suffix: Option<usize>,
    pub max_entropy: Option<Spanned<f64>>,
    pub entropy_min_len: Option<usize>,
    pub encoded_label_min_len: Option<usize>,
    pub unique_names_per_window: Option<u32>,
    pub window_secs: Option<Spanned<u64>>,
}
