//! Fuzz `bottle_shared::FrameDecoder`: an arbitrary byte stream fed in an
//! arbitrary chunking must yield exactly the frames and the ending it yields
//! when fed in one piece, never a frame that is empty or over the limit, and
//! every frame is decoded as every message type.
//!
//! Input layout: byte 0 picks the limit, byte 1 the number `n` of chunk
//! sizes (0..=15), the next `n` bytes are chunk sizes (0 means 1), the rest
//! is the stream.
#![no_main]

use bottle_shared::frame::{FrameDecoder, FrameError, HEADER_LEN, MAX_FRAME_LEN};
use bottle_shared::Channel;
use libfuzzer_sys::fuzz_target;

/// How a stream ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Every byte was consumed by whole frames.
    Clean,
    /// A partial frame was left over (`finish` reported truncation).
    Truncated { have: usize, want: usize },
    /// A header announced more than the limit.
    TooLarge { len: usize, max: usize },
    /// A header announced zero bytes.
    Empty,
}

fn feed(stream: &[u8], chunks: &[usize], max: usize) -> (Vec<Vec<u8>>, End) {
    let mut d = FrameDecoder::new(max);
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    loop {
        loop {
            match d.next_frame() {
                Ok(Some(f)) => {
                    assert!(!f.is_empty(), "empty frame returned");
                    assert!(f.len() <= max.min(MAX_FRAME_LEN), "frame over the limit");
                    frames.push(f);
                }
                Ok(None) => break,
                Err(FrameError::TooLarge { len, max }) => {
                    return (frames, End::TooLarge { len, max })
                }
                Err(FrameError::Empty) => return (frames, End::Empty),
                Err(e) => panic!("next_frame: unexpected error {e}"),
            }
        }
        if rest.is_empty() {
            break;
        }
        let n = chunks
            .get(i % chunks.len().max(1))
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        d.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    let end = match d.finish() {
        Ok(()) => End::Clean,
        Err(FrameError::Truncated { have, want }) => {
            assert!(have < want, "truncation with have {have} >= want {want}");
            End::Truncated { have, want }
        }
        Err(e) => panic!("finish: unexpected error {e}"),
    };
    (frames, end)
}

fuzz_target!(|data: &[u8]| {
    let Some((&limit, data)) = data.split_first() else {
        return;
    };
    let max = match limit % 4 {
        0 => Channel::Dns.max_frame(),
        1 => MAX_FRAME_LEN,
        2 => usize::MAX,
        _ => usize::from(limit),
    };
    let Some((&n, data)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 16).min(data.len());
    let (sizes, stream) = data.split_at(n);
    let chunks: Vec<usize> = sizes.iter().map(|&s| usize::from(s)).collect();

    let whole = feed(stream, &[], max);
    let chunked = feed(stream, &chunks, max);
    assert_eq!(whole, chunked, "chunking changed the outcome");

    let (frames, end) = whole;
    let consumed: usize = frames.iter().map(|f| HEADER_LEN + f.len()).sum();
    assert!(consumed <= stream.len());
    if end == End::Clean {
        assert_eq!(consumed, stream.len(), "clean end with bytes left over");
    }
    for f in &frames {
        bottle_fuzz::every_message(f);
    }
});
