//! Stand-ins for the services an agent image talks to, on one HTTPS
//! listener on 127.0.0.1 with its own test CA, told apart by the `Host`
//! header (one port, one certificate for `*.bottle.test`):
//!
//! - `git.bottle.test`: `git http-backend` (smart HTTP) over bare
//!   repositories ([`git`]);
//! - `pypi.bottle.test`: a PEP 503 simple index with one wheel ([`pypi`]);
//! - `npm.bottle.test`: an npm registry with one package ([`npm`]);
//! - `anthropic.bottle.test`: enough of the Messages API for a real CLI
//!   ([`anthropic`]).
//!
//! Every request is recorded ([`Seen`]); no handler panics on bad input:
//! unknown hosts and paths get a 404, oversized bodies a 413.

pub mod anthropic;
pub mod archive;
pub mod git;
pub mod npm;
pub mod pypi;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use crate::https::Seen;

/// The largest request body a stand-in reads.
const MAX_BODY: usize = 64 << 20;

/// A request as the handlers see it: whole, body included.
#[derive(Debug)]
pub struct Req {
    /// Method, upper case.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The query, without `?` (empty when absent).
    pub query: String,
    /// `host[:port]` as the client sent it.
    pub authority: String,
    /// Headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl Req {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response under construction.
pub fn reply(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// A plain-text 404.
pub fn not_found() -> Response<Full<Bytes>> {
    reply(404, "text/plain", "not found\n")
}

/// What the stand-ins serve.
#[derive(Debug)]
pub struct Content {
    /// Directory of bare repositories (`NAME.git`) for `git.bottle.test`.
    pub git_root: PathBuf,
    /// The wheel on the simple index.
    pub wheel: pypi::Wheel,
    /// The npm package.
    pub npm: npm::Package,
    /// What the model answers.
    pub answer: String,
}

/// The running stand-ins; stop when dropped.
#[derive(Debug)]
pub struct StandIns {
    /// Where they listen.
    pub addr: SocketAddr,
    /// The CA certificate (PEM) their certificate chains to.
    pub ca_pem: String,
    seen: Arc<Mutex<Vec<(String, Seen)>>>,
    task: JoinHandle<()>,
}

impl StandIns {
    /// Serve `content` on `127.0.0.1:0`.
    pub async fn start(content: Content) -> std::io::Result<StandIns> {
        let (ca_pem, acceptor) =
            crate::https::tls(&["bottle.test", "*.bottle.test"]).map_err(std::io::Error::other)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen: Arc<Mutex<Vec<(String, Seen)>>> = Arc::default();
        let log = seen.clone();
        let content = Arc::new(content);
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, log, content) = (acceptor.clone(), log.clone(), content.clone());
                tokio::spawn(async move {
                    let Ok(s) = acceptor.accept(s).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        handle(req, log.clone(), content.clone())
                    });
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Ok(StandIns {
            addr,
            ca_pem,
            seen,
            task,
        })
    }

    /// Every request so far to `host` (e.g. `git.bottle.test`).
    pub fn seen(&self, host: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|(h, _)| h == host)
                    .map(|(_, r)| r.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for StandIns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    log: Arc<Mutex<Vec<(String, Seen)>>>,
    content: Arc<Content>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            req.headers()
                .get("host")
                .and_then(|h| h.to_str().ok())
                .map(String::from)
        })
        .unwrap_or_default();
    let host = authority
        .rsplit_once(':')
        .map_or(authority.as_str(), |(h, _)| h)
        .to_ascii_lowercase();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(413, "text/plain", "body too large or broken\n")),
    };
    let req = Req {
        method,
        path,
        query,
        authority,
        headers,
        body,
    };
    if let Ok(mut l) = log.lock() {
        let full = if req.query.is_empty() {
            req.path.clone()
        } else {
            format!("{}?{}", req.path, req.query)
        };
        l.push((
            host.clone(),
            Seen {
                method: req.method.clone(),
                path: full,
                headers: req.headers.clone(),
                body: req.body.to_vec(),
            },
        ));
    }
    Ok(match host.as_str() {
        "git.bottle.test" => git::serve(&content.git_root, &req).await,
        "pypi.bottle.test" => pypi::serve(&content.wheel, &req),
        "npm.bottle.test" => npm::serve(&content.npm, &req),
        "anthropic.bottle.test" => anthropic::serve(&content.answer, &req),
        _ => not_found(),
    })
}
