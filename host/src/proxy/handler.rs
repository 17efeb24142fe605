//! The hudsucker handler: every request is checked against the allowlist,
//! scanned by DLP, given its route's credential, and audited.
//!
//! hudsucker clones the handler for each CONNECT tunnel and then for each
//! request inside it, so the tunnel's host and TLS SNI, recorded when the
//! tunnel opens, travel with every inner request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use hudsucker::hyper::header::{HeaderValue, CONTENT_ENCODING, HOST};
use hudsucker::hyper::{Method, Request, Response, StatusCode, Uri};
use hudsucker::{Body, HttpContext, HttpHandler, RequestOrResponse};

use super::audit::{self, AuditLog, Record};
use super::body::{read_scanned, BodyRefusal};
use super::connector::ConnectError;
use super::dlp::Dlp;
use super::policy::{self, Denied};
use crate::manifest::Route;

/// The authority hudsucker is given for every tunnel instead of the real
/// one. hudsucker opens a raw TCP tunnel to the CONNECT authority when the
/// client speaks neither TLS nor HTTP; pointing it here makes that tunnel
/// fail instead of bypassing policy. Real destinations are rebuilt from
/// [`Tunnel`].
pub const SENTINEL_AUTHORITY: &str = "0.0.0.0:0";

/// What every handler clone shares.
#[derive(Debug)]
pub struct Shared {
    /// The allowlist.
    pub routes: Vec<Route>,
    /// Compiled DLP rules.
    pub dlp: Arc<Dlp>,
    /// Secret values by name, for injection.
    pub secrets: HashMap<String, String>,
    /// Audit log.
    pub audit: AuditLog,
    /// Largest request body, bytes.
    pub max_body: u64,
}

/// A CONNECT tunnel's checked destination.
#[derive(Clone, Debug)]
struct Tunnel {
    host: String,
    port: u16,
    /// The TLS SNI, normalised; `None` until the client hello is seen.
    sni: Option<Result<String, String>>,
}

/// An allowed request waiting for its response to be audited.
#[derive(Clone, Debug)]
struct Pending {
    record: Record,
    start: Instant,
}

/// The handler.
#[derive(Clone, Debug)]
pub struct Handler {
    shared: Arc<Shared>,
    tunnel: Option<Tunnel>,
    pending: Option<Pending>,
}

/// A refusal: status, rule and a reason safe to show the client.
#[derive(Debug)]
struct Refusal {
    status: u16,
    rule: String,
    reason: String,
}

impl From<Denied> for Refusal {
    fn from(d: Denied) -> Refusal {
        Refusal {
            status: 403,
            rule: d.rule().into(),
            reason: d.to_string(),
        }
    }
}

impl From<BodyRefusal> for Refusal {
    fn from(b: BodyRefusal) -> Refusal {
        let (status, rule) = b.status_rule();
        Refusal {
            status,
            rule,
            reason: b.to_string(),
        }
    }
}

/// A plain-text reply from the proxy itself.
fn reply(status: u16, rule: &str, reason: &str) -> Response<Body> {
    let mut res = Response::new(Body::from(format!(
        "bot-bottle egress proxy: refused ({rule}): {reason}\n"
    )));
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    if let Ok(v) = HeaderValue::from_str(rule) {
        res.headers_mut().insert("x-bottle-rule", v);
    }
    res.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    res
}

/// The request's path and query, or `/`.
fn target(uri: &Uri) -> String {
    uri.path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into())
}

impl Handler {
    /// A handler for a proxy with this shared state.
    pub fn new(shared: Arc<Shared>) -> Handler {
        Handler {
            shared,
            tunnel: None,
            pending: None,
        }
    }

    /// Write an audit line for a refusal and build the reply (503 if the
    /// line cannot be written).
    fn refuse(&self, rec: Record, r: Refusal, start: Instant) -> Response<Body> {
        tracing::info!(host = %rec.host, rule = %r.rule, "proxy: refused: {}", r.reason);
        let rec = Record {
            verdict: "deny",
            rule: Some(r.rule.clone()),
            status: r.status,
            duration_ms: start.elapsed().as_millis() as u64,
            ..rec
        };
        match self.shared.audit.write(&rec) {
            Ok(()) => reply(r.status, &r.rule, &r.reason),
            Err(e) => audit_failed(&e),
        }
    }

    /// CONNECT: check host and port, remember the tunnel.
    fn connect(&mut self, mut req: Request<Body>, start: Instant) -> RequestOrResponse {
        let authority = req.uri().authority().map(|a| a.as_str().to_string());
        let mut rec = Record {
            time: audit::now(),
            method: "CONNECT".into(),
            host: authority.clone().unwrap_or_default(),
            ..Record::default()
        };
        let checked = (|| {
            let authority =
                authority.ok_or(Denied::Unsupported("CONNECT without host:port".into()))?;
            let (host, port) = policy::split_host_port(&authority);
            let port: u16 = port
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| Denied::Unsupported(format!("CONNECT {authority:?} has no port")))?;
            let host = policy::check_name(host)?;
            policy::route_for(&self.shared.routes, &host, port)?;
            Ok::<_, Denied>((host, port))
        })();
        let (host, port) = match checked {
            Ok(hp) => hp,
            Err(d) => return self.refuse(rec, d.into(), start).into(),
        };
        rec.host = host.clone();
        rec.verdict = "allow";
        rec.status = 200;
        if let Err(e) = self.shared.audit.write(&rec) {
            return audit_failed(&e).into();
        }
        self.tunnel = Some(Tunnel {
            host,
            port,
            sni: None,
        });
        *req.uri_mut() = Uri::from_static(SENTINEL_AUTHORITY);
        req.into()
    }

    /// Work out the destination of a non-CONNECT request:
    /// (scheme, host, port).
    fn destination(&self, req: &Request<Body>) -> Result<(&'static str, String, u16), Denied> {
        let uri = req.uri();
        let host_header = match req.headers().get(HOST) {
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| Denied::Mismatch("Host header is not text".into()))?
                    .to_string(),
            ),
            None => None,
        };
        let same = |authority: &str, host: &str, port: u16, default: u16| -> bool {
            let (h, p) = policy::split_host_port(authority);
            let p = match p {
                Some(p) => p.parse().ok(),
                None => Some(default),
            };
            policy::check_name(h).ok().as_deref() == Some(host) && p == Some(port)
        };
        if let Some(t) = &self.tunnel {
            let scheme = if uri.scheme_str() == Some("http") {
                "http"
            } else {
                "https"
            };
            if scheme == "https" {
                match &t.sni {
                    Some(Ok(sni)) if *sni == t.host => {}
                    Some(Ok(sni)) => {
                        return Err(Denied::Mismatch(format!(
                            "TLS SNI {sni:?} differs from CONNECT host {:?}",
                            t.host
                        )))
                    }
                    Some(Err(bad)) => return Err(Denied::Mismatch(format!("bad TLS SNI {bad:?}"))),
                    None => {
                        return Err(Denied::Mismatch(
                            "TLS without SNI; name the host in the client hello".into(),
                        ))
                    }
                }
            }
            let default = if scheme == "http" { 80 } else { 443 };
            let default = if t.port == default { default } else { t.port };
            if let Some(a) = uri.authority().map(|a| a.as_str()) {
                if a != SENTINEL_AUTHORITY && !same(a, &t.host, t.port, default) {
                    return Err(Denied::Mismatch(format!(
                        "request authority {a:?} differs from CONNECT host {:?}",
                        t.host
                    )));
                }
            }
            match &host_header {
                Some(h) if !same(h, &t.host, t.port, default) => {
                    return Err(Denied::Mismatch(format!(
                        "Host {h:?} differs from CONNECT host {:?}",
                        t.host
                    )))
                }
                None if uri.authority().map(|a| a.as_str()) == Some(SENTINEL_AUTHORITY) => {
                    return Err(Denied::Mismatch("request without a Host header".into()))
                }
                _ => {}
            }
            return Ok((scheme, t.host.clone(), t.port));
        }
        // A plain proxy request: absolute http:// URI.
        if uri.scheme_str() != Some("http") {
            return Err(Denied::Unsupported(
                "only absolute http:// URIs and CONNECT are proxied".into(),
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| Denied::Unsupported("request without a host".into()))?;
        let host = policy::check_name(authority.host())?;
        let port = authority.port_u16().unwrap_or(80);
        if let Some(h) = &host_header {
            if !same(h, &host, port, 80) {
                return Err(Denied::Mismatch(format!(
                    "Host {h:?} differs from the request URI's host {host:?}"
                )));
            }
        }
        Ok(("http", host, port))
    }

    /// Everything but CONNECT.
    async fn request(&mut self, req: Request<Body>, start: Instant) -> RequestOrResponse {
        let pq = target(req.uri());
        let mut rec = Record {
            time: audit::now(),
            method: req.method().as_str().to_string(),
            host: self
                .tunnel
                .as_ref()
                .map(|t| t.host.clone())
                .or_else(|| req.uri().host().map(str::to_string))
                .unwrap_or_default(),
            path: req.uri().path().to_string(),
            ..Record::default()
        };
        let (scheme, host, port) = match self.destination(&req) {
            Ok(d) => d,
            Err(d) => return self.refuse(rec, d.into(), start).into(),
        };
        rec.host = host.clone();
        let shared = self.shared.clone();
        let route = match policy::route_for(&shared.routes, &host, port).and_then(|r| {
            policy::check_request(r, &host, req.method().as_str(), req.uri().path()).map(|()| r)
        }) {
            Ok(r) => r,
            Err(d) => return self.refuse(rec, d.into(), start).into(),
        };
        if req.method() == Method::CONNECT
            || req.headers().contains_key("upgrade")
            || req.method().as_str() == "PRI"
        {
            let d = Denied::Unsupported("protocol upgrades (WebSocket) are not proxied".into());
            return self.refuse(rec, d.into(), start).into();
        }
        // DLP on the request line and headers (before injection).
        let inject = route.inject.as_ref();
        let mut hit = shared.dlp.scan_target(&pq);
        if hit.is_none() {
            hit = req.headers().iter().find_map(|(name, value)| {
                if inject.is_some_and(|i| i.header == name.as_str()) {
                    return None; // replaced below
                }
                let place = format!("header {name}");
                shared.dlp.scan(value.as_bytes(), &place).or_else(|| {
                    let decoded = super::dlp::percent_decode(value.as_bytes());
                    shared.dlp.scan(&decoded, &place)
                })
            });
        }
        if let Some(h) = hit {
            let r = Refusal {
                status: 403,
                reason: format!("request {} matches DLP rule {}", h.place, h.rule),
                rule: h.rule,
            };
            return self.refuse(rec, r, start).into();
        }
        let (mut parts, body) = req.into_parts();
        let encoding = match parts.headers.get(CONTENT_ENCODING).map(|v| v.to_str()) {
            Some(Ok(e)) => Some(e.to_string()),
            Some(Err(_)) => Some("(not text)".to_string()),
            None => None,
        };
        let form = parts
            .headers
            .get(hudsucker::hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        let body = match read_scanned(
            body,
            encoding.as_deref(),
            form,
            shared.dlp.clone(),
            shared.max_body,
        )
        .await
        {
            Ok(b) => b,
            Err(b) => return self.refuse(rec, b.into(), start).into(),
        };
        rec.bytes_up = body.len() as u64;
        // Credential injection: whatever the guest sent is replaced.
        if let Some(i) = inject {
            let Some(secret) = shared.secrets.get(&i.secret) else {
                let r = Refusal {
                    status: 500,
                    rule: "inject-secret-missing".into(),
                    reason: format!("secret {:?} is not loaded", i.secret),
                };
                return self.refuse(rec, r, start).into();
            };
            match HeaderValue::from_str(&i.render(secret)) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    parts.headers.insert(
                        hudsucker::hyper::header::HeaderName::from_bytes(i.header.as_bytes())
                            .unwrap_or(HOST),
                        v,
                    );
                }
                Err(_) => {
                    let r = Refusal {
                        status: 500,
                        rule: "inject-bad-value".into(),
                        reason: format!("secret {:?} is not a valid header value", i.secret),
                    };
                    return self.refuse(rec, r, start).into();
                }
            }
        }
        let uri = format!("{scheme}://{host}:{port}{pq}");
        match uri.parse::<Uri>() {
            Ok(u) => parts.uri = u,
            Err(_) => {
                let d = Denied::Unsupported(format!("cannot rebuild URI {uri:?}"));
                return self.refuse(rec, d.into(), start).into();
            }
        }
        rec.verdict = "allow";
        self.pending = Some(Pending { record: rec, start });
        Request::from_parts(parts, Body::from(body)).into()
    }

    /// Audit an allowed request once its outcome is known.
    fn finish(&mut self, status: u16, rule: Option<String>, res: Response<Body>) -> Response<Body> {
        let Some(p) = self.pending.take() else {
            return res;
        };
        let rec = Record {
            status,
            rule,
            duration_ms: p.start.elapsed().as_millis() as u64,
            ..p.record
        };
        match self.shared.audit.write(&rec) {
            Ok(()) => res,
            Err(e) => audit_failed(&e),
        }
    }
}

/// The reply when the audit log cannot be written: fail closed.
fn audit_failed(e: &audit::AuditError) -> Response<Body> {
    tracing::error!("proxy: {e}; refusing requests until it can be written");
    reply(503, "audit-log-unwritable", &e.to_string())
}

impl HttpHandler for Handler {
    async fn handle_request(
        &mut self,
        _ctx: &HttpContext,
        req: Request<Body>,
    ) -> RequestOrResponse {
        let start = Instant::now();
        if req.method() == Method::CONNECT && self.tunnel.is_none() {
            self.connect(req, start)
        } else {
            self.request(req, start).await
        }
    }

    async fn handle_response(&mut self, _ctx: &HttpContext, res: Response<Body>) -> Response<Body> {
        let status = res.status().as_u16();
        self.finish(status, None, res)
    }

    async fn handle_error(
        &mut self,
        _ctx: &HttpContext,
        err: hudsucker::hyper_util::client::legacy::Error,
    ) -> Response<Body> {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        while let Some(e) = source {
            if let Some(ce @ ConnectError::Refused { .. }) = e.downcast_ref::<ConnectError>() {
                let res = reply(403, "upstream-address-refused", &ce.to_string());
                return self.finish(403, Some("upstream-address-refused".into()), res);
            }
            source = e.source();
        }
        let why = error_chain(&err);
        tracing::warn!("proxy: upstream failed: {why}");
        let res = reply(502, "upstream-error", &why);
        self.finish(502, Some("upstream-error".into()), res)
    }

    async fn should_intercept_connect(&mut self, _ctx: &HttpContext, _req: &Request<Body>) -> bool {
        // Always: a tunnel that is not intercepted would skip every check.
        true
    }

    async fn should_intercept_tls(
        &mut self,
        _ctx: &HttpContext,
        hello: rustls::server::ClientHello<'_>,
    ) -> bool {
        if let Some(t) = self.tunnel.as_mut() {
            t.sni = Some(match hello.server_name() {
                Some(name) => policy::check_name(name).map_err(|_| name.to_string()),
                None => Err(String::new()),
            });
            if let Some(Err(e)) = &t.sni {
                if e.is_empty() {
                    t.sni = None;
                }
            }
        }
        // Always: a TLS stream that is not intercepted would be tunnelled raw.
        true
    }
}

/// An error and its sources on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
