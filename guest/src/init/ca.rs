//! Installing the host's egress CA into the trust stores of a root
//! filesystem, without `update-ca-certificates`: the certificate is
//! dropped where each distribution keeps local anchors and appended (once)
//! to every bundle that exists, and a standalone copy always goes to
//! `/etc/bot-bottle/ca.pem`.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Standalone copy, always written.
pub const STANDALONE: &str = "etc/bot-bottle/ca.pem";
/// Debian/Ubuntu local anchor.
const DEBIAN_ANCHOR: &str = "usr/local/share/ca-certificates/bot-bottle.crt";
/// Fedora/RHEL local anchor directory.
const RHEL_ANCHORS: &str = "etc/pki/ca-trust/source/anchors";
/// Bundles appended to when present, in order of preference for the
/// agent's `SSL_CERT_FILE`.
const BUNDLES: [&str; 4] = [
    "etc/ssl/certs/ca-certificates.crt",
    "etc/pki/tls/certs/ca-bundle.crt",
    "etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "etc/ssl/cert.pem",
];

/// Variables pointing TLS clients at the bundle.
pub const CA_ENV_VARS: [&str; 8] = [
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "PIP_CERT",
    "AWS_CA_BUNDLE",
    "DENO_CERT",
];

/// The CA could not be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// The config's CA is not a PEM certificate.
    #[error("the host's CA is not a PEM certificate")]
    NotPem,
    /// A file could not be written.
    #[error("cannot write {path}: {io}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error (shown in the message, so not a `source`).
        io: std::io::Error,
    },
}

/// Where the CA went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaInstall {
    /// Every file written or appended to (already containing it counts).
    pub locations: Vec<PathBuf>,
    /// The bundle the agent should use: system roots plus our CA when a
    /// system bundle exists, else the standalone copy.
    pub bundle: PathBuf,
}

impl CaInstall {
    /// The agent's CA environment variables.
    pub fn env(&self) -> Vec<(String, String)> {
        let b = self.bundle.display().to_string();
        CA_ENV_VARS
            .iter()
            .map(|k| (k.to_string(), b.clone()))
            .collect()
    }
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |io| CaError::Write {
        path: path.to_path_buf(),
        io,
    }
}

fn write_file(path: &Path, pem: &str) -> Result<(), CaError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_err(path))?;
    }
    std::fs::write(path, pem).map_err(write_err(path))
}

/// Append `pem` to `path` unless it is already in it. The body is compared
/// without whitespace, so a re-encoded copy still counts.
fn append_once(path: &Path, pem: &str) -> Result<(), CaError> {
    let old = std::fs::read_to_string(path).map_err(write_err(path))?;
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    if squash(&old).contains(&squash(pem)) {
        return Ok(());
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(write_err(path))?;
    let sep = if old.is_empty() || old.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    write!(f, "{sep}{pem}").map_err(write_err(path))
}

/// Install `pem` under `root` (`/` in production).
pub fn install(root: &Path, pem: &str) -> Result<CaInstall, CaError> {
    let pem = pem.trim();
    if !pem.starts_with("-----BEGIN CERTIFICATE-----")
        || !pem.ends_with("-----END CERTIFICATE-----")
    {
        return Err(CaError::NotPem);
    }
    let pem = format!("{pem}\n");
    let mut locations = Vec::new();

    let standalone = root.join(STANDALONE);
    write_file(&standalone, &pem)?;
    locations.push(standalone.clone());

    if root.join("usr/local/share/ca-certificates").is_dir()
        || root.join("etc/debian_version").exists()
    {
        let p = root.join(DEBIAN_ANCHOR);
        write_file(&p, &pem)?;
        locations.push(p);
    }
    if root.join(RHEL_ANCHORS).is_dir() {
        let p = root.join(RHEL_ANCHORS).join("bot-bottle.pem");
        write_file(&p, &pem)?;
        locations.push(p);
    }
    let mut bundle = None;
    for rel in BUNDLES {
        let p = root.join(rel);
        if p.is_file() {
            append_once(&p, &pem)?;
            bundle.get_or_insert_with(|| p.clone());
            locations.push(p);
        }
    }
    let install = CaInstall {
        locations,
        bundle: bundle.unwrap_or(standalone),
    };
    tracing::info!(bundle = %install.bundle.display(), places = install.locations.len(), "egress CA installed");
    Ok(install)
}

#[cfg(test)]
mod tests;
