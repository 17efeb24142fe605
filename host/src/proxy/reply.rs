//! Replies from the proxy itself: refusals, and the audit-failure reply.

use hudsucker::hyper::header::HeaderValue;
use hudsucker::hyper::{Response, StatusCode, Uri};
use hudsucker::Body;

use super::audit;
use super::body::BodyRefusal;
use super::policy::Denied;

/// A refusal: status, rule and a reason safe to show the client.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) status: u16,
    pub(super) rule: String,
    pub(super) reason: String,
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
pub(super) fn reply(status: u16, rule: &str, reason: &str) -> Response<Body> {
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
pub(super) fn target(uri: &Uri) -> String {
    uri.path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into())
}

/// The reply when the audit log cannot be written: fail closed.
pub(super) fn audit_failed(e: &audit::AuditError) -> Response<Body> {
    tracing::error!("proxy: {e}; refusing requests until it can be written");
    reply(503, "audit-log-unwritable", &e.to_string())
}

/// An error and its sources on one line.
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
