//! The status socket: each connection gets one JSON snapshot and a newline,
//! then is closed. Anyone in the guest may connect (mode 0666): the agent
//! usually runs as an ordinary user, and the snapshot is read-only and
//! holds nothing it cannot see already (its own processes and counters of
//! its own traffic); nothing is read from the connection.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;

use super::Board;

/// Bind `path` (replacing a stale socket) and serve snapshots forever.
pub fn spawn(path: &Path, board: Board) -> std::io::Result<tokio::task::JoinHandle<()>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666))?;
    let path: PathBuf = path.to_path_buf();
    tracing::debug!(socket = %path.display(), "status socket ready");
    Ok(tokio::spawn(async move {
        loop {
            let (mut stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "status socket accept failed");
                    continue;
                }
            };
            let mut body = match serde_json::to_vec(&board.snapshot()) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "status snapshot does not serialize");
                    continue;
                }
            };
            body.push(b'\n');
            tokio::spawn(async move {
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn any_user_may_read_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/status.sock");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"stale").unwrap();
        let task = spawn(&path, Board::new(std::time::Instant::now())).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o666);
        let mut s = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::net::UnixStream::connect(&path),
        )
        .await
        .unwrap()
        .unwrap();
        let mut text = String::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            s.read_to_string(&mut text),
        )
        .await
        .unwrap()
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert!(v.get("software").is_some(), "{text}");
        task.abort();
    }
}
