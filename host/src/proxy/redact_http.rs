//! Applying the [`Redactor`] to an upstream response on its way to the
//! guest: the reason phrase, header values, the body (decompressed first,
//! so it reaches the guest uncompressed) and trailers. The body streams:
//! [`RedactBody`] holds back at most [`Redactor::hold`] bytes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hudsucker::hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING};
use hudsucker::hyper::Response;
use hudsucker::Body;

use tokio::sync::{AcquireError, Semaphore, SemaphorePermit};

use super::redact::{Redactor, StreamRedactor};

/// Told the rules a body or trailer redaction matched (each at most once
/// per response), with where: `body` or `trailer NAME`.
pub type OnHits = Box<dyn FnMut(&[String], &str) + Send + Sync>;

/// Why a response cannot be passed on.
#[derive(Debug, thiserror::Error)]
#[error("the response cannot be checked: {0}")]
pub struct Undecodable(pub String);

/// Responses whose body is decoded with a large window (brotli: up to
/// 16 MiB, zstd: up to 8 MiB) at once, across the proxy; another such
/// response waits for a turn before its first byte is decoded. With at
/// most [`super::codings::MAX_RESPONSE_CODINGS`] layers each, this bounds
/// what responses can make the proxy hold (32 × 2 × 16 MiB) however many
/// the guest keeps open.
pub const MAX_LARGE_WINDOW_DECODES: usize = 32;
static LARGE_WINDOWS: Semaphore = Semaphore::const_new(MAX_LARGE_WINDOW_DECODES);

type Acquiring =
    Pin<Box<dyn Future<Output = Result<SemaphorePermit<'static>, AcquireError>> + Send + Sync>>;

/// A body's turn to decode with a large window.
enum Gate {
    /// No large window, or the turn has ended.
    Open,
    Waiting(Acquiring),
    Held {
        _turn: SemaphorePermit<'static>,
    },
}

/// Redact `res`'s head now and its body as it streams. Returns the
/// response and the head's hits as `RULE in PLACE`. `head_request`: the
/// response to a HEAD, whose body is empty whatever its headers say.
pub fn response(
    res: Response<Body>,
    r: &Arc<Redactor>,
    on_body_hits: OnHits,
    head_request: bool,
) -> Result<(Response<Body>, Vec<String>), Undecodable> {
    if r.is_empty() {
        return Ok((res, Vec::new()));
    }
    let s = res.status().as_u16();
    let bodiless = head_request || s == 204 || s == 304 || (100..200).contains(&s);
    // Before decoding, which takes the Content-Encoding away.
    let gate = if !bodiless && super::codings::large_window(res.headers()) {
        Gate::Waiting(Box::pin(LARGE_WINDOWS.acquire()))
    } else {
        Gate::Open
    };
    let res = if bodiless {
        // Nothing to decode; the headers still describe the entity.
        res
    } else {
        super::codings::response(res.headers()).map_err(Undecodable)?;
        let encoding = res
            .headers()
            .get_all(CONTENT_ENCODING)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        hudsucker::decode_response(res)
            .map_err(|_| Undecodable(format!("Content-Encoding {encoding:?}")))?
    };
    let (mut parts, body) = res.into_parts();
    let mut hits = Vec::new();
    if let Some(reason) = parts
        .extensions
        .get::<hudsucker::hyper::ext::ReasonPhrase>()
    {
        let mut copy = reason.as_bytes().to_vec();
        if !r.redact_all(&mut copy).is_empty() {
            // The canonical phrase for the status is sent instead.
            parts
                .extensions
                .remove::<hudsucker::hyper::ext::ReasonPhrase>();
            hits.push("reason phrase".to_string());
        }
    }
    for (rule, place) in redact_headers(&mut parts.headers, r, "header") {
        hits.push(format!("{rule} in {place}"));
    }
    let body = RedactBody {
        gate,
        inner: body,
        stream: StreamRedactor::new(Arc::clone(r)),
        redactor: Arc::clone(r),
        trailers: None,
        ended: false,
        seen: Vec::new(),
        on_hits: on_body_hits,
    };
    Ok((
        Response::from_parts(parts, Body::from(http_body_util::BodyExt::boxed(body))),
        hits,
    ))
}

/// Redact every header value in place, and remove every header whose
/// name holds a secret (a name cannot be overwritten into another valid
/// one that says anything); `(rule, "KIND NAME")` per hit, with the name
/// given as `(name)` when it was the name.
pub fn redact_headers(h: &mut HeaderMap, r: &Redactor, kind: &str) -> Vec<(String, String)> {
    let mut hits = Vec::new();
    // One search over every name and value, joined by a byte neither
    // holds, finds whatever a search of each would (a form inside one is
    // inside the whole); only a hit needs them one by one.
    let mut joined =
        Vec::with_capacity(h.iter().map(|(n, v)| n.as_str().len() + v.len() + 2).sum());
    for (name, value) in h.iter() {
        joined.extend_from_slice(name.as_str().as_bytes());
        joined.push(b'\n');
        joined.extend_from_slice(value.as_bytes());
        joined.push(b'\n');
    }
    if !r.finds(&joined) {
        return hits;
    }
    let named: Vec<HeaderName> = h
        .keys()
        .filter(|n| r.finds(n.as_str().as_bytes()))
        .cloned()
        .collect();
    for name in named {
        let mut bytes = name.as_str().as_bytes().to_vec();
        for rule in r.redact_all(&mut bytes) {
            hits.push((rule, format!("{kind} (name)")));
        }
        h.remove(&name);
    }
    for (name, value) in h.iter_mut() {
        // Copied (to be overwritten) only when there is something to redact.
        if !r.finds(value.as_bytes()) {
            continue;
        }
        let mut bytes = value.as_bytes().to_vec();
        let found = r.redact_all(&mut bytes);
        if found.is_empty() {
            continue;
        }
        // Only `*` replaced visible bytes, so the value stays valid.
        if let Ok(v) = HeaderValue::from_bytes(&bytes) {
            *value = v;
        } else {
            *value = HeaderValue::from_static("*");
        }
        for rule in found {
            hits.push((rule, format!("{kind} {name}")));
        }
    }
    hits
}

/// A response body with every secret overwritten.
struct RedactBody {
    gate: Gate,
    inner: Body,
    stream: StreamRedactor,
    redactor: Arc<Redactor>,
    /// Trailers waiting until the held-back data has gone out.
    trailers: Option<HeaderMap>,
    ended: bool,
    /// `RULE in PLACE` already reported.
    seen: Vec<String>,
    on_hits: OnHits,
}

impl RedactBody {
    fn report(&mut self, hits: Vec<String>, place: &str) {
        let new: Vec<String> = hits
            .into_iter()
            .filter(|h| !self.seen.contains(&format!("{h} in {place}")))
            .collect();
        if !new.is_empty() {
            (self.on_hits)(&new, place);
            self.seen
                .extend(new.iter().map(|h| format!("{h} in {place}")));
        }
    }
}

type Item = Result<Frame<Bytes>, hudsucker::Error>;

impl http_body::Body for RedactBody {
    type Data = Bytes;
    type Error = hudsucker::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let this = &mut *self;
        loop {
            if let Some(t) = this.trailers.take() {
                return Poll::Ready(Some(Ok(Frame::trailers(t))));
            }
            if this.ended {
                this.gate = Gate::Open;
                return Poll::Ready(None);
            }
            if let Gate::Waiting(turn) = &mut this.gate {
                this.gate = match turn.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(p)) => Gate::Held { _turn: p },
                    // Never closed; were it, decoding goes on.
                    Poll::Ready(Err(_)) => Gate::Open,
                };
            }
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(f))) => f,
                Poll::Ready(None) => {
                    this.ended = true;
                    let (out, hits) = this.stream.finish();
                    this.report(hits, "body");
                    if out.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
            };
            let out = match frame.into_data() {
                // The inner body knows this was its last chunk (its
                // Content-Length is reached): the held-back bytes go out
                // with it, instead of after a further poll that waits
                // for the upstream side to close the stream (at once with
                // hyper's HTTP/1 client today; the bench measures no
                // difference, see docs/performance.md).
                Ok(data) if this.inner.is_end_stream() => {
                    this.ended = true;
                    let (out, hits) = this.stream.push_last(&data);
                    this.report(hits, "body");
                    if out.is_empty() {
                        continue;
                    }
                    out
                }
                Ok(data) => {
                    let (out, hits) = this.stream.push(&data);
                    this.report(hits, "body");
                    out
                }
                Err(frame) => {
                    let Ok(mut t) = frame.into_trailers() else {
                        continue; // an unknown frame kind: dropped
                    };
                    let (out, hits) = this.stream.finish();
                    this.report(hits, "body");
                    let redactor = Arc::clone(&this.redactor);
                    for (rule, place) in redact_headers(&mut t, &redactor, "trailer") {
                        this.report(vec![rule], &place);
                    }
                    this.trailers = Some(t);
                    this.ended = true;
                    out
                }
            };
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // An empty body (Content-Length: 0) is over before its first poll.
        let done = self.ended || (self.stream.held() == 0 && self.inner.is_end_stream());
        done && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // Redaction keeps lengths; held-back bytes are still to come.
        let held = self.stream.held() as u64;
        let inner = self.inner.size_hint();
        let mut h = SizeHint::new();
        h.set_lower(inner.lower() + held);
        if let Some(u) = inner.upper() {
            h.set_upper(u + held);
        }
        h
    }
}

#[cfg(test)]
#[path = "redact_http_tests.rs"]
mod tests;
