//! Length-prefixed frames: a 4-byte big-endian payload length, then the
//! payload (one postcard message).
//!
//! The length is checked against the limit before a single payload byte is
//! buffered, so a hostile peer cannot make us allocate more than the limit.
//! A zero-length frame is invalid (no message encodes to zero bytes).

use serde::{de::DeserializeOwned, Serialize};

use crate::message::{self, CodecError};

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Hard ceiling on any frame payload, on any channel (1 MiB). Channels may
/// set lower limits (see [`crate::Channel::max_frame`]).
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

/// A frame could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The announced length exceeds the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced payload length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A frame announced zero bytes.
    #[error("empty frame")]
    Empty,
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame ({have} of {want} bytes)")]
    Truncated {
        /// Bytes received.
        have: usize,
        /// Bytes needed.
        want: usize,
    },
    /// The payload is not a valid message.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// I/O error underneath.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Append one frame holding `payload` to `out`.
pub fn encode_frame(payload: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), FrameError> {
    check_len(payload.len(), max)?;
    let len = u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge {
        len: payload.len(),
        max,
    })?;
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Encode `msg` with postcard and wrap it in a frame.
pub fn encode_message<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let payload = message::encode(msg)?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    encode_frame(&payload, max, &mut out)?;
    Ok(out)
}

/// Append one frame holding `msg` (postcard) to `out`, encoding in place
/// with no buffer of its own. On error `out` is left as it was.
pub fn encode_message_into<T: Serialize>(
    msg: &T,
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    if let Err(e) = postcard::to_io(msg, &mut *out) {
        out.truncate(start);
        return Err(FrameError::Codec(CodecError::from(e)));
    }
    let len = out.len() - start - HEADER_LEN;
    let header = check_len(len, max)
        .and_then(|()| u32::try_from(len).map_err(|_| FrameError::TooLarge { len, max }));
    match header {
        Ok(n) => {
            out[start..start + HEADER_LEN].copy_from_slice(&n.to_be_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Parse a length prefix, checking it against `max`.
pub fn decode_header(header: [u8; HEADER_LEN], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    check_len(len, max)?;
    Ok(len)
}

fn check_len(len: usize, max: usize) -> Result<(), FrameError> {
    let max = max.min(MAX_FRAME_LEN);
    if len == 0 {
        Err(FrameError::Empty)
    } else if len > max {
        Err(FrameError::TooLarge { len, max })
    } else {
        Ok(())
    }
}

/// Incremental, runtime-free frame decoder: feed it bytes as they arrive,
/// take whole frames out.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max: usize,
}

impl FrameDecoder {
    /// A decoder that refuses frames larger than `max` bytes.
    pub fn new(max: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            max: max.min(MAX_FRAME_LEN),
        }
    }

    /// Add received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame's payload, if one has arrived. After an error the
    /// stream is unusable: the caller must close the connection.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = decode_header(*header, self.max)?;
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let payload = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buf.drain(..HEADER_LEN + len);
        Ok(Some(payload))
    }

    /// The next whole frame decoded as a message.
    pub fn next_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        match self.next_frame()? {
            Some(payload) => Ok(Some(message::decode(&payload)?)),
            None => Ok(None),
        }
    }

    /// Call at end of stream: an error if a partial frame is buffered.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let want = match self.buf.first_chunk::<HEADER_LEN>() {
            Some(h) => HEADER_LEN + u32::from_be_bytes(*h) as usize,
            None => HEADER_LEN,
        };
        Err(FrameError::Truncated {
            have: self.buf.len(),
            want,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn oversize_header_is_refused_before_payload_arrives() {
        let mut d = FrameDecoder::new(1024);
        d.push(&(1_000_000u32).to_be_bytes());
        assert!(matches!(
            d.next_frame(),
            Err(FrameError::TooLarge {
                len: 1_000_000,
                max: 1024
            })
        ));
    }

    #[test]
    fn encoding_in_place_matches_and_leaves_out_alone_on_error() {
        use crate::message::{DnsRequest, DnsTransport};
        let msg = |len| DnsRequest::Query {
            id: 9,
            transport: DnsTransport::Tcp,
            wire: vec![3; len],
        };
        let mut out = b"prefix".to_vec();
        encode_message_into(&msg(40), 100, &mut out).unwrap();
        let mut want = b"prefix".to_vec();
        want.extend(encode_message(&msg(40), 100).unwrap());
        assert_eq!(out, want);
        // Too large for the limit: refused, nothing appended.
        let err = encode_message_into(&msg(200), 100, &mut out).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { max: 100, .. }));
        assert_eq!(out, want);
    }

    #[test]
    fn u32_max_header_is_refused() {
        let mut d = FrameDecoder::new(MAX_FRAME_LEN);
        d.push(&[0xff; 8]);
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn empty_frame_is_refused() {
        let mut d = FrameDecoder::new(64);
        d.push(&[0, 0, 0, 0]);
        assert!(matches!(d.next_frame(), Err(FrameError::Empty)));
        assert!(matches!(
            encode_frame(&[], 64, &mut Vec::new()),
            Err(FrameError::Empty)
        ));
    }

    #[test]
    fn encoder_refuses_oversize_payload() {
        let big = vec![1u8; 65];
        assert!(matches!(
            encode_frame(&big, 64, &mut Vec::new()),
            Err(FrameError::TooLarge { len: 65, max: 64 })
        ));
    }

    #[test]
    fn truncated_stream_is_reported() {
        let mut d = FrameDecoder::new(64);
        d.push(&[0, 0, 0, 10, 1, 2, 3]);
        assert!(d.next_frame().unwrap().is_none());
        assert!(matches!(
            d.finish(),
            Err(FrameError::Truncated { have: 7, want: 14 })
        ));
        let mut d = FrameDecoder::new(64);
        d.push(&[0, 0]);
        assert!(matches!(
            d.finish(),
            Err(FrameError::Truncated { have: 2, want: 4 })
        ));
    }

    proptest! {
        #[test]
        fn frames_round_trip_in_any_chunking(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 1..8),
            cut in 1usize..50,
        ) {
            let mut wire = Vec::new();
            for p in &payloads {
                encode_frame(p, 1024, &mut wire).unwrap();
            }
            let mut d = FrameDecoder::new(1024);
            let mut got = Vec::new();
            for chunk in wire.chunks(cut) {
                d.push(chunk);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            d.finish().unwrap();
            prop_assert_eq!(got, payloads);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut d = FrameDecoder::new(512);
            d.push(&bytes);
            while let Ok(Some(_)) = d.next_message::<crate::message::DnsRequest>() {}
            let _ = d.finish();
        }
    }
}
