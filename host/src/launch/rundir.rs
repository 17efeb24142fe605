//! The per-launch run directory: the vsock sockets, the daemon's and
//! QEMU's logs. Private (0700) and removed when the launch ends.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A private directory removed on drop (unless `BOTTLE_KEEP_RUN_DIR` is set).
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Create `bot-bottle-<pid>-<nanos>` under `$XDG_RUNTIME_DIR`, else
    /// under `<state>/run` (made private): nothing of a bottle is written
    /// outside the user's own directories. Unix socket paths must stay
    /// short (108 bytes), so the name is kept compact.
    pub fn create(state: &Path) -> std::io::Result<RunDir> {
        let parent = match std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
        {
            Some(p) => p,
            None => {
                let p = state.join("run");
                crate::hardening::private_dir(&p).map_err(std::io::Error::other)?;
                p
            }
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let path = parent.join(format!("bot-bottle-{}-{nanos:x}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(RunDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The vsock base: guest port P is the Unix socket `<base>_P`.
    pub fn vsock_base(&self) -> PathBuf {
        self.path.join("vsock")
    }

    /// The Unix socket for guest-initiated connections to host port `port`.
    pub fn port_socket(&self, port: u32) -> PathBuf {
        self.path.join(format!("vsock_{port}"))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if std::env::var_os("BOTTLE_KEEP_RUN_DIR").is_some() {
            tracing::info!(dir = %self.path.display(), "run directory kept");
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(dir = %self.path.display(), error = %e, "cannot remove the run directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_and_removed_on_drop() {
        let state = tempfile::tempdir().unwrap();
        let d = RunDir::create(state.path()).unwrap();
        let p = d.path().to_path_buf();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::write(d.port_socket(6002), b"x").unwrap();
        assert!(d.port_socket(6002).ends_with("vsock_6002"));
        assert!(d.port_socket(6002).as_os_str().len() < 100);
        drop(d);
        assert!(!p.exists());
    }
}
