//! Scanning a body chunk by chunk: each chunk, the seam between it and the
//! previous one, and (once the body shows a `\` or a `&`) the same for the
//! text with its escapes decoded ([`super::unescape`]).

use std::sync::Arc;

use super::unescape::{has_text_escapes, Kinds, Unescaper};
use super::{Dlp, Hit};

/// One stream of text scanned chunk by chunk with its seams.
#[derive(Debug, Default)]
struct Seams {
    /// The last bytes fed (at most the overlap).
    tail: Vec<u8>,
    seam: Vec<u8>,
    /// Room for the lowercased text.
    scratch: Vec<u8>,
}

impl Seams {
    /// Scan `chunk` and the seam before it (when `scan`), as text decoded
    /// from `via`; then keep its end for the next seam.
    fn push(&mut self, dlp: &Dlp, chunk: &[u8], scan: bool, via: Kinds) -> Option<Hit> {
        let overlap = dlp.overlap;
        if chunk.is_empty() {
            return None;
        }
        if scan {
            if !self.tail.is_empty() {
                self.seam.clear();
                self.seam.extend_from_slice(&self.tail);
                self.seam
                    .extend_from_slice(&chunk[..chunk.len().min(overlap)]);
                if let Some(hit) = dlp.scan_as(&self.seam, "body", via, &mut self.scratch) {
                    return Some(hit);
                }
            }
            if let Some(hit) = dlp.scan_as(chunk, "body", via, &mut self.scratch) {
                return Some(hit);
            }
        }
        if chunk.len() >= overlap {
            self.tail.clear();
            self.tail.extend_from_slice(&chunk[chunk.len() - overlap..]);
        } else {
            self.tail.extend_from_slice(chunk);
            let excess = self.tail.len().saturating_sub(overlap);
            self.tail.drain(..excess);
        }
        None
    }
}

/// The escape-decoded view of a stream.
#[derive(Debug, Default)]
struct TextView {
    decoder: Unescaper,
    seams: Seams,
    /// The kinds of escape that decoded to a byte a match can hold, so
    /// far. Until there is one, the decoded text holds no match the raw
    /// text does not, and is only followed, not scanned.
    kinds: Kinds,
    out: Vec<u8>,
}

impl TextView {
    fn push(&mut self, dlp: &Dlp, chunk: &[u8]) -> Option<Hit> {
        self.out.clear();
        self.kinds |= self.decoder.push(chunk, false, &dlp.useful, &mut self.out);
        let scan = !self.kinds.is_empty();
        if let Some(hit) = self.seams.push(dlp, &self.out, scan, self.kinds) {
            return Some(hit);
        }
        if !self.decoder.is_pending() {
            return None;
        }
        // The chunk ends inside an escape the next one may finish (`&#115`
        // then `;`). If the body ends here (or the chunk is forwarded
        // before the next is read), that escape counts as it stands.
        self.out.clear();
        self.out.extend_from_slice(&self.seams.tail);
        let kinds = self.kinds | self.decoder.finish_preview(&dlp.useful, &mut self.out);
        if kinds.is_empty() {
            return None;
        }
        dlp.scan_as(&self.out, "body", kinds, &mut self.seams.scratch)
    }
}

/// Scans a body chunk by chunk, including the seams between chunks.
#[derive(Debug)]
pub struct StreamScanner {
    dlp: Arc<Dlp>,
    raw: Seams,
    text: Option<Box<TextView>>,
    scanned: u64,
}

impl StreamScanner {
    /// A scanner for one body.
    pub fn new(dlp: Arc<Dlp>) -> StreamScanner {
        StreamScanner {
            dlp,
            raw: Seams::default(),
            text: None,
            scanned: 0,
        }
    }

    /// Bytes fed so far.
    pub fn scanned(&self) -> u64 {
        self.scanned
    }

    /// The last bytes fed (at most the overlap), kept to scan the next seam.
    pub fn tail(&self) -> &[u8] {
        &self.raw.tail
    }

    /// Scan the next chunk.
    pub fn push(&mut self, chunk: &[u8]) -> Option<Hit> {
        if chunk.is_empty() {
            return None;
        }
        self.scanned += chunk.len() as u64;
        if self.text.is_none() && has_text_escapes(chunk) {
            // Until now the decoded text was the raw text.
            let mut view = TextView::default();
            view.seams.tail = self.raw.tail.clone();
            self.text = Some(Box::new(view));
        }
        if let Some(hit) = self.raw.push(&self.dlp, chunk, true, Kinds::NONE) {
            return Some(hit);
        }
        self.text.as_mut()?.push(&self.dlp, chunk)
    }
}
