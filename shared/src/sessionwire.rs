//! The session channel's data frames without copies: an output chunk is
//! read straight into a buffer with room for the frame header in front,
//! and an input chunk is used where it lies in the received frame. The
//! bytes are exactly those of `SessionOutput::Stdout`/`Stderr` and
//! `SessionInput::Stdin` through `frame::encode_message` (tested), so the
//! peer needs nothing special. (Under TCG every pass over the data in the
//! guest is dear; this saves three.)

use crate::frame::HEADER_LEN;

/// Spare bytes to leave in front of an output chunk: the frame length,
/// the variant, and a varint length of up to three bytes.
pub const DATA_PREFIX: usize = HEADER_LEN + 1 + 3;
/// Largest chunk one data frame built here may carry (a 3-byte varint).
pub const MAX_DATA: usize = (1 << 21) - 1;
/// `SessionOutput::Stdout`'s variant index.
pub const STDOUT: u8 = 1;
/// `SessionOutput::Stderr`'s variant index.
pub const STDERR: u8 = 2;
/// `SessionInput::Stdin`'s variant index.
const STDIN: u8 = 0;

/// Make the `n` data bytes at `buf[DATA_PREFIX..]` one frame of
/// `variant` (STDOUT or STDERR) by writing its header just in front of
/// them; returns where the frame starts (it ends at `DATA_PREFIX + n`).
///
/// # Panics
/// If `n` exceeds [`MAX_DATA`] or `buf` is too short (caller bugs).
pub fn finish_data_frame(buf: &mut [u8], n: usize, variant: u8) -> usize {
    assert!(n <= MAX_DATA && buf.len() >= DATA_PREFIX + n);
    let mut varint = [0u8; 3];
    let mut len = 0;
    let mut v = n;
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            varint[len] = b;
            len += 1;
            break;
        }
        varint[len] = b | 0x80;
        len += 1;
    }
    let payload = 1 + len + n;
    let start = DATA_PREFIX - (HEADER_LEN + 1 + len);
    buf[start..start + HEADER_LEN].copy_from_slice(&(payload as u32).to_be_bytes());
    buf[start + HEADER_LEN] = variant;
    buf[start + HEADER_LEN + 1..DATA_PREFIX].copy_from_slice(&varint[..len]);
    start
}

/// If the frame `payload` is a `SessionInput::Stdin`, its bytes, in place.
pub fn stdin_bytes(payload: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = payload.split_first()?;
    if tag != STDIN {
        return None;
    }
    let mut n: usize = 0;
    for (i, &b) in rest.iter().enumerate().take(5) {
        n |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let data = &rest[i + 1..];
            return (data.len() == n).then_some(data);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode_message, MAX_FRAME_LEN};
    use crate::message::{decode, SessionInput, SessionOutput};

    #[test]
    fn frames_built_in_place_are_the_encoded_messages() {
        for n in [0, 1, 127, 128, 300, 16_383, 16_384, 32_768, 100_000] {
            let data: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            for (variant, msg) in [
                (STDOUT, SessionOutput::Stdout(data.clone())),
                (STDERR, SessionOutput::Stderr(data.clone())),
            ] {
                let mut buf = vec![0xeeu8; DATA_PREFIX + n];
                buf[DATA_PREFIX..].copy_from_slice(&data);
                let start = finish_data_frame(&mut buf, n, variant);
                assert_eq!(
                    buf[start..],
                    encode_message(&msg, MAX_FRAME_LEN).unwrap()[..],
                    "n={n}"
                );
            }
        }
    }

    #[test]
    fn stdin_is_read_in_place_and_nothing_else_is() {
        for n in [0, 1, 127, 128, 32_768] {
            let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let frame = encode_message(&SessionInput::Stdin(data.clone()), MAX_FRAME_LEN).unwrap();
            let payload = &frame[HEADER_LEN..];
            assert_eq!(stdin_bytes(payload), Some(&data[..]));
            assert_eq!(
                decode::<SessionInput>(payload).unwrap(),
                SessionInput::Stdin(data)
            );
        }
        let eof = encode_message(&SessionInput::StdinEof, MAX_FRAME_LEN).unwrap();
        assert_eq!(stdin_bytes(&eof[HEADER_LEN..]), None);
        // A length that disagrees with the payload, or a truncated varint.
        assert_eq!(stdin_bytes(&[0, 5, 1, 2]), None);
        assert_eq!(stdin_bytes(&[0, 0x80]), None);
        assert_eq!(stdin_bytes(&[]), None);
    }
}
