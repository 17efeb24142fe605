//! Test fixtures for the egress proxy: a real HTTPS (and plain HTTP) echo
//! upstream on 127.0.0.1 with its own rcgen CA, the proxy on a free port
//! trusting that CA, and raw and curl clients.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bottle_host::ca::Ca;
use bottle_host::manifest::{self, Secret};
use bottle_host::proxy::{self, ProxyConfig, Running};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The value of the secret injected for `api.test`.
pub const API_KEY: &str = "sk-live-injected-0123456789abcdef";
/// A host secret the guest must never send anywhere.
pub const LEAK: &str = "hunter2/leaky+Secret=value";
/// Names the upstream certificate covers (all served on 127.0.0.1).
pub const NAMES: &[&str] = &[
    "api.test",
    "open.test",
    "other.test",
    "plain.test",
    "denied.test",
];

/// Everything a proxy test needs.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub proxy: Running,
    pub proxy_ca: PathBuf,
    pub audit: PathBuf,
    pub tls_port: u16,
    pub plain_port: u16,
}

impl Env {
    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy.addr.expect("a TCP proxy"))
    }

    /// An https URL on the upstream.
    pub fn https(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.tls_port)
    }

    /// Run curl through the proxy; returns (status, headers, body).
    pub async fn curl(&self, url: &str, extra: &[&str]) -> Curl {
        let out_body = self.dir.path().join(format!("body-{}", rand_suffix()));
        let out_head = self.dir.path().join(format!("head-{}", rand_suffix()));
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "30", "--noproxy", ""])
            .args(["--proxy", &self.proxy_url()])
            .args(["--cacert", self.proxy_ca.to_str().unwrap()])
            .args(["-o", out_body.to_str().unwrap()])
            .args(["-D", out_head.to_str().unwrap()])
            .args(["-w", "%{http_code} %{http_version} %{http_connect}"])
            .args(extra)
            .arg(url);
        let out = tokio::task::spawn_blocking(move || cmd.output().expect("curl runs"))
            .await
            .unwrap();
        let w = String::from_utf8_lossy(&out.stdout).to_string();
        let mut parts = w.split_whitespace();
        let code: u16 = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        let version = parts.next().unwrap_or("").to_string();
        let connect: u16 = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        Curl {
            code,
            connect,
            version,
            head: std::fs::read_to_string(&out_head).unwrap_or_default(),
            body: std::fs::read(&out_body).unwrap_or_default(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }

    /// Audit lines so far.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// A raw TLS stream to `sni` through a CONNECT to `connect`, trusting
    /// the proxy CA. Returns `Err(status line)` if the CONNECT is refused.
    pub async fn tunnel(
        &self,
        connect: &str,
        sni: &str,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        self.tunnel_alpn(connect, sni, &[]).await
    }

    /// [`Env::tunnel`], offering `alpn` in the client hello.
    pub async fn tunnel_alpn(
        &self,
        connect: &str,
        sni: &str,
        alpn: &[&[u8]],
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let mut s = TcpStream::connect(self.proxy.addr.expect("a TCP proxy"))
            .await
            .unwrap();
        s.write_all(format!("CONNECT {connect} HTTP/1.1\r\nHost: {connect}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let head = read_head(&mut s).await;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(head);
        }
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&self.proxy_ca).unwrap();
        for c in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(c.unwrap()).unwrap();
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
        Ok(connector.connect(name, s).await.unwrap())
    }
}

/// curl's result.
#[derive(Debug)]
pub struct Curl {
    pub code: u16,
    pub connect: u16,
    pub version: String,
    pub head: String,
    pub body: Vec<u8>,
    pub stderr: String,
}

impl Curl {
    /// A response header (last response), lowercase name.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().rev().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Read an HTTP response head byte by byte.
pub async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if s.read(&mut b).await.unwrap_or(0) == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).to_string()
}

/// The body of a reply whose head is `head`, by its Content-Length.
pub async fn read_body<S: tokio::io::AsyncRead + Unpin>(s: &mut S, head: &str) -> String {
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("a Content-Length");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    String::from_utf8_lossy(&body).to_string()
}

mod reflect;
mod ws_echo;
use ws_echo::websocket_echo;

/// The upstream's echo: the body back, and what it saw in headers.
async fn echo(
    mut req: Request<hyper::body::Incoming>,
) -> Result<Response<reflect::BoxBody>, hyper::Error> {
    if let Some(res) = websocket_echo(&mut req) {
        return Ok(res.map(|b| b.map_err(|e| match e {}).boxed()));
    }
    if req.uri().path().starts_with("/v1/probe/") {
        return Ok(reflect::respond(req).await);
    }
    let seen = |n: &str| {
        req.headers()
            .get(n)
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    let api_key = seen("x-api-key");
    let host = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_else(|| seen("host"));
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let version = format!("{:?}", req.version());
    let seen_ce = req
        .headers()
        .get_all("content-encoding")
        .iter()
        .chain(req.headers().get_all("transfer-encoding").iter())
        .map(|v| v.to_str().unwrap_or("?"))
        .collect::<Vec<_>>()
        .join("|");
    let (range, te) = (seen("range"), seen("te"));
    let mut body = req.into_body().collect().await?.to_bytes();
    // Like many real APIs' debug endpoints: the request's headers back in
    // the body.
    if path.ends_with("/reflect") {
        body = Bytes::from(format!(
            "{{\"headers\": {{\"x-api-key\": \"{api_key}\"}}}}\n"
        ));
    }
    let injected = if api_key == API_KEY { "yes" } else { "no" };
    Ok(Response::builder()
        .header("x-seen-codings", seen_ce)
        .header("x-seen-range", range)
        .header("x-seen-te", te)
        .header("x-api-key-injected", injected)
        // Reflected as it arrived: the proxy must redact it.
        .header("x-seen-api-key", api_key)
        .header("x-seen-host", host)
        .header("x-seen-method", method)
        .header("x-seen-path", path)
        .header("x-seen-version", version)
        .body(Full::new(body).map_err(|e| match e {}).boxed())
        .unwrap())
}

/// Start the HTTPS upstream (h2 + http/1.1) and a plain HTTP one; returns
/// (upstream CA PEM, tls port, plain port).
pub async fn upstreams() -> (String, u16, u16) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
    .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));

    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_port = tls.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = tls.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(s) = acceptor.accept(s).await else {
                    return;
                };
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(
                        TokioIo::new(s),
                        hyper::service::service_fn(echo),
                    )
                    .await;
            });
        }
    });
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_port = plain.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = plain.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(
                        TokioIo::new(s),
                        hyper::service::service_fn(echo),
                    )
                    .await;
            });
        }
    });
    (ca_cert.pem(), tls_port, plain_port)
}

/// Upstreams plus a proxy with the test manifest.
pub async fn setup(allow_private: bool) -> Env {
    setup_full(allow_private, None, None, false).await
}

/// As [`setup`] (loopback allowed) with the audit log at `audit`.
pub async fn setup_with_audit(audit: &Path) -> Env {
    setup_full(true, Some(audit), None, false).await
}

/// As [`setup`] (loopback allowed) on TCP, with `egress.max_connections`
/// at [`EGRESS_MAX_CONNECTIONS`].
pub async fn setup_capped_tcp() -> Env {
    setup_full(true, None, None, true).await
}

/// `egress.max_connections` under [`setup_egress`] and [`setup_capped_tcp`].
pub const EGRESS_MAX_CONNECTIONS: usize = 4;

/// As [`setup`] (loopback allowed), serving the guest's egress channel on
/// the Unix socket `name` in the env's directory instead of TCP.
pub async fn setup_egress(name: &str) -> (Env, bottle_shared::addr::Address) {
    let dir = tempfile::tempdir().unwrap();
    let addr = bottle_shared::addr::Address::Unix(dir.path().join(name));
    let l = bottle_shared::transport::Listener::bind_owner_only(&addr)
        .await
        .unwrap();
    (setup_full(true, None, Some((dir, l)), true).await, addr)
}

async fn setup_full(
    allow_private: bool,
    audit_at: Option<&Path>,
    egress: Option<(tempfile::TempDir, bottle_shared::transport::Listener)>,
    capped: bool,
) -> Env {
    let (dir, egress) = match egress {
        Some((d, l)) => (d, Some(l)),
        None => (tempfile::tempdir().unwrap(), None),
    };
    let (up_ca, tls_port, plain_port) = upstreams().await;
    let up_ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&up_ca_path, up_ca).unwrap();
    // The connection cap, low enough for a test to reach.
    let cap = if capped {
        format!("max_connections = {EGRESS_MAX_CONNECTIONS}")
    } else {
        String::new()
    };
    let text = format!(
        r#"
[agent]
command = ["true"]

[secrets]
api = {{ env = "UNUSED_IN_TESTS" }}

[egress]
allow_private = {allow_private}
max_body_bytes = 16777216
{cap}

[[egress.routes]]
host = "api.test"
ports = [{tls_port}]
methods = ["GET", "POST"]
paths = ["/v1/"]
inject = {{ header = "x-api-key", secret = "api" }}

[[egress.routes]]
host = "open.test"
ports = [{tls_port}]

[[egress.routes]]
host = "other.test"
ports = [{tls_port}]

[[egress.routes]]
host = "plain.test"
ports = [{plain_port}]
"#
    );
    let m = manifest::parse(&text, &dir.path().join("bottle.toml")).unwrap();
    let secrets = vec![
        Secret {
            name: "api".into(),
            value: API_KEY.into(),
        },
        Secret {
            name: "leak".into(),
            value: LEAK.into(),
        },
    ];
    let ca = Ca::load_or_create(&dir.path().join("state")).unwrap();
    let proxy_ca = dir.path().join("proxy-ca.pem");
    ca.export(&proxy_ca).unwrap();
    let audit = audit_at
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.path().join("audit.jsonl"));
    let loopback: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap()];
    let static_hosts: HashMap<String, Vec<IpAddr>> = NAMES
        .iter()
        .map(|n| (n.to_string(), loopback.clone()))
        .collect();
    let cfg = ProxyConfig {
        manifest: m,
        secrets,
        upstream_ca: Some(up_ca_path),
        audit_log: audit.clone(),
        ca,
        addr_filter: None,
        static_hosts,
        lookup: None,
    };
    let proxy = match egress {
        Some(l) => proxy::start(cfg, proxy::Listen::Egress(l)).await.unwrap(),
        None => {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            proxy::start(cfg, listener).await.unwrap()
        }
    };
    Env {
        dir,
        proxy,
        proxy_ca,
        audit,
        tls_port,
        plain_port,
    }
}

/// Write `data` to a file in the env's directory.
pub fn file(env: &Env, name: &str, data: &[u8]) -> PathBuf {
    let p = env.dir.path().join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// The upstream address for a socket test.
pub fn upstream_addr(env: &Env) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], env.tls_port))
}

/// Is `p` a path?
pub fn exists(p: &Path) -> bool {
    p.exists()
}
