//! The CONNECT half of the [`Handler`]: the tunnel's host and port are
//! checked (allowlist, and the DLP over the name) and remembered for the
//! requests inside it.

use std::sync::Arc;
use std::time::Instant;

use hudsucker::hyper::{Request, Uri};
use hudsucker::{Body, RequestOrResponse};

use super::super::audit::{self, Record};
use super::super::policy::{self, Denied};
use super::super::reply::{audit_failed, Refusal};
use super::super::tunnel::Tunnel;
use super::{Handler, SENTINEL_AUTHORITY};

impl Handler {
    /// A refusal if the DLP finds something in host name `host`.
    pub(super) fn name_hit(&self, host: &str) -> Option<Refusal> {
        let h = self.shared.dlp.scan_name(host)?;
        Some(Refusal {
            status: 403,
            reason: format!("the host name matches DLP rule {}", h.rule),
            rule: h.rule,
        })
    }

    /// CONNECT: check host and port, remember the tunnel.
    pub(super) fn connect(&mut self, mut req: Request<Body>, start: Instant) -> RequestOrResponse {
        let authority = req.uri().authority().map(|a| a.as_str().to_string());
        let mut rec = Record {
            time: audit::now(),
            method: "CONNECT".into(),
            host: authority.clone().unwrap_or_default(),
            ..Record::default()
        };
        // Only over HTTP/1: a CONNECT on an HTTP/2 stream would make every
        // stream of one guest connection a tunnel of its own, each a MITM
        // connection `egress.max_connections` never counted.
        let h1 = req.version() <= hudsucker::hyper::Version::HTTP_11;
        let checked = (|| {
            if !h1 {
                return Err(Denied::Unsupported("CONNECT over HTTP/2".into()));
            }
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
        // The name goes to the DNS filter and upstream as SNI: no secret
        // in it (requests in the tunnel must name this same host).
        if let Some(r) = self.name_hit(&host) {
            rec.host = String::new();
            return self.refuse(rec, r, start).into();
        }
        rec.host = host.clone();
        rec.verdict = "allow";
        rec.status = 200;
        if let Err(e) = self.shared.audit.write(&rec) {
            return audit_failed(&e).into();
        }
        self.tunnel = Some(Arc::new(Tunnel {
            host,
            port,
            sni: None,
            tls: false,
        }));
        *req.uri_mut() = Uri::from_static(SENTINEL_AUTHORITY);
        req.into()
    }
}
