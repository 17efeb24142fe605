//! A host secret in the host name itself (labels of a wildcard route,
//! `3f9a1c7e5b2d8f0.a4c6e1b3d5f7a9c….x.example.com`) is refused by the
//! proxy before anything resolves the name or sends it upstream: in a
//! CONNECT (HTTP/1.1 and HTTP/2 inside, where there is no `Host` header)
//! and in a plain request's absolute URI without a `Host` header.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bottle_host::ca::Ca;
use bottle_host::manifest::{self, Secret};
use bottle_host::proxy::{self, ProxyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "3f9a1c7e5b2d8f0a4c6e1b3d5f7a9c0e2b4d6f8a";

fn secret_host() -> String {
    format!(
        "{}.{}.{}.x.example.com",
        &SECRET[..15],
        &SECRET[15..30],
        &SECRET[30..]
    )
}

/// The proxy, with every name it would resolve recorded (and refused).
async fn start(
    dir: &std::path::Path,
) -> (proxy::Running, std::path::PathBuf, Arc<Mutex<Vec<String>>>) {
    let m = manifest::parse(
        "[agent]\ncommand = [\"true\"]\n[[egress.routes]]\nhost = \"*.example.com\"\n",
        &dir.join("bottle.toml"),
    )
    .unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&asked);
    let lookup: proxy::Lookup = Arc::new(move |name: String| {
        seen.lock().unwrap().push(name);
        Box::pin(async { Ok::<Vec<IpAddr>, _>(Vec::new()) })
    });
    let ca = Ca::load_or_create(&dir.join("state")).unwrap();
    let proxy_ca = dir.join("proxy-ca.pem");
    ca.export(&proxy_ca).unwrap();
    let cfg = ProxyConfig {
        manifest: m,
        secrets: vec![Secret {
            name: "probe".into(),
            value: SECRET.into(),
        }],
        upstream_ca: None,
        audit_log: dir.join("audit.jsonl"),
        ca,
        addr_filter: None,
        static_hosts: Default::default(),
        lookup: Some(lookup),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    (proxy::start(cfg, listener).await.unwrap(), proxy_ca, asked)
}

/// curl through the proxy: (CONNECT status, final status).
async fn curl(proxy: &proxy::Running, ca: &std::path::Path, flag: &str, url: &str) -> (u16, u16) {
    let args = [
        "-sS",
        "--max-time",
        "20",
        "--noproxy",
        "",
        flag,
        "-o",
        "/dev/null",
        "-w",
        "%{http_connect} %{http_code}",
    ];
    let mut cmd = std::process::Command::new("curl");
    cmd.args(args)
        .args(["--proxy", &format!("http://{}", proxy.addr.unwrap())])
        .args(["--cacert", ca.to_str().unwrap()])
        .arg(url);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let w = String::from_utf8_lossy(&out.stdout).to_string();
    let mut codes = w.split_whitespace().map(|c| c.parse().unwrap_or(0));
    (codes.next().unwrap_or(0), codes.next().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_the_host_name_is_refused_before_any_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let (running, ca, asked) = start(dir.path()).await;
    let host = secret_host();
    for flag in ["--http1.1", "--http2"] {
        let (connect, _) = curl(&running, &ca, flag, &format!("https://{host}/")).await;
        assert_eq!(connect, 403, "{flag}: the CONNECT was not refused");
    }
    // Plain HTTP, an absolute URI and no Host header.
    let mut s = TcpStream::connect(running.addr.unwrap()).await.unwrap();
    let req = format!("GET http://{host}/ HTTP/1.0\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_string();
    assert!(head.starts_with("HTTP/1.0 403"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-bottle-rule: secret-piece:probe:"),
        "{head}"
    );
    assert!(
        asked.lock().unwrap().is_empty(),
        "resolved: {:?}",
        asked.lock().unwrap()
    );
    // Audited by rule, without the name.
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert_eq!(audit.lines().count(), 3, "{audit}");
    assert!(!audit.contains(&SECRET[..15]), "{audit}");
    // A name without it goes on to the lookup.
    let (connect, _) = curl(&running, &ca, "--http1.1", "https://www.example.com/").await;
    assert_eq!(connect, 200);
    assert!(
        !asked.lock().unwrap().is_empty(),
        "the lookup was never asked"
    );
    running.stop().await;
}
