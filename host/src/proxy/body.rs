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
}

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
    let mut buf = BytesMut::new();
    while let Some(data) = next_data(body).await? {
        scan.push(&data)?;
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
    while let Some(frame) = body.frame().await {
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
mod tests {
    use super::*;
    use crate::manifest::Secret;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use http_body_util::{Full, StreamBody};

    fn dlp() -> Arc<Dlp> {
        Dlp::new(&[Secret {
            name: "k".into(),
            value: "horse-battery-stpl".into(),
        }])
        .unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    async fn run(
        chunks: Vec<Vec<u8>>,
        enc: Option<&str>,
        limit: u64,
    ) -> Result<Bytes, BodyRefusal> {
        let form = enc == Some("form");
        let enc = enc.filter(|e| *e != "form");
        let frames = chunks
            .into_iter()
            .map(|c| Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(c))));
        let body = StreamBody::new(futures_util_stream(frames));
        read_scanned(&mut { body }, enc, form, dlp(), limit).await
    }

    fn futures_util_stream<I: Iterator + Unpin>(
        it: I,
    ) -> impl hudsucker::futures::Stream<Item = I::Item> + Unpin {
        hudsucker::futures::stream::iter(it)
    }

    #[tokio::test]
    async fn bodies_table() {
        // Short enough (under 20 bytes) that piece matching (dlp::fragments)
        // stays out of the way: these cases test whole-secret seams.
        let secret = b"horse-battery-stpl".to_vec();
        let mut with_secret = vec![b'a'; 10_000];
        with_secret.extend_from_slice(&secret);
        let clean = vec![b'b'; 100_000];
        let (head, tail) = with_secret.split_at(10_010);
        // (name, chunks, encoding, limit, expected rule or None)
        type Case<'a> = (&'a str, Vec<Vec<u8>>, Option<&'a str>, u64, Option<&'a str>);
        let table: Vec<Case<'_>> = vec![
            ("clean", vec![clean.clone()], None, 1 << 20, None),
            (
                "form, escape split",
                vec![b"a=horse%2Dbattery%2".to_vec(), b"Dstpl".to_vec()],
                Some("form"),
                1 << 20,
                Some("secret:k:raw"),
            ),
            (
                // Escape probe regression: every character escaped, in a
                // body that does not say it is a form.
                "plain body, all escaped",
                vec![b"data=%68%6F%72%73%65%2D%62%61%74%74%65%72%79%2D%73%74%70%6C".to_vec()],
                None,
                1 << 20,
                Some("secret:k:raw"),
            ),
            (
                // The first `%` arrives after part of the secret.
                "plain body, escapes start mid-secret",
                vec![b"x horse-bat".to_vec(), b"tery-%73tpl".to_vec()],
                None,
                1 << 20,
                Some("secret:k:raw"),
            ),
            (
                "secret",
                vec![with_secret.clone()],
                None,
                1 << 20,
                Some("secret:k:raw"),
            ),
            (
                "split",
                vec![head.to_vec(), tail.to_vec()],
                None,
                1 << 20,
                Some("secret:k:raw"),
            ),
            (
                "too large",
                vec![clean.clone()],
                None,
                1000,
                Some("body-too-large"),
            ),
            (
                "gzip clean",
                vec![gzip(&clean)],
                Some("gzip"),
                1 << 20,
                None,
            ),
            (
                "gzip secret",
                vec![gzip(&with_secret)],
                Some("gzip"),
                1 << 20,
                Some("secret:k:raw"),
            ),
            (
                "deflate secret",
                vec![zlib(&with_secret)],
                Some("deflate"),
                1 << 20,
                Some("secret:k:raw"),
            ),
            (
                "gzip bomb",
                vec![gzip(&vec![0u8; 5 << 20])],
                Some("gzip"),
                1 << 20,
                Some("decompression-limit"),
            ),
            (
                "brotli",
                vec![clean.clone()],
                Some("br"),
                1 << 20,
                Some("unsupported-encoding"),
            ),
            (
                "corrupt gzip",
                vec![b"not gzip at all".to_vec()],
                Some("gzip"),
                1 << 20,
                Some("bad-compressed-body"),
            ),
        ];
        for (name, chunks, enc, limit, want) in table {
            let total: usize = chunks.iter().map(|c| c.len()).sum();
            let got = run(chunks, enc, limit).await;
            match (want, got) {
                (None, Ok(b)) => assert_eq!(b.len(), total, "{name}"),
                (Some(rule), Err(e)) => assert_eq!(e.status_rule().1, rule, "{name}"),
                (w, g) => panic!("{name}: wanted {w:?}, got {g:?}"),
            }
        }
        let full = read_scanned(
            &mut Full::new(Bytes::from_static(b"ok")),
            None,
            false,
            dlp(),
            10,
        )
        .await;
        assert_eq!(full.unwrap(), Bytes::from_static(b"ok"));
    }
}
