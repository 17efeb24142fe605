//! Refusals: the audit line (with no secret in it) and the reply.

use std::time::Instant;

use hudsucker::hyper::{Request, Response};
use hudsucker::Body;

use super::super::audit::Record;
use super::super::reply::{audit_failed, reply, Refusal};
use super::Handler;

impl Handler {
    /// Write an audit line for a refusal and build the reply (503 if the
    /// line cannot be written).
    pub(super) fn refuse(&self, mut rec: Record, r: Refusal, start: Instant) -> Response<Body> {
        // The logs name rules, never a secret: a field holding one is left
        // out whatever refused the request (the route checks run before
        // the DLP, and their reasons quote the method or path).
        let dlp = &self.shared.dlp;
        let mut held = false;
        if !rec.host.is_empty() && dlp.scan_name(&rec.host).is_some() {
            rec.host.clear();
            held = true;
        }
        if !rec.path.is_empty() && dlp.scan_target(&rec.path).is_some() {
            rec.path.clear();
            held = true;
        }
        if !rec.method.is_empty() && dlp.scan_head_names(&rec.method, [].into_iter()).is_some() {
            rec.method.clear();
            held = true;
        }
        let reason = if held {
            "(the reason is left out: the request holds a secret)"
        } else {
            r.reason.as_str()
        };
        tracing::info!(host = %rec.host, rule = %r.rule, "proxy: refused: {reason}");
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

    /// [`Handler::refuse`] for a request whose body is still unread: it is
    /// read and thrown away (within [`super::body::DRAIN`]) while the reply
    /// goes out, so the client reads the refusal instead of a reset and
    /// the connection stays usable (a refused `git push` then says 403).
    pub(super) fn refuse_unread(
        &self,
        req: Request<Body>,
        rec: Record,
        r: Refusal,
        start: Instant,
    ) -> Response<Body> {
        let body = req.into_body();
        if !http_body::Body::is_end_stream(&body) {
            super::super::body::drain(body);
        }
        self.refuse(rec, r, start)
    }
}
