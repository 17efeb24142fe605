//! The port-6002 server: many connections, each carrying many queries in
//! flight at once, answered out of order by request id.
//!
//! Per connection: the hello, then a reader that answers denials and cache
//! hits inline and spawns one task per cache miss, and a single writer task
//! fed by a channel. A bad
//! frame closes that connection (logged); the server keeps serving others.

use std::sync::Arc;

use bottle_shared::frame::encode_message;
use bottle_shared::io::{accept_hello, read_message, HandshakeError};
use bottle_shared::message::{DnsRequest, DnsResponse};
use bottle_shared::transport::{BoxStream, Listener};
use bottle_shared::{Channel, Role};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, Semaphore};

use super::handler::Handler;

/// Queries in flight per connection; the reader waits when this many are.
pub const MAX_IN_FLIGHT: usize = 512;

/// Our software string in the hello.
pub const SOFTWARE: &str = concat!("bottle-host ", env!("CARGO_PKG_VERSION"));

/// Serve `listener` forever. Accept errors (e.g. out of file descriptors)
/// are logged and retried after a short pause.
pub async fn serve(listener: Listener, handler: Arc<Handler>) -> std::io::Result<()> {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("dns: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
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

/// Serve one connection to its end.
pub async fn connection(mut stream: BoxStream, handler: Arc<Handler>) -> Result<(), ConnError> {
    accept_hello(&mut stream, Role::Host, Channel::Dns, SOFTWARE).await?;
    let (mut reader, writer) = tokio::io::split(stream);
    let (tx, rx) = mpsc::unbounded_channel::<DnsResponse>();
    let writer = tokio::spawn(write_loop(writer, rx));
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let max = Channel::Dns.max_frame();
    let result = loop {
        let msg = match read_message::<_, DnsRequest>(&mut reader, max).await {
            Ok(Some(m)) => m,
            Ok(None) => break Ok(()),
            Err(e) => break Err(ConnError::Frame(e)),
        };
        #[allow(unreachable_patterns)]
        let (id, wire) = match msg {
            DnsRequest::Query { id, wire, .. } => (id, wire),
            _ => {
                tracing::debug!("dns: ignoring an unknown request");
                continue;
            }
        };
        // Denials and cache hits are answered inline; only misses wait on
        // the upstream, each in its own task.
        let miss = match handler.try_local(&wire) {
            Ok(answer) => {
                let _ = tx.send(DnsResponse::Answer { id, wire: answer });
                continue;
            }
            Err(miss) => miss,
        };
        // Wait for a slot: a client cannot make us hold unbounded work.
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            break Ok(());
        };
        let handler = Arc::clone(&handler);
        let tx = tx.clone();
        tokio::spawn(async move {
            let answer = handler.resolve_miss(&wire, miss).await;
            // The writer is gone only if the connection is.
            let _ = tx.send(DnsResponse::Answer { id, wire: answer });
            drop(permit);
        });
    };
    drop(tx);
    if result.is_err() {
        writer.abort();
    } else {
        // Let the queries in flight be answered before closing.
        let _ = writer.await;
    }
    result
}

async fn write_loop<W: tokio::io::AsyncWrite + Unpin>(
    w: W,
    mut rx: mpsc::UnboundedReceiver<DnsResponse>,
) {
    let mut w = BufWriter::new(w);
    let max = Channel::Dns.max_frame();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Batch whatever is ready into one flush.
        while let Some(msg) = next {
            match encode_message(&msg, max) {
                Ok(bytes) => {
                    if let Err(e) = w.write_all(&bytes).await {
                        tracing::debug!("dns: write failed: {e}");
                        return;
                    }
                }
                Err(e) => tracing::error!("dns: cannot encode an answer: {e}"),
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = w.flush().await {
            tracing::debug!("dns: flush failed: {e}");
            return;
        }
    }
}
