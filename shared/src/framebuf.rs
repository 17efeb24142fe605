//! A receive buffer that yields whole frames in place: read as much as the
//! socket has, then take every complete frame out without a read per
//! frame. Frame lengths are checked against the limit before any payload
//! is buffered for them, so a peer cannot make it grow past the largest
//! frame plus one read.

use crate::frame::{decode_header, FrameError, HEADER_LEN};
use crate::message;
use serde::de::DeserializeOwned;

/// Buffered bytes of a byte stream carrying frames.
#[derive(Debug)]
pub struct FrameBuf {
    buf: Vec<u8>,
    /// Offset of the first byte not yet taken.
    start: usize,
    max: usize,
}

impl FrameBuf {
    /// A buffer refusing frames larger than `max` bytes.
    pub fn new(max: usize) -> FrameBuf {
        FrameBuf {
            buf: Vec::new(),
            start: 0,
            max,
        }
    }

    /// The buffer to read into, with room for at least `room` more bytes
    /// (for `AsyncReadExt::read_buf`, which appends).
    pub fn spare(&mut self, room: usize) -> &mut Vec<u8> {
        if self.start > 0 {
            // Keep only the partial frame at the end (usually a few bytes).
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(room);
        &mut self.buf
    }

    /// The next whole frame, decoded as `T`, if one has arrived. After an
    /// error the stream is unusable: close the connection.
    pub fn next_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        let rest = &self.buf[self.start..];
        let Some(header) = rest.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = decode_header(*header, self.max)?;
        let Some(payload) = rest.get(HEADER_LEN..HEADER_LEN + len) else {
            return Ok(None);
        };
        let msg = message::decode(payload)?;
        self.start += HEADER_LEN + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(msg))
    }

    /// Call at end of stream: an error if a partial frame is buffered.
    pub fn finish(&self) -> Result<(), FrameError> {
        let rest = &self.buf[self.start..];
        if rest.is_empty() {
            return Ok(());
        }
        let want = match rest.first_chunk::<HEADER_LEN>() {
            Some(h) => HEADER_LEN + u32::from_be_bytes(*h) as usize,
            None => HEADER_LEN,
        };
        Err(FrameError::Truncated {
            have: rest.len(),
            want,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_message;
    use crate::message::{DnsRequest, DnsTransport};

    fn query(id: u32, len: usize) -> DnsRequest {
        DnsRequest::Query {
            id,
            transport: DnsTransport::Udp,
            wire: vec![7; len],
        }
    }

    fn ids(b: &mut FrameBuf) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some(DnsRequest::Query { id, .. }) = b.next_message::<DnsRequest>().unwrap() {
            out.push(id);
        }
        out
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_in_order() {
        let mut stream = Vec::new();
        for id in 0..50 {
            stream.extend(encode_message(&query(id, 10 + id as usize), 4096).unwrap());
        }
        for chunk in [1, 3, 7, 64, stream.len()] {
            let mut b = FrameBuf::new(4096);
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                b.spare(chunk).extend_from_slice(piece);
                got.extend(ids(&mut b));
            }
            assert_eq!(got, (0..50).collect::<Vec<_>>(), "chunk {chunk}");
            b.finish().unwrap();
        }
    }

    #[test]
    fn oversize_frame_is_refused_from_its_header() {
        let mut b = FrameBuf::new(100);
        b.spare(4).extend_from_slice(&1000u32.to_be_bytes());
        assert!(matches!(
            b.next_message::<DnsRequest>(),
            Err(FrameError::TooLarge { len: 1000, .. })
        ));
    }

    #[test]
    fn partial_frame_at_end_is_truncated() {
        let frame = encode_message(&query(1, 20), 4096).unwrap();
        let mut b = FrameBuf::new(4096);
        b.spare(64).extend_from_slice(&frame[..frame.len() - 1]);
        assert_eq!(ids(&mut b), Vec::<u32>::new());
        assert!(matches!(b.finish(), Err(FrameError::Truncated { .. })));
    }

    #[test]
    fn garbage_payload_is_an_error() {
        let mut b = FrameBuf::new(4096);
        let buf = b.spare(8);
        buf.extend_from_slice(&3u32.to_be_bytes());
        buf.extend_from_slice(&[0xff, 0xff, 0xff]);
        assert!(b.next_message::<DnsRequest>().is_err());
    }
}
