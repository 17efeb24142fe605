//! The status socket: each connection gets one JSON snapshot and a newline,
//! then is closed.

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
