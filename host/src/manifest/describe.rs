//! The effective policy of a manifest, as `bottle-host check` prints it.

use std::fmt::Write;

use super::types::*;

impl Manifest {
    /// A human-readable summary of everything this manifest allows.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let vm = &self.vm;
        let _ = writeln!(s, "manifest: {}", self.path.display());
        let _ = writeln!(
            s,
            "vm: backend={:?} accel={:?} cpus={} memory={} MiB kernel={} image={}",
            vm.backend,
            vm.accel,
            vm.cpus,
            vm.memory_mib,
            opt_path(&vm.kernel),
            vm.image.as_deref().unwrap_or("(default)")
        );
        let a = &self.agent;
        let _ = writeln!(
            s,
            "agent: {} as {} in {} (restart {:?}, max {}, grace {} ms)",
            if a.command.is_empty() {
                "(the image's Entrypoint and Cmd)".to_string()
            } else {
                format!("{:?}", a.command)
            },
            a.user.as_deref().unwrap_or("(the image's User, else root)"),
            a.workdir
                .as_deref()
                .unwrap_or("(the image's WorkingDir, else /)"),
            a.restart.mode,
            a.restart.max_restarts,
            a.grace_ms
        );
        for mnt in &self.mounts {
            let _ = writeln!(
                s,
                "mount: {} -> {}{}",
                mnt.host.display(),
                mnt.guest,
                if mnt.readonly { " (read-only)" } else { "" }
            );
        }
        if self.egress.allow_private {
            let _ = writeln!(s, "WARNING: egress.allow_private = true: routes may reach loopback and private addresses");
        }
        let _ = writeln!(s, "egress routes ({}):", self.egress.routes.len());
        if self.egress.routes.is_empty() {
            let _ = writeln!(s, "  (none: no HTTP(S) traffic can leave)");
        }
        for r in &self.egress.routes {
            let methods = r
                .methods
                .as_ref()
                .map_or("any".to_string(), |m| m.join(","));
            let paths = if r.paths.is_empty() {
                "any".to_string()
            } else {
                r.paths.join(",")
            };
            let ports: Vec<String> = r.ports.iter().map(u16::to_string).collect();
            let _ = write!(
                s,
                "  {} ports={} methods={} paths={}",
                r.host,
                ports.join(","),
                methods,
                paths
            );
            if let Some(i) = &r.inject {
                let _ = write!(s, " inject={}<-secret:{}", i.header, i.secret);
            }
            s.push('\n');
        }
        let names: Vec<String> = self
            .dns_allowlist()
            .iter()
            .map(ToString::to_string)
            .collect();
        let _ = writeln!(
            s,
            "dns allowlist: {}",
            if names.is_empty() {
                "(none: every name is NXDOMAIN)".to_string()
            } else {
                names.join(" ")
            }
        );
        let types: Vec<String> = self
            .dns
            .record_types
            .iter()
            .map(ToString::to_string)
            .collect();
        let _ = writeln!(s, "dns record types: {}", types.join(" "));
        let ups: Vec<String> = self.dns.upstreams.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            s,
            "dns upstreams: {}",
            if ups.is_empty() {
                "host resolv.conf".to_string()
            } else {
                ups.join(" ")
            }
        );
        let l = &self.dns.limits;
        let _ = writeln!(
            s,
            "dns limits: label<={} name<={} labels-below-suffix<={} entropy<={} encoded-label<{} unique-names<={}/{}s",
            l.max_label_len, l.max_name_len, l.max_labels_below_suffix, l.max_entropy, l.encoded_label_min_len, l.unique_names_per_window, l.window_secs
        );
        let secrets: Vec<String> = self
            .secrets
            .iter()
            .map(|(n, src)| match src {
                SecretSource::Env(v) => format!("{n} (env {v})"),
                SecretSource::File(p) => format!("{n} (file {})", p.display()),
            })
            .collect();
        let _ = writeln!(
            s,
            "secrets: {}",
            if secrets.is_empty() {
                "(none)".to_string()
            } else {
                secrets.join(", ")
            }
        );
        s
    }
}

fn opt_path(p: &Option<std::path::PathBuf>) -> String {
    p.as_ref()
        .map_or("default".to_string(), |p| p.display().to_string())
}
