//! Step two: the checked, typed configuration the rest of the host uses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use bottle_shared::message::RestartPolicy;
use hickory_proto::rr::RecordType;

use super::pattern::HostPattern;

/// A validated `bottle.toml`.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Where it was read from.
    pub path: PathBuf,
    /// `[vm]`
    pub vm: VmConfig,
    /// `[agent]`
    pub agent: AgentConfig,
    /// `[egress]` and its routes.
    pub egress: EgressConfig,
    /// `[secrets]`, by name.
    pub secrets: BTreeMap<String, SecretSource>,
    /// `[dns]`
    pub dns: DnsConfig,
    /// `[[mounts]]`: host directories shared with the guest.
    pub mounts: Vec<Mount>,
}

/// One `[[mounts]]` entry (docs/workspaces.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The host directory, canonical (symlinks resolved at load).
    pub host: PathBuf,
    /// Absolute, normalised mount point in the guest.
    pub guest: String,
    /// Writes refused (by the guest mount and by the host's daemon).
    pub readonly: bool,
}

/// Which VMM runs the bottle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// libkrun when present, else QEMU.
    Auto,
    /// QEMU with vhost-user-vsock.
    Qemu,
    /// libkrun.
    Libkrun,
}

/// CPU acceleration for QEMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// KVM when usable, TCG otherwise.
    Auto,
    /// KVM only.
    Kvm,
    /// Software emulation.
    Tcg,
}

/// `[vm]`
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// VMM backend.
    pub backend: Backend,
    /// Kernel image; `None` means the built default image's kernel.
    pub kernel: Option<PathBuf>,
    /// The root: `[vm] image` as written (docs/images.md gives the
    /// syntax; relative paths are relative to the manifest's folder);
    /// `None` means the default initramfs.
    pub image: Option<String>,
    /// vCPUs.
    pub cpus: u8,
    /// Memory, MiB.
    pub memory_mib: u32,
    /// Acceleration.
    pub accel: Accel,
    /// Where the guest console goes; `None` means the terminal.
    pub console_log: Option<PathBuf>,
}

/// `[agent]`
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// argv; empty means the image's `Entrypoint` + `Cmd`.
    pub command: Vec<String>,
    /// User name or `uid[:gid]`; `None`: the image's `User`, else root.
    pub user: Option<String>,
    /// Working directory in the guest; `None`: the image's `WorkingDir`,
    /// else `/`.
    pub workdir: Option<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Grace period between SIGTERM and SIGKILL, milliseconds.
    pub grace_ms: u64,
}

/// `[egress]`
#[derive(Clone, Debug)]
pub struct EgressConfig {
    /// The allowlist.
    pub routes: Vec<Route>,
    /// Let routes reach loopback and private addresses (local testing only;
    /// loudly logged).
    pub allow_private: bool,
    /// Audit log path; `None` means the state directory's default.
    pub audit_log: Option<PathBuf>,
    /// Port of the guest's proxy listener on 127.0.0.1.
    pub proxy_port: u16,
    /// Largest request body the proxy accepts, bytes.
    pub max_body_bytes: u64,
    /// Most connections the guest may hold open to the proxy at once;
    /// more are closed as they arrive.
    pub max_connections: u32,
}

/// One allowed destination.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// Host name or `*.suffix`.
    pub host: HostPattern,
    /// Allowed ports (default 443 and 80).
    pub ports: Vec<u16>,
    /// Allowed methods, uppercase; `None` allows all.
    pub methods: Option<Vec<String>>,
    /// Allowed path prefixes; empty allows all.
    pub paths: Vec<String>,
    /// A credential added on the way out.
    pub inject: Option<Inject>,
}

/// Credential injection into one header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inject {
    /// Header name, lowercase.
    pub header: String,
    /// Name of the secret in `[secrets]`.
    pub secret: String,
    /// Header value template containing `{secret}`, e.g. `Bearer {secret}`.
    pub format: String,
}

impl Inject {
    /// The header value with `secret` filled in.
    pub fn render(&self, secret: &str) -> String {
        self.format.replace("{secret}", secret)
    }
}

/// Where a secret's value comes from on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable of `bottle-host`.
    Env(String),
    /// A file (its contents, trailing newline removed).
    File(PathBuf),
}

/// `[dns]`
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Upstream servers; empty means the host's `/etc/resolv.conf`.
    pub upstreams: Vec<SocketAddr>,
    /// Record types resolved for allowed names.
    pub record_types: Vec<RecordType>,
    /// Names allowed in DNS beyond the egress routes.
    pub extra_names: Vec<HostPattern>,
    /// Keep answers in loopback/private/link-local ranges (off by default).
    pub allow_private_answers: bool,
    /// TTL floor for the cache, seconds.
    pub cache_min_ttl: u32,
    /// TTL ceiling for the cache, seconds.
    pub cache_max_ttl: u32,
    /// Upstream timeout, milliseconds.
    pub timeout_ms: u64,
    /// Exfiltration limits.
    pub limits: ExfilLimits,
}

/// Limits that stop DNS being used as a covert channel inside allowed zones.
#[derive(Clone, Debug, PartialEq)]
pub struct ExfilLimits {
    /// Longest label, characters.
    pub max_label_len: usize,
    /// Longest whole name, characters.
    pub max_name_len: usize,
    /// Most labels below the allowed suffix.
    pub max_labels_below_suffix: usize,
    /// Highest normalised Shannon entropy (0–1) of a label at least
    /// `entropy_min_len` long.
    pub max_entropy: f64,
    /// Labels shorter than this skip the entropy check.
    pub entropy_min_len: usize,
    /// Labels at least this long that look hex/base32/base64 are refused.
    pub encoded_label_min_len: usize,
    /// Unique names per registered domain per window.
    pub unique_names_per_window: u32,
    /// The window, seconds.
    pub window_secs: u64,
}

impl Default for ExfilLimits {
    fn default() -> Self {
        ExfilLimits {
            max_label_len: 40,
            max_name_len: 120,
            max_labels_below_suffix: 4,
            max_entropy: 0.88,
            entropy_min_len: 16,
            encoded_label_min_len: 16,
            unique_names_per_window: 100,
            window_secs: 60,
        }
    }
}

/// Record types resolved by default.
pub const DEFAULT_RECORD_TYPES: [RecordType; 5] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::HTTPS,
    RecordType::SVCB,
];

/// Record types that can never be allowed: they are zone transfers or
/// wildcard queries, useful only for bulk data.
pub const FORBIDDEN_RECORD_TYPES: [RecordType; 3] =
    [RecordType::ANY, RecordType::AXFR, RecordType::IXFR];

impl Manifest {
    /// Warnings about the allowlist: routes and `[dns] extra_names` that
    /// are wildcards over a whole public suffix
    /// ([`HostPattern::is_broad`]). Logged at start, not refused (`*.corp`
    /// can be a deliberate private domain).
    pub fn allowlist_warnings(&self) -> Vec<String> {
        self.dns_allowlist()
            .iter()
            .filter(|p| p.is_broad())
            .map(|p| {
                format!(
                    "allowlist entry {p} covers a whole public suffix (a top-level domain or \
                     a shared hosting domain): the agent can reach, and resolve names under, \
                     any site set up there (its own included); name the hosts it needs instead"
                )
            })
            .collect()
    }

    /// The DNS allowlist: every route's host plus `[dns] extra_names`,
    /// without duplicates.
    pub fn dns_allowlist(&self) -> Vec<HostPattern> {
        let mut out: Vec<HostPattern> = self
            .egress
            .routes
            .iter()
            .map(|r| r.host.clone())
            .chain(self.dns.extra_names.iter().cloned())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}
