//! An HTTPS echo server on 127.0.0.1 with its own test CA, standing in for
//! an allowed site on the internet. Every request is recorded (method,
//! path, headers, body) so tests can check what reached the upstream, and
//! answered with `hello from upstream` plus headers describing what it
//! saw: `x-seen-path`, and `x-auth: ok|wrong|none` comparing the
//! `Authorization` header with an expected value — never the value itself,
//! except on a path containing `reflect`, which echoes it back (header
//! `x-echo-authorization` and a JSON body) as a careless API would, to
//! prove the proxy redacts it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The body of every answer.
pub const HELLO: &str = "hello from upstream\n";

/// One request the server saw.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Seen {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How long a `/gate` request is held before it answers 503.
pub const GATE_HOLD: std::time::Duration = std::time::Duration::from_secs(120);

/// A running HTTPS server; stops when dropped.
#[derive(Debug)]
pub struct Https {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its CA certificate (PEM): trust this to reach it.
    pub ca_pem: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// `/gate…` is held (long poll, up to [`GATE_HOLD`]) until
    /// [`Https::open_gate`], then answers 200 (503 if it is still shut):
    /// agents in VMs wait on it for the test without spending CPU.
    /// `/gateN…` (a digit) waits for [`Https::open_gate_level`] `N`.
    gate: Arc<std::sync::atomic::AtomicU32>,
    task: JoinHandle<()>,
}

impl Https {
    /// Serve on `bind` (e.g. `127.0.0.1:0`) with a certificate for `names`;
    /// `expect_auth` is the `Authorization` value that earns `x-auth: ok`.
    pub async fn start(
        bind: &str,
        names: &[&str],
        expect_auth: Option<String>,
    ) -> std::io::Result<Https> {
        let expect = Arc::new(expect_auth);
        let (ca_pem, acceptor) = tls(names).map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        let gate: Arc<std::sync::atomic::AtomicU32> = Arc::default();
        let open = gate.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let _ = s.set_nodelay(true);
                let (acceptor, log, expect) = (acceptor.clone(), log.clone(), expect.clone());
                let open = open.clone();
                tokio::spawn(async move {
                    let Ok(s) = acceptor.accept(s).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        echo(req, log.clone(), expect.clone(), open.clone())
                    });
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Ok(Https {
            addr,
            ca_pem,
            seen,
            gate,
            task,
        })
    }

    /// From now on `/gate…` (and `/gate1…`) answers 200.
    pub fn open_gate(&self) {
        self.open_gate_level(1);
    }

    /// From now on `/gateN…` answers 200 for every `N <= level`.
    pub fn open_gate_level(&self, level: u32) {
        self.gate
            .fetch_max(level, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Https {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) type TlsSetup = (String, tokio_rustls::TlsAcceptor);

pub(crate) fn tls(names: &[&str]) -> Result<TlsSetup, Box<dyn std::error::Error + Send + Sync>> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // A name of its own: with rcgen's default name on both, OpenSSL clients
    // take the leaf for a self-signed certificate.
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bottle-e2e test CA");
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate()?;
    let leaf = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?
        .signed_by(&leaf_key, &issuer)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((
        ca_cert.pem(),
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
    ))
}

async fn echo(
    req: Request<hyper::body::Incoming>,
    log: Arc<Mutex<Vec<Seen>>>,
    expect: Arc<Option<String>>,
    gate: Arc<std::sync::atomic::AtomicU32>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let body = req.into_body().collect().await?.to_bytes().to_vec();
    let seen = Seen {
        method,
        path: path.clone(),
        headers,
        body,
    };
    let auth = match (seen.header("authorization"), expect.as_deref()) {
        (None, _) => "none",
        (Some(a), Some(e)) if a == e => "ok",
        (Some(_), _) => "wrong",
    };
    // `…reflect…`: like a debug endpoint, the Authorization header back
    // as it arrived, in a header and in the body (the proxy must redact).
    let reflected = path
        .contains("reflect")
        .then(|| seen.header("authorization").unwrap_or_default().to_string());
    if let Ok(mut l) = log.lock() {
        l.push(seen);
    }
    let want = path.strip_prefix("/gate").map(|rest| {
        rest.chars()
            .next()
            .and_then(|c| c.to_digit(10))
            .unwrap_or(1)
    });
    let shut = |w: u32| w > gate.load(std::sync::atomic::Ordering::SeqCst);
    if let Some(w) = want {
        let until = tokio::time::Instant::now() + GATE_HOLD;
        while shut(w) && tokio::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let closed = want.is_some_and(shut);
    let mut resp = Response::builder()
        .status(if closed { 503 } else { 200 })
        .header("x-auth", auth)
        .header("x-seen-path", path);
    let body = match reflected {
        Some(a) => {
            resp = resp.header("x-echo-authorization", a.as_str());
            Bytes::from(format!("{{\"authorization\": \"{a}\"}}\n"))
        }
        None => Bytes::from_static(HELLO.as_bytes()),
    };
    let resp = resp.body(Full::new(body));
    Ok(resp.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}
