//! Shared by the tests that run `bottle-host proxy` as a child process.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

pub const LIMIT: Duration = Duration::from_secs(10);

/// Why this machine cannot run the mount-namespace tests, if it cannot.
pub fn ns_unavailable() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root (mount namespaces need it)");
    }
    let ok = |t: &str| {
        std::process::Command::new(t)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    if !ok("unshare") || !ok("nsenter") {
        return Some("`unshare`/`nsenter` not installed");
    }
    None
}

/// Start `cmd` (stdout and stderr echoed) and wait for `proxy: serving on`.
pub async fn spawn_ready(mut cmd: Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("start bottle-host proxy");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = tokio::time::timeout(LIMIT, async {
        while let Ok(Some(l)) = lines.next_line().await {
            eprintln!("[proxy] {l}");
            if l.contains("proxy: serving on") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "bottle-host proxy did not get ready");
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            eprintln!("[proxy] {l}");
        }
    });
    child
}

/// A manifest with `open.test` allowed on `port`.
pub fn manifest(dir: &Path, port: u16) -> PathBuf {
    let m = dir.join("bottle.toml");
    std::fs::write(
        &m,
        format!(
            "[agent]\ncommand = [\"true\"]\n\n[egress]\nallow_private = true\n\n\
             [[egress.routes]]\nhost = \"open.test\"\nports = [{port}]\n"
        ),
    )
    .unwrap();
    m
}

/// `bottle-host proxy` arguments.
pub fn proxy_args(listen: &str, m: &Path, dir: &Path, audit: &Path) -> Vec<String> {
    [
        "proxy",
        "--listen",
        listen,
        "--manifest",
        &m.display().to_string(),
        "--state-dir",
        &dir.join("state").display().to_string(),
        "--audit-log",
        &audit.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Send one request and read its response: (status, rule header, body);
/// a `TimedOut` error if it takes longer than [`LIMIT`].
pub async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    req: &str,
) -> std::io::Result<(u16, String, String)> {
    tokio::time::timeout(LIMIT, request_now(s, req))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no response"))?
}

pub async fn request_now<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    req: &str,
) -> std::io::Result<(u16, String, String)> {
    s.get_mut().write_all(req.as_bytes()).await?;
    let mut status = 0;
    let mut rule = String::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(rest) = l.strip_prefix("HTTP/1.1 ") {
            status = rest.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        } else if let Some((k, v)) = l.split_once(':') {
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "x-bottle-rule" => rule = v.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    Ok((status, rule, String::from_utf8_lossy(&body).to_string()))
}

pub const DENIED: &str = "GET http://denied.test/x HTTP/1.1\r\nHost: denied.test\r\n\r\n";

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Run `sh -c script` in the mount namespace of `pid` (killed after [`LIMIT`]).
pub async fn in_ns(pid: u32, script: &str) -> std::process::Output {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "sh", "-c", script])
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(LIMIT, out)
        .await
        .unwrap_or_else(|_| panic!("{script:?} still running after {LIMIT:?}"))
        .unwrap()
}
