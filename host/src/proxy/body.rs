//! Reading a request body: bounded by `egress.max_body_bytes`, scanned
//! chunk by chunk as it arrives, and decompressed (gzip, deflate) into the
//! scanner with the same bound so a decompression bomb is refused.
//!
//! [`read_scanned`] holds the body until it has been scanned, so a hit can
//! still be answered with a clean 403 before anything reaches the
//! upstream; `body_stream` streams large bodies through the same [`Scan`].

use std::io::Write;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use flate2::write::{GzDecoder, ZlibDecoder};
use http_body_util::BodyExt;

use super::dlp::{Dlp, Hit, StreamScanner};

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyRefusal {
    /// DLP found something.
    #[error("request body matches DLP rule {}", .0.rule)]
    Dlp(Hit),
    /// Larger than the limit.
    #[error("request body is larger than {0} bytes (egress.max_body_bytes)")]
    TooLarge(u64),
    /// Decompresses to more than the limit.
    #[error("request body decompresses to more than {0} bytes (egress.max_body_bytes)")]
    Bomb(u64),
    /// A content encoding the proxy cannot inspect.
    #[error("content-encoding {0:?} cannot be inspected; send gzip, deflate or identity")]
    Encoding(String),
    /// The compressed data is corrupt.
    #[error("compressed request body is corrupt: {0}")]
    Corrupt(String),
    /// The client's body stream failed.
    #[error("reading the request body failed: {0}")]
    Read(String),
    /// Nothing of the body came for [`BODY_IDLE`].
    #[error("no request body data for {} s", BODY_IDLE.as_secs())]
    Idle,
    /// The proxy holds [`MAX_BUFFERED`] bytes of request bodies already
    /// and none came free within [`BODY_IDLE`].
    #[error("the proxy is holding {} MiB of request bodies; try again", MAX_BUFFERED >> 20)]
    Busy,
}

/// Longest wait for the next piece of a request body (and for room to
/// hold it): a client that stops sending mid-body gets 408.
pub const BODY_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// Bytes of request bodies the proxy holds while reading them, across all
/// requests: many clients each sending part of a body and then nothing
/// cannot make it hold more (the rest wait for room, then get 503).
pub const MAX_BUFFERED: usize = 256 << 20;

/// [`MAX_BUFFERED`] in KiB permits.
static BUFFERED: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_BUFFERED >> 10);

impl BodyRefusal {
    /// Status code and rule name for the reply and the audit line.
    pub fn status_rule(&self) -> (u16, String) {
        match self {
            BodyRefusal::Dlp(h) => (403, h.rule.clone()),
            BodyRefusal::TooLarge(_) => (413, "body-too-large".into()),
            BodyRefusal::Bomb(_) => (413, "decompression-limit".into()),
            BodyRefusal::Encoding(_) => (415, "unsupported-encoding".into()),
            BodyRefusal::Corrupt(_) => (400, "bad-compressed-body".into()),
            BodyRefusal::Read(_) => (400, "body-read-error".into()),
            BodyRefusal::Idle => (408, "request-body-idle".into()),
            BodyRefusal::Busy => (503, "proxy-busy".into()),
        }
    }
}

/// Feeds decompressed bytes to a scanner, counting them.
struct ScanSink {
    scanner: StreamScanner,
    limit: u64,
    hit: Option<Hit>,
    over: bool,
}

impl Write for ScanSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.scanner.scanned() + buf.len() as u64 > self.limit {
            self.over = true;
            return Err(std::io::Error::other("decompression limit"));
        }
        if self.hit.is_none() {
            self.hit = self.scanner.push(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Decoder {
    Gzip(GzDecoder<ScanSink>),
    Zlib(ZlibDecoder<ScanSink>),
}

impl Decoder {
    fn new(encoding: &str, dlp: Arc<Dlp>, limit: u64) -> Result<Option<Decoder>, BodyRefusal> {
        let sink = || ScanSink {
            scanner: StreamScanner::new(dlp.clone()),
            limit,
            hit: None,
            over: false,
        };
        match encoding.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(None),
            "gzip" | "x-gzip" => Ok(Some(Decoder::Gzip(GzDecoder::new(sink())))),
            "deflate" => Ok(Some(Decoder::Zlib(ZlibDecoder::new(sink())))),
            other => Err(BodyRefusal::Encoding(other.to_string())),
        }
    }

    fn feed(&mut self, data: Option<&[u8]>) -> Result<(), BodyRefusal> {
        let res = match (self as &mut Decoder, data) {
            (Decoder::Gzip(d), Some(b)) => d.write_all(b),
            (Decoder::Zlib(d), Some(b)) => d.write_all(b),
            (Decoder::Gzip(d), None) => d.try_finish(),
            (Decoder::Zlib(d), None) => d.try_finish(),
        };
        let sink = match self {
            Decoder::Gzip(d) => d.get_ref(),
            Decoder::Zlib(d) => d.get_ref(),
        };
        if let Some(hit) = &sink.hit {
            return Err(BodyRefusal::Dlp(hit.clone()));
        }
        if sink.over {
            return Err(BodyRefusal::Bomb(sink.limit));
        }
        res.map_err(|e| BodyRefusal::Corrupt(e.to_string()))
    }
}

/// Percent-decodes a form body chunk by chunk into its own scanner; an
/// escape split across chunks is carried over.
struct FormScan {
    scanner: StreamScanner,
    carry: Vec<u8>,
}

impl FormScan {
    fn push(&mut self, data: &[u8], last: bool) -> Option<Hit> {
        self.carry.extend_from_slice(data);
        let n = self.carry.len();
        let keep = if last {
            0
        } else if n >= 1 && self.carry[n - 1] == b'%' {
            1
        } else if n >= 2 && self.carry[n - 2] == b'%' {
            2
        } else {
            0
        };
        let decoded = super::dlp::percent_decode(&self.carry[..n - keep]);
        self.carry.drain(..n - keep);
        self.scanner.push(&decoded)
    }
}

/// The scanning state of one request body, fed chunk by chunk: the raw
/// bytes, the percent-decoded view (forms, and any body from its first
/// `%`), and the decompressed view (gzip, deflate), all within `limit`.
pub struct Scan {
    dlp: Arc<Dlp>,
    limit: u64,
    decoder: Option<Decoder>,
    form: Option<FormScan>,
    raw: StreamScanner,
}

impl Scan {
    /// A scan for a body with this `Content-Encoding`; `form` says it is
    /// `application/x-www-form-urlencoded`.
    pub fn new(
        encoding: Option<&str>,
        form: bool,
        dlp: Arc<Dlp>,
        limit: u64,
    ) -> Result<Scan, BodyRefusal> {
        let decoder = match encoding {
            Some(e) => Decoder::new(e, dlp.clone(), limit)?,
            None => None,
        };
        let form = form.then(|| FormScan {
            scanner: StreamScanner::new(dlp.clone()),
            carry: Vec::new(),
        });
        Ok(Scan {
            raw: StreamScanner::new(dlp.clone()),
            dlp,
            limit,
            decoder,
            form,
        })
    }

    /// [`Scan::new`] for `body`, refusing at once a declared length over
    /// the limit.
    pub fn for_body<B: http_body::Body>(
        body: &B,
        encoding: Option<&str>,
        form: bool,
        dlp: Arc<Dlp>,
        limit: u64,
    ) -> Result<Scan, BodyRefusal> {
        if body.size_hint().lower() > limit {
            return Err(BodyRefusal::TooLarge(limit));
        }
        Scan::new(encoding, form, dlp, limit)
    }

    /// Is the body compressed (scanned decompressed)?
    pub fn compressed(&self) -> bool {
        self.decoder.is_some()
    }

    /// Scan the next chunk.
    pub fn push(&mut self, data: &[u8]) -> Result<(), BodyRefusal> {
        if self.raw.scanned() + data.len() as u64 > self.limit {
            return Err(BodyRefusal::TooLarge(self.limit));
        }
        let start_decoding = self.form.is_none() && self.decoder.is_none() && data.contains(&b'%');
        // The raw bytes before this chunk (taken only when needed, once).
        let before = start_decoding.then(|| self.raw.tail().to_vec());
        if let Some(hit) = self.raw.push(data) {
            return Err(BodyRefusal::Dlp(hit));
        }
        if let Some(before) = before {
            // Whatever the content type says, a body holding `%` escapes
            // is also scanned decoded (a secret sent as `%68%73...` hides
            // from the raw scan). Until now decoded and raw bytes were the
            // same, so the decoded scan starts with the raw tail.
            let mut f = FormScan {
                scanner: StreamScanner::new(self.dlp.clone()),
                carry: Vec::new(),
            };
            if let Some(hit) = f.push(&before, false) {
                return Err(BodyRefusal::Dlp(hit));
            }
            self.form = Some(f);
        }
        if let Some(d) = self.decoder.as_mut() {
            d.feed(Some(data))?;
        } else if let Some(hit) = self.form.as_mut().and_then(|f| f.push(data, false)) {
            return Err(BodyRefusal::Dlp(hit));
        }
        Ok(())
    }

    /// The body ended: scan what the decoded views still hold.
    pub fn finish(&mut self) -> Result<(), BodyRefusal> {
        if let Some(hit) = self.form.as_mut().and_then(|f| f.push(&[], true)) {
            return Err(BodyRefusal::Dlp(hit));
        }
        if let Some(d) = self.decoder.as_mut() {
            d.feed(None)?;
        }
        Ok(())
    }
}

/// Read, bound and scan `body` whole; `encoding` is its
/// `Content-Encoding`; `form` says it is
/// `application/x-www-form-urlencoded`, so it is also scanned
/// percent-decoded; any other plain body is too from its first `%`.
pub async fn read_scanned<B>(
    body: &mut B,
    encoding: Option<&str>,
    form: bool,
    dlp: Arc<Dlp>,
    limit: u64,
) -> Result<Bytes, BodyRefusal>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut scan = Scan::for_body(body, encoding, form, dlp, limit)?;
    let (buf, _) = read_into(body, &mut scan, usize::MAX).await?;
    scan.finish()?;
    Ok(buf.freeze())
}

/// Read `body` into a buffer through `scan` until it ends (`true`) or the
/// buffer holds `stop_at` bytes or more (`false`).
pub async fn read_into<B>(
    body: &mut B,
    scan: &mut Scan,
    stop_at: usize,
) -> Result<(BytesMut, bool), BodyRefusal>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    read_within(body, scan, stop_at, &BUFFERED).await
}

/// [`read_into`], holding what it reads within `budget` (KiB permits).
async fn read_within<B>(
    body: &mut B,
    scan: &mut Scan,
    stop_at: usize,
    budget: &tokio::sync::Semaphore,
) -> Result<(BytesMut, bool), BodyRefusal>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut buf = BytesMut::new();
    // Room in the budget for what is held here, until it is handed on.
    let mut room: Option<tokio::sync::SemaphorePermit<'_>> = None;
    while let Some(data) = next_data(body).await? {
        scan.push(&data)?;
        let kib = u32::try_from(data.len().div_ceil(1024)).unwrap_or(u32::MAX);
        let more = tokio::time::timeout(BODY_IDLE, budget.acquire_many(kib))
            .await
            .map_err(|_| BodyRefusal::Busy)?
            .map_err(|_| BodyRefusal::Busy)?;
        match room.as_mut() {
            Some(r) => r.merge(more),
            None => room = Some(more),
        }
        buf.extend_from_slice(&data);
        if buf.len() >= stop_at {
            return Ok((buf, false));
        }
    }
    Ok((buf, true))
}

/// The next data frame of `body` (trailers are skipped: not forwarded).
pub async fn next_data<B>(body: &mut B) -> Result<Option<Bytes>, BodyRefusal>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    loop {
        let Some(frame) = tokio::time::timeout(BODY_IDLE, body.frame())
            .await
            .map_err(|_| BodyRefusal::Idle)?
        else {
            break;
        };
        let frame = frame.map_err(|e| BodyRefusal::Read(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// How long, and how many bytes, a refused body is still read and thrown
/// away, so the client sees the refusal instead of a reset (HTTP/2 resets
/// a stream whose body is dropped before the reply is sent).
pub const DRAIN: (std::time::Duration, u64) = (std::time::Duration::from_secs(5), 16 << 20);

/// Read and discard what is left of a refused body, within [`DRAIN`].
pub fn drain<B>(mut body: B)
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut left = DRAIN.1;
        let _ = tokio::time::timeout(DRAIN.0, async {
            while let Some(Ok(frame)) = body.frame().await {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                left = left.saturating_sub(n);
                if left == 0 {
                    break;
                }
            }
        })
        .await;
    });
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;
