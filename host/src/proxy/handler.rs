//! The hudsucker handler: every request is checked against the allowlist,
//! scanned by DLP, given its route's credential, and audited.
//!
//! hudsucker clones the handler for each CONNECT tunnel and then for each
//! request inside it, so the tunnel's host and TLS SNI, recorded when the
//! tunnel opens, travel with every inner request.

use std::sync::Arc;
use std::time::Instant;

use hudsucker::hyper::{Method, Request, Response, Uri};
use hudsucker::{Body, HttpContext, HttpHandler, RequestOrResponse};

use super::audit::{self, AuditLog, Record};
use super::body_stream::{prepare, AuditOnRefusal, Prepared, StreamState};
use super::connector::{ConnectError, Connector};
use super::dlp::Dlp;
use super::inject::Injections;
use super::policy::{self, Denied};
use super::reply::{audit_failed, error_chain, reply, target, Refusal};
use super::tunnel::{destination, Tunnel};
use super::websocket;
use crate::manifest::Route;

pub use super::tunnel::SENTINEL_AUTHORITY;

#[path = "handler_connect.rs"]
mod connect;
#[path = "handler_refuse.rs"]
mod refuse;

/// What every handler clone shares.
#[derive(Debug)]
pub struct Shared {
    /// The allowlist.
    pub routes: Vec<Route>,
    /// Compiled DLP rules.
    pub dlp: Arc<Dlp>,
    /// Every secret's forms, overwritten in responses.
    pub redactor: Arc<super::redact::Redactor>,
    /// Each route's injected header, rendered once.
    pub injections: Injections,
    /// Audit log.
    pub audit: AuditLog,
    /// Largest request body (and WebSocket message), bytes.
    pub max_body: u64,
    /// HTTP/1.1-only upstream connector for WebSocket upgrades.
    pub ws_connector: Connector,
}

/// An allowed request waiting for its response to be audited.
#[derive(Clone, Debug)]
struct Pending {
    record: Record,
    start: Instant,
    /// Set when the body is streaming (`body_stream`).
    stream: Option<Arc<StreamState>>,
}

/// The handler.
#[derive(Clone, Debug)]
pub struct Handler {
    shared: Arc<Shared>,
    /// Shared by the tunnel's requests (hudsucker clones the handler for
    /// each).
    tunnel: Option<Arc<Tunnel>>,
    pending: Option<Pending>,
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
        let (scheme, host, port) = match destination(self.tunnel.as_deref(), &req) {
            Ok(d) => d,
            Err(d) => return self.refuse_unread(req, rec, d.into(), start).into(),
        };
        if self.tunnel.is_none() {
            if let Some(r) = self.name_hit(&host) {
                rec.host = String::new();
                return self.refuse_unread(req, rec, r, start).into();
            }
        }
        rec.host = host.clone();
        let shared = self.shared.clone();
        let route = match policy::route_for(&shared.routes, &host, port).and_then(|r| {
            policy::check_request(r, &host, req.method().as_str(), req.uri().path()).map(|()| r)
        }) {
            Ok(r) => r,
            Err(d) => return self.refuse_unread(req, rec, d.into(), start).into(),
        };
        if route.inject.is_some() && scheme == "http" {
            let d = Denied::InjectNeedsTls(host.clone());
            return self.refuse_unread(req, rec, d.into(), start).into();
        }
        let ws = websocket::is_upgrade(&req);
        if req.method() == Method::CONNECT
            || (req.headers().contains_key("upgrade") && !ws)
            || req.method().as_str() == "PRI"
        {
            let d = Denied::Unsupported("protocol upgrades other than WebSocket".into());
            return self.refuse_unread(req, rec, d.into(), start).into();
        }
        // DLP on the request line and headers (before injection).
        let inject = route.inject.as_ref();
        let mut hit = shared.dlp.scan_target(&pq);
        if hit.is_none() {
            hit = req.headers().iter().find_map(|(name, value)| {
                if inject.is_some_and(|i| i.header == name.as_str()) {
                    return None; // replaced below
                }
                // The place is only spelled out for a hit (hot path).
                let v = value.as_bytes();
                shared
                    .dlp
                    .scan(v, "")
                    .or_else(|| {
                        super::dlp::has_escapes(v)
                            .then(|| shared.dlp.scan(&super::dlp::percent_decode(v), ""))
                            .flatten()
                    })
                    .map(|h| super::dlp::Hit {
                        place: format!("header {name}"),
                        ..h
                    })
            });
        }
        if hit.is_none() {
            let names = req.headers().keys().map(|n| n.as_str());
            hit = shared.dlp.scan_head_names(req.method().as_str(), names);
        }
        if let Some(h) = hit {
            // The audit log names the rule, never the value: a hit in the
            // target or the method leaves that field empty.
            match h.place.as_str() {
                "url" => rec.path = String::new(),
                "method" => rec.method = String::new(),
                _ => {}
            }
            let r = Refusal {
                status: 403,
                reason: format!("request {} matches DLP rule {}", h.place, h.rule),
                rule: h.rule,
            };
            return self.refuse_unread(req, rec, r, start).into();
        }
        if ws {
            // Boxed, as it is large (see `request_future_stays_small`).
            let open = self.websocket(req, rec, start, (scheme, &host, port, &pq), route);
            return Box::pin(open).await;
        }
        let (mut parts, body) = req.into_parts();
        let encoding = match super::codings::request(&mut parts.headers, inject.is_some()) {
            Ok(e) => e,
            Err(r) => {
                super::body::drain(body);
                return self.refuse(rec, r, start).into();
            }
        };
        let form = parts
            .headers
            .get(hudsucker::hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        // Credential injection: whatever the guest sent is replaced (after
        // the header scan above, before the body is read, so a large body
        // can stream).
        if let Err(r) = shared
            .injections
            .apply(&shared.routes, route, &mut parts.headers)
        {
            super::body::drain(body);
            return self.refuse(rec, r, start).into();
        }
        // Only a body that turns out large needs this (body_stream).
        let on_refusal = || AuditOnRefusal {
            shared: shared.clone(),
            record: Record {
                verdict: "allow",
                ..rec.clone()
            },
            start,
        };
        // No reading for an empty body; boxed, as the upgrade above.
        let prepared = if http_body::Body::is_end_stream(&body) {
            Ok(Prepared::Whole(bytes::Bytes::new()))
        } else {
            Box::pin(prepare(
                body,
                encoding.as_deref(),
                form,
                shared.dlp.clone(),
                shared.max_body,
                on_refusal,
            ))
            .await
        };
        let (body, stream) = match prepared {
            Ok(Prepared::Whole(b)) => {
                rec.bytes_up = b.len() as u64;
                (Body::from(b), None)
            }
            Ok(Prepared::Streaming(b, state)) => (b, Some(state)),
            Err((r, body)) => {
                super::body::drain(body);
                return self.refuse(rec, r.into(), start).into();
            }
        };
        // From the `String` itself: parsing a `&str` would copy it.
        match Uri::try_from(format!("{scheme}://{host}:{port}{pq}")) {
            Ok(u) => parts.uri = u,
            Err(_) => {
                let uri = format!("{scheme}://{host}:{port}{pq}");
                let d = Denied::Unsupported(format!("cannot rebuild URI {uri:?}"));
                return self.refuse(rec, d.into(), start).into();
            }
        }
        rec.verdict = "allow";
        self.pending = Some(Pending {
            record: rec,
            start,
            stream,
        });
        Request::from_parts(parts, body).into()
    }

    /// A checked WebSocket upgrade: inject, open upstream, audit the reply.
    async fn websocket(
        &mut self,
        mut req: Request<Body>,
        rec: Record,
        start: Instant,
        (scheme, host, port, pq): (&str, &str, u16, &str),
        route: &Route,
    ) -> RequestOrResponse {
        let shared = self.shared.clone();
        if let Err(r) = shared
            .injections
            .apply(&shared.routes, route, req.headers_mut())
        {
            return self.refuse(rec, r, start).into();
        }
        let uri = match format!("{scheme}://{host}:{port}{pq}").parse::<Uri>() {
            Ok(u) => u,
            Err(_) => {
                let d = Denied::Unsupported(format!("cannot rebuild URI for {host:?}"));
                return self.refuse(rec, d.into(), start).into();
            }
        };
        let rec = Record {
            verdict: "allow",
            ..rec
        };
        self.pending = Some(Pending {
            record: rec.clone(),
            start,
            stream: None,
        });
        match websocket::open(shared, req, uri, rec).await {
            Ok(res) => self.respond(res).into(),
            Err(e) if e.refused() => {
                let res = reply(403, "upstream-address-refused", &e.to_string());
                self.finish(403, Some("upstream-address-refused".into()), res)
                    .into()
            }
            Err(e) => {
                let why = error_chain(&e);
                tracing::warn!("proxy: websocket upstream failed: {why}");
                let res = reply(502, "upstream-error", &why);
                self.finish(502, Some("upstream-error".into()), res).into()
            }
        }
    }

    /// Audit an allowed request once its outcome is known.
    fn finish(&mut self, status: u16, rule: Option<String>, res: Response<Body>) -> Response<Body> {
        self.finish_redacted(status, rule, res, Vec::new())
    }

    /// [`Self::finish`], naming what was redacted from the response head.
    fn finish_redacted(
        &mut self,
        status: u16,
        rule: Option<String>,
        res: Response<Body>,
        redacted: Vec<String>,
    ) -> Response<Body> {
        let Some(p) = self.pending.take() else {
            return res;
        };
        let bytes_up = p.stream.as_ref().map_or(p.record.bytes_up, |s| s.sent());
        let rec = Record {
            status,
            rule,
            bytes_up,
            duration_ms: p.start.elapsed().as_millis() as u64,
            redacted,
            ..p.record
        };
        match self.shared.audit.write(&rec) {
            Ok(()) => res,
            Err(e) => audit_failed(&e),
        }
    }

    /// Pass an upstream response on: redacted ([`super::redact_http`]),
    /// then audited.
    fn respond(&mut self, res: Response<Body>) -> Response<Body> {
        let status = res.status().as_u16();
        // No host secret reaches the guest: the head now, the body as it
        // streams (each body hit gets its own `redact` audit line).
        let base = self.pending.as_ref().map(|p| Record {
            time: String::new(),
            verdict: "redact",
            status,
            ..p.record.clone()
        });
        let shared = Arc::clone(&self.shared);
        let on_body_hits: super::redact_http::OnHits = Box::new(move |rules, place| {
            let Some(base) = &base else { return };
            tracing::info!(host = %base.host, "proxy: redacted {rules:?} from a response {place}");
            let rec = Record {
                time: audit::now(),
                rule: rules.first().cloned(),
                redacted: rules.iter().map(|r| format!("{r} in {place}")).collect(),
                ..base.clone()
            };
            if let Err(e) = shared.audit.write(&rec) {
                tracing::error!("proxy: audit log: {e}");
            }
        });
        let head = self
            .pending
            .as_ref()
            .is_some_and(|p| p.record.method == "HEAD");
        match super::redact_http::response(res, &self.shared.redactor, on_body_hits, head) {
            Ok((res, redacted)) => {
                if !redacted.is_empty() {
                    tracing::info!("proxy: redacted {redacted:?} from a response head");
                }
                self.finish_redacted(status, None, res, redacted)
            }
            Err(e) => {
                let res = reply(502, "response-encoding-unscannable", &e.to_string());
                self.finish(502, Some("response-encoding-unscannable".into()), res)
            }
        }
    }
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
        self.respond(res)
    }

    async fn handle_error(
        &mut self,
        _ctx: &HttpContext,
        err: hudsucker::hyper_util::client::legacy::Error,
    ) -> Response<Body> {
        // A streaming body refused mid-way: its task has audited it.
        let refused = self
            .pending
            .as_ref()
            .and_then(|p| p.stream.as_ref()?.refusal());
        if let Some(r) = refused {
            self.pending = None;
            let (status, rule) = r.status_rule();
            return reply(status, &rule, &r.to_string());
        }
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
        // Before the tunnel's first request: not yet shared, not copied.
        if let Some(t) = self.tunnel.as_mut().map(Arc::make_mut) {
            t.tls = true;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// hudsucker moves the request future (within its own) several times
    /// per request, copying all of it: the upgrade and body-reading
    /// futures are boxed (7,448 bytes before, 2,192 after).
    #[test]
    fn request_future_stays_small() {
        fn size<'a, 'b, F, Fut>(_: F) -> usize
        where
            F: FnOnce(&'a mut Handler, &'b HttpContext, Request<Body>) -> Fut,
        {
            std::mem::size_of::<Fut>()
        }
        let n = size(<Handler as HttpHandler>::handle_request);
        assert!(n <= 3 * 1024, "handle_request future is {n} bytes");
    }
}
