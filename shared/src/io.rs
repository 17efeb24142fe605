//! Async frame I/O and the hello exchange (feature `tokio`).

use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::channel::Channel;
use crate::frame::{decode_header, encode_message, FrameError, HEADER_LEN};
use crate::message::{decode, Hello, HelloError, HelloReply, Role};

/// How long the accepting side waits for a hello before closing.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Read one frame's payload. `Ok(None)` means the peer closed cleanly
/// between frames; a close inside a frame is [`FrameError::Truncated`].
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut payload = Vec::new();
    Ok(read_frame_into(r, max, &mut payload)
        .await?
        .then_some(payload))
}

/// [`read_frame`] into `payload` (cleared first), whose allocation a
/// caller reading frame after frame reuses; the payload is read into its
/// spare capacity, never zeroed first. `Ok(false)` means the peer closed
/// cleanly between frames.
pub async fn read_frame_into<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    payload: &mut Vec<u8>,
) -> Result<bool, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut have = 0;
    while have < HEADER_LEN {
        let n = r.read(&mut header[have..]).await?;
        if n == 0 {
            return if have == 0 {
                Ok(false)
            } else {
                Err(FrameError::Truncated {
                    have,
                    want: HEADER_LEN,
                })
            };
        }
        have += n;
    }
    let len = decode_header(header, max)?;
    payload.clear();
    payload.reserve(len);
    while payload.len() < len {
        let want = (len - payload.len()) as u64;
        if (&mut *r).take(want).read_buf(payload).await? == 0 {
            return Err(FrameError::Truncated {
                have: HEADER_LEN + payload.len(),
                want: HEADER_LEN + len,
            });
        }
    }
    Ok(true)
}

/// Read one frame and decode it as `T`.
pub async fn read_message<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
    max: usize,
) -> Result<Option<T>, FrameError> {
    match read_frame(r, max).await? {
        Some(payload) => Ok(Some(decode(&payload)?)),
        None => Ok(None),
    }
}

/// Encode `msg` and write it as one frame, then flush.
pub async fn write_message<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
    max: usize,
) -> Result<(), FrameError> {
    let bytes = encode_message(msg, max)?;
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

/// The hello exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Framing or encoding.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The hellos do not agree.
    #[error(transparent)]
    Hello(#[from] HelloError),
    /// The peer closed before answering.
    #[error("peer closed the connection during the hello")]
    Closed,
    /// The peer did not answer in time.
    #[error("no hello within {0:?}")]
    Timeout(Duration),
}

/// Dialing side: send our hello, wait for the reply, return the peer's hello.
pub async fn dial_hello<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    role: Role,
    channel: Channel,
    software: &str,
) -> Result<Hello, HandshakeError> {
    let ours = Hello::new(role, channel, software);
    write_message(s, &ours, channel.max_frame()).await?;
    let reply = tokio::time::timeout(HELLO_TIMEOUT, read_message(s, channel.max_frame()))
        .await
        .map_err(|_| HandshakeError::Timeout(HELLO_TIMEOUT))??;
    match reply {
        None => Err(HandshakeError::Closed),
        Some(HelloReply::Accepted(theirs)) => {
            theirs.check(role, channel)?;
            Ok(theirs)
        }
        Some(HelloReply::Refused { reason }) => Err(HelloError::Refused(reason).into()),
    }
}

/// Accepting side: read the peer's hello, check it, and accept or refuse.
/// On refusal the reason is sent to the peer before the error is returned.
pub async fn accept_hello<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    role: Role,
    channel: Channel,
    software: &str,
) -> Result<Hello, HandshakeError> {
    let theirs: Option<Hello> =
        tokio::time::timeout(HELLO_TIMEOUT, read_message(s, channel.max_frame()))
            .await
            .map_err(|_| HandshakeError::Timeout(HELLO_TIMEOUT))??;
    let theirs = theirs.ok_or(HandshakeError::Closed)?;
    if let Err(e) = theirs.check(role, channel) {
        let reply = HelloReply::Refused {
            reason: e.to_string(),
        };
        // The peer may already be gone; the refusal is best effort.
        let _ = write_message(s, &reply, channel.max_frame()).await;
        return Err(e.into());
    }
    let ours = Hello::new(role, channel, software);
    write_message(s, &HelloReply::Accepted(ours), channel.max_frame()).await?;
    Ok(theirs)
}

/// Copy between `a` and `b` both ways until both directions have ended,
/// each on its own: a direction that fails (the far side closed while
/// this side was still sending) does not cut the other, whose bytes (a
/// refusal, a command's last output) may still be on their way; each
/// writer is shut down when its reader ends, so the far side sees the end.
/// Returns each direction's bytes or error: `a` to `b`, then `b` to `a`.
pub async fn relay<A, B>(a: A, b: B) -> (std::io::Result<u64>, std::io::Result<u64>)
where
    A: AsyncRead + AsyncWrite,
    B: AsyncRead + AsyncWrite,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    tokio::join!(one_way(&mut ar, &mut bw), one_way(&mut br, &mut aw))
}

/// One direction of [`relay`].
async fn one_way<R, W>(r: &mut R, w: &mut W) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let copied = tokio::io::copy(r, w).await;
    let _ = w.shutdown().await;
    copied
}

/// How long [`linger_close`] waits for the peer to finish sending.
pub const LINGER: Duration = Duration::from_millis(500);

/// Close a connection the host is refusing without leaving the peer
/// hanging: say we are done writing, then read and discard what the peer
/// still sends until it closes or [`LINGER`] passes. (Closing a socket with
/// unread bytes makes the kernel reset it, and vsock relays such as
/// `vhost-device-vsock` may not pass a reset on: the guest would wait
/// forever. A clean end of stream always reaches it.)
pub async fn linger_close<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) {
    let _ = s.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = s.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{DnsResponse, PROTOCOL_MAJOR};

    #[tokio::test]
    async fn frames_cross_a_pipe() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let msg = DnsResponse::Answer {
            id: 9,
            wire: vec![7; 300],
        };
        let sent = msg.clone();
        let w = tokio::spawn(async move { write_message(&mut a, &sent, 1024).await });
        let got: DnsResponse = read_message(&mut b, 1024).await.unwrap().unwrap();
        w.await.unwrap().unwrap();
        assert_eq!(got, msg);
        assert!(read_message::<_, DnsResponse>(&mut b, 1024)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn truncated_and_oversize_frames_are_errors() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 9, 1, 2]).await.unwrap();
        drop(a);
        assert!(matches!(
            read_frame(&mut b, 64).await,
            Err(FrameError::Truncated { have: 6, want: 13 })
        ));
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 1, 0, 0]).await.unwrap();
        assert!(matches!(
            read_frame(&mut b, 64).await,
            Err(FrameError::TooLarge {
                len: 65536,
                max: 64
            })
        ));
    }

    #[tokio::test]
    async fn hello_exchange_accepts_and_refuses() {
        let (mut g, mut h) = tokio::io::duplex(1024);
        let host = tokio::spawn(async move {
            accept_hello(&mut h, Role::Host, Channel::Dns, "host-test").await
        });
        let theirs = dial_hello(&mut g, Role::Guest, Channel::Dns, "guest-test")
            .await
            .unwrap();
        assert_eq!(theirs.software, "host-test");
        assert_eq!(host.await.unwrap().unwrap().software, "guest-test");

        // A guest speaking a future major is refused, and told why.
        let (mut g, mut h) = tokio::io::duplex(1024);
        let host = tokio::spawn(async move {
            accept_hello(&mut h, Role::Host, Channel::Dns, "host-test").await
        });
        let mut future = Hello::new(Role::Guest, Channel::Dns, "guest-next");
        future.major = PROTOCOL_MAJOR + 1;
        write_message(&mut g, &future, 1024).await.unwrap();
        let reply: HelloReply = read_message(&mut g, 1024).await.unwrap().unwrap();
        let HelloReply::Refused { reason } = reply else {
            panic!("expected a refusal, got {reply:?}");
        };
        assert!(reason.contains("mismatch"), "{reason}");
        assert!(matches!(
            host.await.unwrap(),
            Err(HandshakeError::Hello(HelloError::VersionMismatch { .. }))
        ));
    }
}
