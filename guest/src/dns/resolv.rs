//! Ownership of `/etc/resolv.conf`: the stub writes it, and a watcher puts
//! it back whenever something else changes it (the agent, a DHCP client, a
//! package script).
//!
//! The path is a parameter so tests use a temporary directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bottle_shared::message::ResolverSettings;

/// The resolv.conf the guest wants: the stub on 127.0.0.1, nothing else.
pub fn render(settings: &ResolverSettings) -> String {
    format!(
        "# Written by bottle-guest: DNS goes through the host's filter.\n\
         nameserver 127.0.0.1\n\
         options edns0 timeout:{} attempts:{}\n",
        settings.timeout_s, settings.attempts
    )
}

/// Write `content` to `path` atomically: a temporary file in the same
/// directory, synced, then renamed over `path`.
pub fn write_atomic(path: &Path, content: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.bottle-tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Make `path` hold exactly `content`; returns true if it had to write.
pub fn ensure(path: &Path, content: &str) -> std::io::Result<bool> {
    match std::fs::read_to_string(path) {
        Ok(current) if current == content => Ok(false),
        _ => write_atomic(path, content).map(|()| true),
    }
}

/// Write `path` now, then check it every `interval` and rewrite it if its
/// content changed. Runs until the task is dropped or aborted.
pub async fn own(path: PathBuf, settings: ResolverSettings, interval: Duration) {
    let want = render(&settings);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match ensure(&path, &want) {
            Ok(true) => tracing::info!(path = %path.display(), "dns-stub: wrote resolv.conf"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), "dns-stub: cannot write resolv.conf: {e}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_settings() {
        let s = ResolverSettings {
            port: 53,
            timeout_s: 3,
            attempts: 4,
        };
        let text = render(&s);
        assert!(text.contains("\nnameserver 127.0.0.1\n"), "{text}");
        assert!(
            text.ends_with("options edns0 timeout:3 attempts:4\n"),
            "{text}"
        );
        assert_eq!(text.matches("nameserver").count(), 1);
    }

    #[test]
    fn ensure_writes_only_when_different() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resolv.conf");
        assert!(ensure(&p, "a\n").unwrap(), "missing file is written");
        assert!(!ensure(&p, "a\n").unwrap(), "same content is left alone");
        std::fs::write(&p, "nameserver 8.8.8.8\n").unwrap();
        assert!(ensure(&p, "a\n").unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a\n");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[tokio::test]
    async fn watcher_restores_a_tampered_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resolv.conf");
        let settings = ResolverSettings::default();
        let want = render(&settings);
        let task = tokio::spawn(own(p.clone(), settings, Duration::from_millis(20)));
        let wait_for_want = || async {
            for _ in 0..100 {
                if std::fs::read_to_string(&p).ok().as_deref() == Some(want.as_str()) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        };
        assert!(wait_for_want().await, "initial write");
        std::fs::write(&p, "nameserver 1.1.1.1\n").unwrap();
        assert!(wait_for_want().await, "tampered file restored");
        std::fs::remove_file(&p).unwrap();
        assert!(wait_for_want().await, "deleted file restored");
        task.abort();
    }
}
