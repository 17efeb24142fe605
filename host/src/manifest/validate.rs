//! Step two of reading a manifest: check the raw values and build the typed
//! [`Manifest`], with errors that name the line and the key.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::str::FromStr;

use bottle_shared::message::{RestartMode, RestartPolicy};
use hickory_proto::rr::RecordType;
use toml::Spanned;

use super::pattern::HostPattern;
use super::raw::*;
use super::types::*;
use super::ManifestError;

/// Turns spans into line numbers and builds errors.
pub(super) struct Ctx<'a> {
    pub file: &'a Path,
    pub src: &'a str,
}

impl Ctx<'_> {
    pub fn line(&self, offset: usize) -> usize {
        self.src[..offset.min(self.src.len())].matches('\n').count() + 1
    }

    pub(super) fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> Result<T, ManifestError> {
        Err(ManifestError::Invalid {
            file: self.file.display().to_string(),
            line: self.line(span.start),
            key: key.to_string(),
            message: message.into(),
        })
    }
}

pub(super) fn manifest(cx: &Ctx<'_>, raw: RawManifest) -> Result<Manifest, ManifestError> {
    let secrets = secrets(cx, &raw.secrets)?;
    let egress = egress(cx, raw.egress, &secrets)?;
    Ok(Manifest {
        path: cx.file.to_path_buf(),
        vm: vm(cx, raw.vm)?,
        agent: agent(cx, raw.agent)?,
        egress,
        secrets,
        dns: dns(cx, raw.dns)?,
        mounts: super::mounts::mounts(cx, raw.mounts)?,
    })
}

fn vm(cx: &Ctx<'_>, raw: RawVm) -> Result<VmConfig, ManifestError> {
    let backend = match raw.backend {
        None => Backend::Auto,
        Some(b) => match b.get_ref().as_str() {
            "auto" => Backend::Auto,
            "qemu" => Backend::Qemu,
            "libkrun" => Backend::Libkrun,
            other => {
                return cx.err(
                    b.span(),
                    "vm.backend",
                    format!("unknown backend {other:?}; use \"auto\", \"qemu\" or \"libkrun\""),
                )
            }
        },
    };
    let accel = match raw.accel {
        None => Accel::Auto,
        Some(a) => match a.get_ref().as_str() {
            "auto" => Accel::Auto,
            "kvm" => Accel::Kvm,
            "tcg" => Accel::Tcg,
            other => {
                return cx.err(
                    a.span(),
                    "vm.accel",
                    format!("unknown accelerator {other:?}; use \"auto\", \"kvm\" or \"tcg\""),
                )
            }
        },
    };
    let cpus = match raw.cpus {
        None => 1,
        Some(c) => match u8::try_from(*c.get_ref()) {
            Ok(n) if (1..=64).contains(&n) => n,
            _ => {
                return cx.err(
                    c.span(),
                    "vm.cpus",
                    format!("{} is out of range 1..=64", c.get_ref()),
                )
            }
        },
    };
    let memory_mib = match raw.memory_mib {
        None => 512,
        Some(m) => match u32::try_from(*m.get_ref()) {
            Ok(n) if (64..=65536).contains(&n) => n,
            _ => {
                return cx.err(
                    m.span(),
                    "vm.memory_mib",
                    format!("{} is out of range 64..=65536", m.get_ref()),
                )
            }
        },
    };
    Ok(VmConfig {
        backend,
        kernel: raw.kernel.map(|p| resolve(cx.file, &p)),
        image: match raw.image {
            Some(i) if i.get_ref().trim().is_empty() => {
                return cx.err(
                    i.span(),
                    "vm.image",
                    "is empty; leave it out for the default image",
                )
            }
            Some(i) => Some(i.into_inner()),
            None => None,
        },
        cpus,
        memory_mib,
        accel,
        console_log: raw.console_log.map(|p| resolve(cx.file, &p)),
    })
}

/// Relative paths in a manifest are relative to the manifest's folder.
fn resolve(manifest: &Path, p: &Path) -> std::path::PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        manifest.parent().unwrap_or(Path::new(".")).join(p)
    }
}

fn agent(cx: &Ctx<'_>, raw: Spanned<RawAgent>) -> Result<AgentConfig, ManifestError> {
    let raw = raw.into_inner();
    let command = match &raw.command {
        None => Vec::new(),
        Some(c) if c.get_ref().is_empty() || c.get_ref()[0].is_empty() => {
            return cx.err(
                c.span(),
                "agent.command",
                "must name a program: command = [\"program\", \"arg\", ...] \
                 (or leave it out to run the image's Entrypoint and Cmd)",
            );
        }
        Some(c) => c.get_ref().clone(),
    };
    let user = match raw.user {
        None => None,
        Some(u) => {
            let s = u.get_ref();
            let ok = !s.is_empty()
                && s.len() <= 32
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
            if !ok {
                return cx.err(
                    u.span(),
                    "agent.user",
                    format!("{s:?} is not a user name or uid[:gid]"),
                );
            }
            Some(s.clone())
        }
    };
    let workdir = match raw.workdir {
        None => None,
        Some(w) if w.get_ref().starts_with('/') => Some(w.into_inner()),
        Some(w) => {
            return cx.err(
                w.span(),
                "agent.workdir",
                format!("{:?} must be an absolute path", w.get_ref()),
            )
        }
    };
    let mut env = BTreeMap::new();
    for (k, v) in raw.env {
        let valid = !k.is_empty() && !k.contains('=') && !k.contains('\0');
        if !valid || v.get_ref().contains('\0') {
            return cx.err(
                v.span(),
                &format!("agent.env.{k}"),
                "names may not be empty or hold '=' or NUL; values may not hold NUL",
            );
        }
        env.insert(k, v.into_inner());
    }
    let mut restart = RestartPolicy::default();
    if let Some(r) = raw.restart {
        restart.mode = match r.get_ref().as_str() {
            "no" => RestartMode::No,
            "on-failure" => RestartMode::OnFailure,
            "always" => RestartMode::Always,
            other => {
                return cx.err(
                    r.span(),
                    "agent.restart",
                    format!("unknown policy {other:?}; use \"no\", \"on-failure\" or \"always\""),
                )
            }
        };
    }
    if let Some(m) = raw.max_restarts {
        restart.max_restarts = m;
    }
    if let Some(b) = raw.restart_backoff_ms {
        if *b.get_ref() == 0 || *b.get_ref() > restart.backoff_max_ms {
            return cx.err(
                b.span(),
                "agent.restart_backoff_ms",
                format!("must be between 1 and {}", restart.backoff_max_ms),
            );
        }
        restart.backoff_initial_ms = b.into_inner();
    }
    Ok(AgentConfig {
        command,
        user,
        workdir,
        env,
        restart,
        grace_ms: raw.grace_period_ms.unwrap_or(10_000),
    })
}

fn secrets(
    cx: &Ctx<'_>,
    raw: &BTreeMap<String, Spanned<RawSecret>>,
) -> Result<BTreeMap<String, SecretSource>, ManifestError> {
    let mut out = BTreeMap::new();
    for (name, s) in raw {
        let key = format!("secrets.{name}");
        let source = match (&s.get_ref().env, &s.get_ref().file) {
            (Some(var), None) if !var.is_empty() => SecretSource::Env(var.clone()),
            (None, Some(path)) => SecretSource::File(resolve(cx.file, path)),
            _ => {
                return cx.err(
                    s.span(),
                    &key,
                    "give exactly one of env = \"VAR\" or file = \"path\"",
                )
            }
        };
        out.insert(name.clone(), source);
    }
    Ok(out)
}

const DEFAULT_MAX_BODY: u64 = 32 * 1024 * 1024;
/// Default and largest `egress.max_connections`: each connection holds a
/// descriptor or two and some tens of KiB in bottle-host.
const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
const MAX_CONNECTIONS: u32 = 16_384;

fn egress(
    cx: &Ctx<'_>,
    raw: RawEgress,
    secrets: &BTreeMap<String, SecretSource>,
) -> Result<EgressConfig, ManifestError> {
    let mut routes = Vec::new();
    for (i, r) in raw.routes.into_iter().enumerate() {
        routes.push(route(cx, i, r.into_inner(), secrets)?);
    }
    let proxy_port = match raw.proxy_port {
        None => 3128,
        Some(p) => match u16::try_from(*p.get_ref()) {
            Ok(n) if n != 0 => n,
            _ => {
                return cx.err(
                    p.span(),
                    "egress.proxy_port",
                    format!("{} is not a port (1..=65535)", p.get_ref()),
                )
            }
        },
    };
    let max_body_bytes = match raw.max_body_bytes {
        None => DEFAULT_MAX_BODY,
        Some(m) => match u64::try_from(*m.get_ref()) {
            Ok(n) if n > 0 => n,
            _ => {
                return cx.err(
                    m.span(),
                    "egress.max_body_bytes",
                    "must be a positive number of bytes",
                )
            }
        },
    };
    let max_connections = match raw.max_connections {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(m) => match u32::try_from(*m.get_ref()) {
            Ok(n) if (1..=MAX_CONNECTIONS).contains(&n) => n,
            _ => {
                return cx.err(
                    m.span(),
                    "egress.max_connections",
                    format!("{} is not in 1..={MAX_CONNECTIONS}", m.get_ref()),
                )
            }
        },
    };
    Ok(EgressConfig {
        routes,
        allow_private: raw.allow_private,
        audit_log: raw.audit_log.map(|p| resolve(cx.file, &p)),
        proxy_port,
        max_body_bytes,
        max_connections,
    })
}

fn route(
    cx: &Ctx<'_>,
    i: usize,
    raw: RawRoute,
    secrets: &BTreeMap<String, SecretSource>,
) -> Result<Route, ManifestError> {
    let key = |k: &str| format!("egress.routes[{i}].{k}");
    let host = HostPattern::parse(raw.host.get_ref())
        .or_else(|e| cx.err(raw.host.span(), &key("host"), e.to_string()))?;
    let ports = match raw.ports {
        None => vec![443, 80],
        Some(p) => {
            let mut out = Vec::new();
            for n in p.get_ref() {
                match u16::try_from(*n) {
                    Ok(port) if port != 0 => out.push(port),
                    _ => {
                        return cx.err(
                            p.span(),
                            &key("ports"),
                            format!("{n} is not a port (1..=65535)"),
                        )
                    }
                }
            }
            if out.is_empty() {
                return cx.err(p.span(), &key("ports"), "must list at least one port");
            }
            out
        }
    };
    let methods = match raw.methods {
        None => None,
        Some(m) => {
            let mut out = Vec::new();
            for name in m.get_ref() {
                let up = name.to_ascii_uppercase();
                if up.is_empty() || !up.bytes().all(|b| b.is_ascii_uppercase()) {
                    return cx.err(
                        m.span(),
                        &key("methods"),
                        format!("{name:?} is not an HTTP method"),
                    );
                }
                out.push(up);
            }
            Some(out)
        }
    };
    let paths = match raw.paths {
        None => Vec::new(),
        Some(p) => {
            for path in p.get_ref() {
                if !path.starts_with('/') {
                    return cx.err(
                        p.span(),
                        &key("paths"),
                        format!("{path:?} must start with '/'"),
                    );
                }
            }
            p.into_inner()
        }
    };
    let inject = match raw.inject {
        None => None,
        Some(inj) => {
            let span = inj.span();
            let inj = inj.into_inner();
            let header = inj.header.get_ref().to_ascii_lowercase();
            let token = !header.is_empty()
                && header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            if !token {
                return cx.err(
                    inj.header.span(),
                    &key("inject.header"),
                    format!("{:?} is not a header name", inj.header.get_ref()),
                );
            }
            if matches!(
                header.as_str(),
                "host" | "content-length" | "transfer-encoding" | "connection"
            ) {
                return cx.err(
                    inj.header.span(),
                    &key("inject.header"),
                    format!("{header:?} cannot carry a credential"),
                );
            }
            let secret = inj.secret.get_ref().clone();
            if !secrets.contains_key(&secret) {
                return cx.err(
                    inj.secret.span(),
                    &key("inject.secret"),
                    format!("no secret named {secret:?} in [secrets]"),
                );
            }
            let format = match inj.format {
                None => "{secret}".to_string(),
                Some(f)
                    if f.get_ref().contains("{secret}") && !f.get_ref().contains(['\r', '\n']) =>
                {
                    f.into_inner()
                }
                Some(f) => {
                    return cx.err(
                        f.span(),
                        &key("inject.format"),
                        "must contain {secret} and no line breaks",
                    )
                }
            };
            let _ = span;
            Some(Inject {
                header,
                secret,
                format,
            })
        }
    };
    Ok(Route {
        host,
        ports,
        methods,
        paths,
        inject,
    })
}

fn dns(cx: &Ctx<'_>, raw: RawDns) -> Result<DnsConfig, ManifestError> {
    let mut upstreams = Vec::new();
    for u in raw.upstreams.unwrap_or_default() {
        let s = u.get_ref();
        let parsed = SocketAddr::from_str(s)
            .ok()
            .or_else(|| IpAddr::from_str(s).ok().map(|ip| SocketAddr::new(ip, 53)));
        match parsed {
            Some(a) => upstreams.push(a),
            None => {
                return cx.err(
                    u.span(),
                    "dns.upstreams",
                    format!("{s:?} is not IP or IP:PORT"),
                )
            }
        }
    }
    let record_types = match raw.record_types {
        None => DEFAULT_RECORD_TYPES.to_vec(),
        Some(list) => {
            let mut out = Vec::new();
            for t in list {
                let rt = match RecordType::from_str(&t.get_ref().to_ascii_uppercase()) {
                    Ok(RecordType::Unknown(_)) | Err(_) => {
                        return cx.err(
                            t.span(),
                            "dns.record_types",
                            format!("unknown record type {:?}", t.get_ref()),
                        )
                    }
                    Ok(rt) => rt,
                };
                if FORBIDDEN_RECORD_TYPES.contains(&rt) {
                    return cx.err(
                        t.span(),
                        "dns.record_types",
                        format!("{rt} can never be allowed"),
                    );
                }
                out.push(rt);
            }
            out
        }
    };
    let mut extra_names = Vec::new();
    for n in raw.extra_names {
        extra_names.push(
            HostPattern::parse(n.get_ref())
                .or_else(|e| cx.err(n.span(), "dns.extra_names", e.to_string()))?,
        );
    }
    let cache_min_ttl = raw.cache_min_ttl.unwrap_or(5);
    let cache_max_ttl = match raw.cache_max_ttl {
        // The default ceiling never undercuts a floor set above it.
        None => cache_min_ttl.max(3600),
        Some(t) if *t.get_ref() >= cache_min_ttl => t.into_inner(),
        Some(t) => {
            return cx.err(
                t.span(),
                "dns.cache_max_ttl",
                format!("{} is below cache_min_ttl ({cache_min_ttl})", t.get_ref()),
            )
        }
    };
    let d = ExfilLimits::default();
    let l = raw.limits;
    let max_entropy = match l.max_entropy {
        None => d.max_entropy,
        Some(e) if (0.0..=1.0).contains(e.get_ref()) => e.into_inner(),
        Some(e) => {
            return cx.err(
                e.span(),
                "dns.limits.max_entropy",
                "is normalised: between 0.0 and 1.0",
            )
        }
    };
    let window_secs = match l.window_secs {
        None => d.window_secs,
        Some(w) if *w.get_ref() > 0 => w.into_inner(),
        Some(w) => return cx.err(w.span(), "dns.limits.window_secs", "must be at least 1"),
    };
    Ok(DnsConfig {
        upstreams,
        record_types,
        extra_names,
        allow_private_answers: raw.allow_private_answers,
        cache_min_ttl,
        cache_max_ttl,
        timeout_ms: raw.timeout_ms.unwrap_or(2_000),
        limits: ExfilLimits {
            max_label_len: l.max_label_len.unwrap_or(d.max_label_len).min(63),
            max_name_len: l.max_name_len.unwrap_or(d.max_name_len).min(253),
            max_labels_below_suffix: l
                .max_labels_below_suffix
                .unwrap_or(d.max_labels_below_suffix),
            max_entropy,
            entropy_min_len: l.entropy_min_len.unwrap_or(d.entropy_min_len),
            encoded_label_min_len: l.encoded_label_min_len.unwrap_or(d.encoded_label_min_len),
            unique_names_per_window: l
                .unique_names_per_window
                .unwrap_or(d.unique_names_per_window),
            window_secs,
        },
    })
}
