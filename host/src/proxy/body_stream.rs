//! Request bodies too large to hold: forwarded upstream while they are
//! scanned, never ahead of the scan.
//!
//! A body is read whole (and scanned) while it stays under
//! [`STREAM_AFTER`] bytes, which covers almost every API request. A larger
//! plain body is then streamed: each chunk is scanned before any of it is
//! sent, and the last [`Streamer::hold`] bytes are held back until the next
//! chunk has been scanned too, because a secret may straddle the seam (the
//! percent- and escape-decoded views lag the raw bytes: `Dlp::hold`). A hit ends the upstream body with an error, so the
//! upstream request is aborted before the secret, or any part of it the
//! scan had not yet cleared, leaves; the client gets the 403, and the
//! refusal is audited. Compressed bodies are still read whole (the
//! decompressed view cannot be tied back to compressed bytes for the
//! hold-back), within `egress.max_body_bytes` like every body.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use http_body::Frame;
use hudsucker::Body;

use super::audit::Record;
use super::body::{drain, next_data, read_into, BodyRefusal, Scan};
use super::dlp::Dlp;

/// A body still growing past this many bytes is streamed, not held.
pub const STREAM_AFTER: usize = 256 * 1024;

/// Chunks queued between the scanner and the upstream.
const QUEUE: usize = 4;

/// What the handler forwards.
pub enum Prepared {
    /// The whole body, read and scanned.
    Whole(Bytes),
    /// A large body, forwarded as it is scanned.
    Streaming(Body, Arc<StreamState>),
}

/// What a streaming body's task tells the handler.
#[derive(Debug, Default)]
pub struct StreamState {
    refusal: Mutex<Option<BodyRefusal>>,
    sent: AtomicU64,
}

impl StreamState {
    /// The refusal that ended the body, if one did.
    pub fn refusal(&self) -> Option<BodyRefusal> {
        self.refusal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Bytes sent upstream so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// The error a refused streaming body ends with (upstream sees an
/// aborted request).
#[derive(Debug, thiserror::Error)]
#[error("request body refused while streaming: {0}")]
pub struct StreamRefused(pub BodyRefusal);

/// How to audit a refusal found after the request went upstream.
#[derive(Clone, Debug)]
pub struct AuditOnRefusal {
    /// The proxy's shared state (its audit log).
    pub shared: Arc<super::handler::Shared>,
    /// The request's record as allowed.
    pub record: Record,
    /// When the request started.
    pub start: std::time::Instant,
}

/// Read `body`, scanning it: whole if it ends within [`STREAM_AFTER`]
/// bytes (or is compressed), else streaming. A refusal before anything
/// was sent returns the body too, so the caller can drain it.
pub async fn prepare(
    mut body: Body,
    encoding: Option<&str>,
    form: bool,
    dlp: Arc<Dlp>,
    limit: u64,
    audit: impl FnOnce() -> AuditOnRefusal,
) -> Result<Prepared, (BodyRefusal, Body)> {
    if http_body::Body::is_end_stream(&body) {
        return Ok(Prepared::Whole(Bytes::new()));
    }
    let mut scan = match Scan::for_body(&body, encoding, form, dlp.clone(), limit) {
        Ok(s) => s,
        Err(r) => return Err((r, body)),
    };
    // Compressed bodies are read whole (see the module doc).
    let stop_at = if scan.compressed() {
        usize::MAX
    } else {
        STREAM_AFTER
    };
    let (buf, ended) = match read_into(&mut body, &mut scan, stop_at).await {
        Ok(read) => read,
        Err(r) => return Err((r, body)),
    };
    if !ended {
        let state = Arc::new(StreamState::default());
        let streamer = Streamer {
            hold: dlp.hold(),
            scan,
            state: Arc::clone(&state),
            audit: audit(),
        };
        return Ok(Prepared::Streaming(streamer.start(body, buf), state));
    }
    match scan.finish() {
        Ok(()) => Ok(Prepared::Whole(buf.freeze())),
        Err(r) => Err((r, body)),
    }
}

/// The task that scans the rest of a streaming body and feeds the
/// upstream.
struct Streamer {
    /// Bytes held back until the next chunk is scanned.
    hold: usize,
    scan: Scan,
    state: Arc<StreamState>,
    audit: AuditOnRefusal,
}

type Item = Result<Frame<Bytes>, hudsucker::Error>;

impl Streamer {
    /// Spawn the task; `pending` is what was read (and scanned) so far.
    fn start(self, body: Body, pending: BytesMut) -> Body {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Item>(QUEUE);
        tokio::spawn(self.run(body, pending, tx));
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Body::from(http_body_util::StreamBody::new(stream))
    }

    async fn run(
        mut self,
        mut body: Body,
        mut pending: BytesMut,
        tx: tokio::sync::mpsc::Sender<Item>,
    ) {
        loop {
            if pending.len() > self.hold {
                let out = pending.split_to(pending.len() - self.hold).freeze();
                if !self.send(&tx, out).await {
                    return; // the upstream request is gone
                }
            }
            let step = match next_data(&mut body).await {
                Ok(Some(d)) => self.scan.push(&d).map(|()| Some(d)),
                Ok(None) => self.scan.finish().map(|()| None),
                Err(r) => Err(r),
            };
            match step {
                Ok(Some(d)) => pending.extend_from_slice(&d),
                Ok(None) => {
                    let rest = pending.split().freeze();
                    if !rest.is_empty() {
                        self.send(&tx, rest).await;
                    }
                    return;
                }
                Err(r) => return self.refuse(r, body, tx).await,
            }
        }
    }

    async fn send(&self, tx: &tokio::sync::mpsc::Sender<Item>, data: Bytes) -> bool {
        let n = data.len() as u64;
        let ok = tx.send(Ok(Frame::data(data))).await.is_ok();
        if ok {
            self.state.sent.fetch_add(n, Ordering::Relaxed);
        }
        ok
    }

    /// End the upstream body with an error, audit, drain the client.
    async fn refuse(self, r: BodyRefusal, body: Body, tx: tokio::sync::mpsc::Sender<Item>) {
        let (status, rule) = r.status_rule();
        tracing::info!(host = %self.audit.record.host, %rule, "proxy: refused while streaming: {r}");
        *self
            .state
            .refusal
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(r.clone());
        let err = std::io::Error::other(StreamRefused(r));
        let _ = tx.send(Err(hudsucker::Error::Io(err))).await;
        let rec = Record {
            verdict: "deny",
            rule: Some(rule),
            status,
            bytes_up: self.state.sent(),
            duration_ms: self.audit.start.elapsed().as_millis() as u64,
            ..self.audit.record
        };
        if let Err(e) = self.audit.shared.audit.write(&rec) {
            tracing::error!("proxy: audit log: {e}");
        }
        drain(body);
    }
}

#[cfg(test)]
#[path = "body_stream_tests.rs"]
mod tests;
