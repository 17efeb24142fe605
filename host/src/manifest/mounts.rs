//! `[[mounts]]`: host directories shared with the guest over virtio-fs
//! (docs/workspaces.md). The host side is checked here, once, at load: the
//! directory must exist and is pinned to its canonical path; `/` and the
//! home directory itself are refused. The guest side must be an absolute,
//! normalised path that hides nothing the guest's init needs.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::raw::RawMount;
use super::types::Mount;
use super::validate::Ctx;
use super::ManifestError;

/// Most `[[mounts]]` a bottle may have (each is one file-system daemon).
pub const MAX_MOUNTS: usize = 16;

/// Guest trees a mount may be neither at nor under: the kernel's and the
/// init's own file systems.
const GUEST_TREES: [&str; 4] = ["/proc", "/sys", "/dev", "/run"];

/// Guest files the init owns: a mount may not be at them or above them
/// (mounting `/etc` would hide the resolver file and the CA bundle).
const GUEST_FILES: [&str; 3] = [
    "/etc/resolv.conf",
    "/usr/local/bin/bottle-guest",
    "/usr/local/share/ca-certificates",
];

pub(super) fn mounts(
    cx: &Ctx<'_>,
    raw: Vec<Spanned<RawMount>>,
) -> Result<Vec<Mount>, ManifestError> {
    if raw.len() > MAX_MOUNTS {
        return cx.err(
            raw[MAX_MOUNTS].span(),
            "mounts",
            format!("at most {MAX_MOUNTS} mounts"),
        );
    }
    let mut out: Vec<Mount> = Vec::new();
    for (i, m) in raw.into_iter().enumerate() {
        let m = m.into_inner();
        let key = format!("mounts[{i}]");
        let host = match host_dir(cx.file, m.host.get_ref(), home().as_deref()) {
            Ok(p) => p,
            Err(why) => return cx.err(m.host.span(), &format!("{key}.host"), why),
        };
        let guest = match guest_path(m.guest.get_ref()) {
            Ok(g) => g,
            Err(why) => return cx.err(m.guest.span(), &format!("{key}.guest"), why),
        };
        if out.iter().any(|o| o.guest == guest) {
            return cx.err(
                m.guest.span(),
                &format!("{key}.guest"),
                format!("{guest} is mounted twice"),
            );
        }
        out.push(Mount {
            host,
            guest,
            readonly: m.readonly,
        });
    }
    Ok(out)
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .and_then(|h| h.canonicalize().ok())
}

/// The host directory, canonical. `~/` means the home directory; other
/// relative paths are relative to the manifest's folder.
pub fn host_dir(manifest: &Path, written: &Path, home: Option<&Path>) -> Result<PathBuf, String> {
    let joined = match (written.strip_prefix("~"), home) {
        (Ok(rest), Some(h)) => h.join(rest),
        (Ok(_), None) => return Err("~ is used but HOME is not set".into()),
        (Err(_), _) if written.is_absolute() => written.to_path_buf(),
        (Err(_), _) => manifest.parent().unwrap_or(Path::new(".")).join(written),
    };
    let canon = joined
        .canonicalize()
        .map_err(|e| format!("{}: {e}", joined.display()))?;
    if !canon.is_dir() {
        return Err(format!(
            "{} is not a directory; virtio-fs shares directories (mount the folder that holds it)",
            canon.display()
        ));
    }
    if canon == Path::new("/") {
        return Err("sharing the host's / would give the agent the whole machine".into());
    }
    if Some(canon.as_path()) == home {
        return Err(format!(
            "{} is your home directory: it holds your keys and tokens; \
             mount the project folder instead",
            canon.display()
        ));
    }
    Ok(canon)
}

/// The guest mount point: absolute, normalised, and clear of what the
/// init needs.
pub fn guest_path(p: &str) -> Result<String, String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} must be an absolute path"));
    }
    if p.len() > 1024 || p.contains('\0') {
        return Err("must be at most 1024 bytes, without NUL".into());
    }
    let parts: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
    if parts.iter().any(|c| *c == "." || *c == "..") {
        return Err(format!("{p:?} may not contain . or .. components"));
    }
    if parts.is_empty() {
        return Err("the guest's / is the image; mount a folder such as /work".into());
    }
    let norm = format!("/{}", parts.join("/"));
    let under = |tree: &str| norm == tree || norm.starts_with(&format!("{tree}/"));
    if let Some(t) = GUEST_TREES.iter().find(|t| under(t)) {
        return Err(format!(
            "{norm} is inside {t}, which the guest's init mounts itself"
        ));
    }
    if let Some(f) = GUEST_FILES
        .iter()
        .find(|f| **f == norm || f.starts_with(&format!("{norm}/")))
    {
        return Err(format!(
            "{norm} would hide {f}, which the guest's init writes"
        ));
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths() {
        let ok = [
            ("/work", "/work"),
            ("/home/agent/src/", "/home/agent/src"),
            ("//a//b", "/a/b"),
        ];
        for (given, want) in ok {
            assert_eq!(guest_path(given).as_deref(), Ok(want), "{given}");
        }
        let bad = [
            ("work", "absolute"),
            ("/", "image"),
            ("///", "image"),
            ("/a/../etc", ".."),
            ("/a/./b", ".."),
            ("/proc", "/proc"),
            ("/proc/1", "/proc"),
            ("/dev/shm", "/dev"),
            ("/sys", "/sys"),
            ("/run/x", "/run"),
            ("/etc", "resolv.conf"),
            ("/etc/resolv.conf", "resolv.conf"),
            ("/usr", "bottle-guest"),
            ("/usr/local/bin", "bottle-guest"),
            ("/usr/local/share", "ca-certificates"),
        ];
        for (given, why) in bad {
            let e = guest_path(given).unwrap_err();
            assert!(e.contains(why), "{given}: {e}");
        }
        assert!(guest_path(&format!("/{}", "a".repeat(2000))).is_err());
        assert!(guest_path("/a\0b").is_err());
        // Near misses are fine.
        assert!(guest_path("/procfs").is_ok());
        assert!(guest_path("/etcetera").is_ok());
        assert!(guest_path("/usr/src").is_ok());
    }

    #[test]
    fn host_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let manifest = root.join("bottle.toml");
        std::fs::create_dir(root.join("repo")).unwrap();
        std::fs::write(root.join("file"), "x").unwrap();
        std::os::unix::fs::symlink(root.join("repo"), root.join("link")).unwrap();
        let home = root.join("home");
        std::fs::create_dir_all(home.join("proj")).unwrap();

        let h = Some(home.as_path());
        assert_eq!(
            host_dir(&manifest, Path::new("repo"), h),
            Ok(root.join("repo"))
        );
        assert_eq!(host_dir(&manifest, Path::new("."), h), Ok(root.clone()));
        // A symlink is pinned to where it points at load.
        assert_eq!(
            host_dir(&manifest, Path::new("link"), h),
            Ok(root.join("repo"))
        );
        assert_eq!(
            host_dir(&manifest, Path::new("~/proj"), h),
            Ok(home.join("proj"))
        );
        let e = host_dir(&manifest, Path::new("missing"), h).unwrap_err();
        assert!(e.contains("missing") && e.contains("No such file"), "{e}");
        let e = host_dir(&manifest, Path::new("file"), h).unwrap_err();
        assert!(e.contains("not a directory"), "{e}");
        let e = host_dir(&manifest, Path::new("/"), h).unwrap_err();
        assert!(e.contains("whole machine"), "{e}");
        let e = host_dir(&manifest, Path::new("/.."), h).unwrap_err();
        assert!(e.contains("whole machine"), "{e}");
        let e = host_dir(&manifest, Path::new("~"), h).unwrap_err();
        assert!(e.contains("home directory"), "{e}");
        let e = host_dir(&manifest, Path::new("~/proj/.."), h).unwrap_err();
        assert!(e.contains("home directory"), "{e}");
        let e = host_dir(&manifest, Path::new("~/x"), None).unwrap_err();
        assert!(e.contains("HOME"), "{e}");
    }
}
