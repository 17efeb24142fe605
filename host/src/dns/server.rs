//! The port-6002 server: many connections, each carrying many queries in
//! flight at once, answered out of order by request id.
//!
//! Per connection: the hello, then one task that reads whatever frames have
//! arrived, answers denials and cache hits inline, spawns one task per
//! cache miss, and writes all ready answers at once. A bad frame closes
//! that connection (logged); the server keeps serving others. At most
//! [`MAX_CONNECTIONS`] connections are open at once.

use std::sync::Arc;

use bottle_shared::frame::{encode_message_into, FrameError};
use bottle_shared::framebuf::FrameBuf;
use bottle_shared::io::{accept_hello, HandshakeError};
use bottle_shared::message::{DnsRequest, DnsResponse};
use bottle_shared::transport::{BoxStream, Listener};
use bottle_shared::{Channel, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Semaphore};

use super::handler::Handler;

/// Queries in flight per connection; the reader waits when this many are.
pub const MAX_IN_FLIGHT: usize = 512;

/// Connections open at once, at most; more are closed as they arrive.
/// The guest's stub keeps one (and opens another only after losing it),
/// so only a guest trying to make bottle-host hold memory and
/// descriptors without bound reaches this.
pub const MAX_CONNECTIONS: usize = 16;

/// Our software string in the hello.
pub const SOFTWARE: &str = concat!("bottle-host ", env!("CARGO_PKG_VERSION"));

/// Serve `listener` until it breaks. Accept errors that pass (e.g. out
/// of file descriptors) are logged and retried after a short pause
/// ([`crate::accept`]).
pub async fn serve(listener: Listener, handler: Arc<Handler>) -> std::io::Result<()> {
    tokio::spawn(upkeep(Arc::downgrade(&handler)));
    let mut cap = crate::accept::Cap::new(MAX_CONNECTIONS);
    loop {
        let stream = crate::accept::next(&listener, "dns").await?;
        let Some(slot) = cap.take("dns") else {
            drop(stream);
            continue;
        };
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            let _slot = slot;
            match connection(stream, handler).await {
                Ok(()) => {}
                // A probe (e.g. a stale-socket check) that never said hello.
                Err(ConnError::Hello(HandshakeError::Closed)) => {
                    tracing::debug!("dns: peer left before its hello");
                }
                Err(e) => tracing::warn!("dns: connection closed: {e}"),
            }
        });
    }
}

/// Run [`Handler::tick`] every second while the handler lives.
async fn upkeep(handler: std::sync::Weak<Handler>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        every.tick().await;
        let Some(h) = handler.upgrade() else { return };
        h.tick();
    }
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// The hello failed.
    #[error("hello: {0}")]
    Hello(#[from] HandshakeError),
    /// A bad frame.
    #[error("bad frame: {0}")]
    Frame(#[from] bottle_shared::FrameError),
}

/// Bytes read from the connection at a time, at most.
const READ_CHUNK: usize = 64 * 1024;

/// Answers buffered before they are written even if more input waits.
const WRITE_BATCH: usize = 64 * 1024;

/// Serve one connection to its end.
///
/// One task reads and writes: it takes every whole frame that has arrived,
/// answers denials and cache hits inline into one output buffer, and
/// writes that buffer once, so a burst of queries costs one read and one
/// write. Cache misses run in their own tasks and come back over a
/// channel into the same buffer.
pub async fn connection(mut stream: BoxStream, handler: Arc<Handler>) -> Result<(), ConnError> {
    let r = serve_connection(&mut stream, handler).await;
    if r.is_err() {
        // A refused hello or a bad frame: end cleanly, never a hang.
        bottle_shared::io::linger_close(&mut stream).await;
    }
    r
}

async fn serve_connection(stream: &mut BoxStream, handler: Arc<Handler>) -> Result<(), ConnError> {
    accept_hello(stream, Role::Host, Channel::Dns, SOFTWARE).await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<DnsResponse>();
    // Dropped at end of input, so `rx` ends once every miss task has.
    let mut tx = Some(tx);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let max = Channel::Dns.max_frame();
    let mut input = FrameBuf::new(max);
    let mut out = Vec::with_capacity(WRITE_BATCH);
    let mut eof = false;
    let mut in_flight = 0usize;
    loop {
        // Answer every whole frame received so far.
        while let Some(msg) = input.next_message::<DnsRequest>()? {
            #[allow(unreachable_patterns)]
            let (id, wire) = match msg {
                DnsRequest::Query { id, wire, .. } => (id, wire),
                _ => {
                    tracing::debug!("dns: ignoring an unknown request");
                    continue;
                }
            };
            // Denials and cache hits are answered inline; only misses wait
            // on the upstream, each in its own task.
            let miss = match handler.try_local(&wire) {
                Ok(answer) => {
                    push_answer(&mut out, id, answer, max);
                    if out.len() >= WRITE_BATCH {
                        write_out(stream, &mut out).await?;
                    }
                    continue;
                }
                Err(miss) => miss,
            };
            // Wait for a slot: a client cannot make us hold unbounded work.
            let permit = match Arc::clone(&slots).try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    // Full: send what we have, then wait for a miss to end.
                    write_out(stream, &mut out).await?;
                    match Arc::clone(&slots).acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => return Ok(()),
                    }
                }
            };
            let handler = Arc::clone(&handler);
            let Some(tx) = tx.clone() else {
                // Unreachable: no frames arrive after end of input.
                continue;
            };
            in_flight += 1;
            tokio::spawn(async move {
                let answer = handler.resolve_miss(&wire, miss).await;
                // The connection is gone if the receiver is.
                let _ = tx.send(DnsResponse::Answer { id, wire: answer });
                drop(permit);
            });
        }
        // Misses answered meanwhile go out in the same write.
        while let Ok(DnsResponse::Answer { id, wire }) = rx.try_recv() {
            in_flight -= 1;
            push_answer(&mut out, id, wire, max);
        }
        write_out(stream, &mut out).await?;
        if eof {
            tx = None;
            if in_flight == 0 {
                return input.finish().map_err(ConnError::Frame);
            }
            // Let the queries in flight be answered before closing.
            match rx.recv().await {
                Some(DnsResponse::Answer { id, wire }) if in_flight > 0 => {
                    in_flight -= 1;
                    push_answer(&mut out, id, wire, max);
                    continue;
                }
                _ => return input.finish().map_err(ConnError::Frame),
            }
        }
        tokio::select! {
            n = stream.read_buf(input.spare(READ_CHUNK)) => {
                if n.map_err(FrameError::Io)? == 0 {
                    eof = true;
                }
            }
            Some(DnsResponse::Answer { id, wire }) = rx.recv() => {
                in_flight -= 1;
                push_answer(&mut out, id, wire, max);
            }
        }
    }
}

/// Append the answer frame for request `id` to `out`.
fn push_answer(out: &mut Vec<u8>, id: u32, wire: Vec<u8>, max: usize) {
    if let Err(e) = encode_message_into(&DnsResponse::Answer { id, wire }, max, out) {
        tracing::error!("dns: cannot encode an answer: {e}");
    }
}

/// Write and clear `out`, if it holds anything.
async fn write_out(stream: &mut BoxStream, out: &mut Vec<u8>) -> Result<(), ConnError> {
    if out.is_empty() {
        return Ok(());
    }
    stream.write_all(out).await.map_err(FrameError::Io)?;
    out.clear();
    Ok(())
}
