//! Git's smart HTTP protocol: each request runs `git http-backend` (CGI)
//! over the bare repositories in one directory, and [`make_repo`] creates
//! one with two branches. The repositories accept pushes
//! (`http.receivepack`), so only the bottle's route stands between an
//! agent and a push.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use tokio::io::AsyncWriteExt;

use super::{reply, Req};

/// How long one `git http-backend` may run.
const BACKEND_LIMIT: Duration = Duration::from_secs(60);

/// Run `git` with `args` in `dir`, with a fixed identity and no user or
/// system configuration (nor a CA file from the environment); its
/// trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> std::io::Result<String> {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_SSL_CAINFO")
        .env("GIT_AUTHOR_NAME", "testbed")
        .env("GIT_AUTHOR_EMAIL", "testbed@bottle.test")
        .env("GIT_COMMITTER_NAME", "testbed")
        .env("GIT_COMMITTER_EMAIL", "testbed@bottle.test")
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Create `root/NAME.git`: branch `main` with one commit (a README),
/// branch `other` with one more; pushes over HTTP allowed. Returns the
/// commit ids of `main` and `other`.
pub fn make_repo(root: &Path, name: &str) -> std::io::Result<(String, String)> {
    let bare = root.join(format!("{name}.git"));
    let work = root.join(format!("{name}.work"));
    std::fs::create_dir_all(&bare)?;
    std::fs::create_dir_all(&work)?;
    git(
        &bare,
        &["init", "--quiet", "--bare", "--initial-branch=main"],
    )?;
    git(&bare, &["config", "http.receivepack", "true"])?;
    git(&work, &["init", "--quiet", "--initial-branch=main"])?;
    std::fs::write(
        work.join("README"),
        "a repository on the stand-in git host\n",
    )?;
    git(&work, &["add", "README"])?;
    git(&work, &["commit", "--quiet", "-m", "first"])?;
    let main = git(&work, &["rev-parse", "HEAD"])?;
    git(&work, &["checkout", "--quiet", "-b", "other"])?;
    std::fs::write(work.join("OTHER"), "on the other branch\n")?;
    git(&work, &["add", "OTHER"])?;
    git(&work, &["commit", "--quiet", "-m", "second"])?;
    let other = git(&work, &["rev-parse", "HEAD"])?;
    let url = bare.display().to_string();
    git(&work, &["push", "--quiet", &url, "main", "other"])?;
    std::fs::remove_dir_all(&work)?;
    Ok((main, other))
}

/// Answer one request with `git http-backend` over `root`.
pub async fn serve(root: &Path, req: &Req) -> Response<Full<Bytes>> {
    match backend(root, req).await {
        Ok(r) => r,
        Err(e) => reply(500, "text/plain", format!("git http-backend: {e}\n")),
    }
}

async fn backend(root: &Path, req: &Req) -> std::io::Result<Response<Full<Bytes>>> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", &req.method)
        .env("PATH_INFO", &req.path)
        .env("QUERY_STRING", &req.query)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", req.body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (h, var) in [
        ("content-type", "CONTENT_TYPE"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "GIT_PROTOCOL"),
    ] {
        if let Some(v) = req.header(h) {
            cmd.env(var, v);
        }
    }
    let mut child = cmd.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        // A backend that stops reading early is not an error here.
        let _ = stdin.write_all(&req.body).await;
    }
    let out = tokio::time::timeout(BACKEND_LIMIT, child.wait_with_output())
        .await
        .map_err(|_| std::io::Error::other("timed out"))??;
    cgi_response(&out.stdout)
}

/// A CGI program's output as an HTTP response: headers up to the first
/// blank line (`Status:` sets the code), then the body.
pub fn cgi_response(out: &[u8]) -> std::io::Result<Response<Full<Bytes>>> {
    let (head, body) =
        find_blank_line(out).ok_or_else(|| std::io::Error::other("no end of CGI headers"))?;
    let mut resp = Response::builder().status(200);
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                .unwrap_or(500);
            resp = resp.status(code);
        } else {
            resp = resp.header(name.trim(), value);
        }
    }
    resp.body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(std::io::Error::other)
}

/// Split at the first `\r\n\r\n` or `\n\n`.
fn find_blank_line(out: &[u8]) -> Option<(&[u8], &[u8])> {
    for i in 0..out.len() {
        if out[i..].starts_with(b"\r\n\r\n") {
            return Some((&out[..i], &out[i + 4..]));
        }
        if out[i..].starts_with(b"\n\n") {
            return Some((&out[..i], &out[i + 2..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_status_headers_and_body() {
        let r =
            cgi_response(b"Status: 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nno").unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()["content-type"], "text/plain");
        let r = cgi_response(b"Content-Type: x\n\nbody").unwrap();
        assert_eq!(r.status(), 200);
        assert!(cgi_response(b"garbage without end").is_err());
    }
}
