//! The egress CA: the certificate authority the MITM proxy signs leaf
//! certificates with, and the guest trusts.
//!
//! Made with rcgen on first use and kept in the state directory
//! (`ca.pem`, and `ca.key` with mode 0600); later runs load it. Leaf
//! certificates are issued and cached by hudsucker's `RcgenAuthority`.
//! Rotation: delete both files; the next run makes a new CA (see
//! `docs/ca.md`).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub mod leaf;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// File name of the CA certificate in the state directory.
pub const CERT_FILE: &str = "ca.pem";
/// File name of the CA private key in the state directory.
pub const KEY_FILE: &str = "ca.key";
/// How many leaf certificates are cached in memory.
pub const LEAF_CACHE: usize = 1_000;
/// Validity of a new CA, days.
const CA_DAYS: i64 = 3650;

/// The CA could not be made, loaded or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// rcgen refused the key or certificate.
    #[error("{path}: {source} (delete {CERT_FILE} and {KEY_FILE} to make a new CA)")]
    Cert {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rcgen::Error,
    },
    /// Only one of the two files exists.
    #[error("{0}: only one of {CERT_FILE} and {KEY_FILE} exists; delete it to make a new CA")]
    Half(PathBuf),
    /// The key file is readable by others.
    #[error("{0}: key file mode is not 0600; fix with chmod 600 or delete both files")]
    KeyMode(PathBuf),
    /// Leaf certificates could not be set up.
    #[error(transparent)]
    Leaf(Box<leaf::LeafError>),
    /// No state directory could be found.
    #[error("no state directory: set XDG_STATE_HOME or HOME, or pass --state-dir")]
    NoStateDir,
}

/// The default state directory: `$XDG_STATE_HOME/bot-bottle`, else
/// `~/.local/state/bot-bottle`.
pub fn default_state_dir() -> Result<PathBuf, CaError> {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("bot-bottle"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .ok_or(CaError::NoStateDir)?;
    Ok(PathBuf::from(home).join(".local/state/bot-bottle"))
}

/// A loaded CA.
pub struct Ca {
    /// The certificate, PEM.
    pub cert_pem: String,
    key_pem: String,
    /// Where it lives.
    pub dir: PathBuf,
    /// True when this run made it.
    pub created: bool,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Load the CA from `dir`, making it (and `dir`) first if absent.
    /// Bottles started at once share one CA: the check and the creation
    /// happen under an exclusive lock on `dir/.ca.lock`.
    pub fn load_or_create(dir: &Path) -> Result<Ca, CaError> {
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CaError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join(".ca.lock");
        let _lock = lock_exclusive(&lock_path).map_err(io(&lock_path))?;
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let mode = std::fs::metadata(&key_path)
                    .map_err(io(&key_path))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(CaError::KeyMode(key_path));
                }
                let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
                let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
                let ca = Ca {
                    cert_pem,
                    key_pem,
                    dir: dir.to_path_buf(),
                    created: false,
                };
                // Fail now, not at the first connection.
                ca.issuer()?;
                Ok(ca)
            }
            (false, false) => {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
                let (cert_pem, key_pem) = generate().map_err(|source| CaError::Cert {
                    path: cert_path.clone(),
                    source,
                })?;
                write_file(&key_path, &key_pem, 0o600).map_err(io(&key_path))?;
                write_file(&cert_path, &cert_pem, 0o644).map_err(io(&cert_path))?;
                tracing::info!("ca: made a new egress CA in {}", dir.display());
                Ok(Ca {
                    cert_pem,
                    key_pem,
                    dir: dir.to_path_buf(),
                    created: true,
                })
            }
            (true, false) => Err(CaError::Half(cert_path)),
            (false, true) => Err(CaError::Half(key_path)),
        }
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, CaError> {
        let cert = |source| CaError::Cert {
            path: self.dir.join(KEY_FILE),
            source,
        };
        let key = KeyPair::from_pem(&self.key_pem).map_err(cert)?;
        Issuer::from_ca_cert_pem(&self.cert_pem, key).map_err(cert)
    }

    /// The authority issuing leaf certificates from this CA (hudsucker's
    /// `CertificateAuthority`), caching up to [`LEAF_CACHE`] host names.
    pub fn authority(&self) -> Result<leaf::LeafAuthority, CaError> {
        self.leaf_authority_with(LEAF_CACHE)
    }

    /// [`Ca::authority`] with a cache of `capacity` names.
    pub fn leaf_authority_with(&self, capacity: usize) -> Result<leaf::LeafAuthority, CaError> {
        leaf::LeafAuthority::new(self.issuer()?, capacity).map_err(|e| CaError::Leaf(Box::new(e)))
    }

    /// Write the certificate (PEM) to `path`.
    pub fn export(&self, path: &Path) -> Result<(), CaError> {
        std::fs::write(path, &self.cert_pem).map_err(|source| CaError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Make a new CA: ECDSA P-256, ten years, CA:true, certificate and CRL
/// signing only. Returns (certificate PEM, key PEM).
fn generate() -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "bot-bottle egress CA");
    dn.push(DnType::OrganizationName, "bot-bottle");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(CA_DAYS);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Create `path` exclusively with `mode`, write `text`, and sync.
/// An exclusive `flock` on `path` (created `0600`), held until the file
/// is dropped.
fn lock_exclusive(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    loop {
        // SAFETY: flock(2) on a file descriptor this function owns; it
        // touches no memory.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if r == 0 {
            return Ok(f);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn write_file(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bottles_starting_at_once_share_one_ca() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let cas: Vec<Ca> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| Ca::load_or_create(&state)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
        });
        assert_eq!(cas.iter().filter(|c| c.created).count(), 1);
        assert!(cas.iter().all(|c| c.cert_pem == cas[0].cert_pem));
    }

    #[test]
    fn made_once_then_loaded_with_a_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = Ca::load_or_create(&state).unwrap();
        assert!(first.created);
        let mode = std::fs::metadata(state.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = Ca::load_or_create(&state).unwrap();
        assert!(!second.created);
        assert_eq!(first.cert_pem, second.cert_pem);
        second.authority().unwrap();

        let out = dir.path().join("export.pem");
        second.export(&out).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
    }

    #[test]
    fn rotation_half_state_and_loose_key_mode() {
        let dir = tempfile::tempdir().unwrap();
        let first = Ca::load_or_create(dir.path()).unwrap();
        // Rotation: delete both files, a new CA is made.
        std::fs::remove_file(dir.path().join(CERT_FILE)).unwrap();
        assert!(matches!(
            Ca::load_or_create(dir.path()),
            Err(CaError::Half(_))
        ));
        std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        let second = Ca::load_or_create(dir.path()).unwrap();
        assert!(second.created);
        assert_ne!(first.cert_pem, second.cert_pem);
        std::fs::set_permissions(
            dir.path().join(KEY_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(matches!(
            Ca::load_or_create(dir.path()),
            Err(CaError::KeyMode(_))
        ));
    }
}
