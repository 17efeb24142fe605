//! The host client's tasks: the connection (dial, hello, read, write,
//! redial with backoff) and the sweeper that times out submitted queries.

use std::time::{Duration, Instant};

use bottle_shared::frame::FrameError;
use bottle_shared::framebuf::FrameBuf;
use bottle_shared::io::dial_hello;
use bottle_shared::message::{DnsResponse, Role};
use bottle_shared::transport::{connect, BoxStream};
use bottle_shared::{Address, Channel};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

use super::{max_frame, HostClient};

/// Time out submitted queries: while any are pending, look every eighth of
/// the query timeout (5 to 250 ms); otherwise sleep until one is submitted.
pub(super) async fn sweep_loop(client: HostClient) {
    let every = (client.inner.timings.query_timeout / 8)
        .clamp(Duration::from_millis(5), Duration::from_millis(250));
    loop {
        if client.lock().calls == 0 {
            client.inner.sweep.notified().await;
        }
        tokio::time::sleep(every).await;
        client.expire(Instant::now());
    }
}

/// Dial, serve, and redial forever.
pub(super) async fn connection_loop(client: HostClient, addr: Address) {
    let t = client.inner.timings;
    let mut backoff = t.backoff_initial;
    let mut ever_connected = false;
    loop {
        match tokio::time::timeout(t.connect_timeout, dial(&addr)).await {
            Ok(Ok(stream)) => {
                if ever_connected {
                    client.inner.stats.reconnected();
                    tracing::info!(%addr, "dns-stub: reconnected to host");
                } else {
                    tracing::info!(%addr, "dns-stub: connected to host");
                }
                ever_connected = true;
                backoff = t.backoff_initial;
                serve(&client, stream).await;
                client.down();
            }
            Ok(Err(e)) => tracing::debug!(%addr, "dns-stub: cannot reach host: {e}"),
            Err(_) => tracing::debug!(%addr, "dns-stub: dialing host timed out"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(t.backoff_max);
    }
}

/// Dial and say hello.
async fn dial(addr: &Address) -> Result<BoxStream, DialError> {
    let mut s = connect(addr).await?;
    let software = concat!("bottle-guest ", env!("CARGO_PKG_VERSION"));
    dial_hello(&mut s, Role::Guest, Channel::Dns, software).await?;
    Ok(s)
}

/// Dialing the host failed.
#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("connect: {0}")]
    Connect(#[from] std::io::Error),
    #[error("hello: {0}")]
    Hello(#[from] bottle_shared::io::HandshakeError),
}

/// Run one connection until it breaks.
async fn serve(client: &HostClient, stream: BoxStream) {
    let (r, w) = tokio::io::split(stream);
    let (tx, rx) = mpsc::unbounded_channel();
    client.up(tx);
    let mut writer = tokio::spawn(write_loop(w, rx));
    tokio::select! {
        res = read_loop(client, r) => match res {
            Ok(()) => tracing::warn!("dns-stub: host closed the DNS channel"),
            Err(e) => tracing::warn!("dns-stub: closing host DNS channel: {e}"),
        },
        res = &mut writer => {
            if let Ok(Err(e)) = res {
                tracing::warn!("dns-stub: writing to host failed: {e}");
            }
        }
    }
    writer.abort();
}

/// Bytes read from the host at a time, at most.
const READ_CHUNK: usize = 64 * 1024;

/// Read whatever the host has sent, hand every whole answer in it to
/// [`HostClient::deliver`] at once (one lock, one flush of UDP replies),
/// and repeat until the host closes.
async fn read_loop(client: &HostClient, mut r: ReadHalf<BoxStream>) -> Result<(), FrameError> {
    let mut input = FrameBuf::new(max_frame());
    let mut answers = Vec::new();
    loop {
        if r.read_buf(input.spare(READ_CHUNK)).await? == 0 {
            // A clean close falls between frames.
            return input.finish();
        }
        while let Some(msg) = input.next_message::<DnsResponse>()? {
            match msg {
                DnsResponse::Answer { id, wire } => answers.push((id, wire)),
                other => tracing::debug!("dns-stub: ignoring unknown message {other:?}"),
            }
        }
        if !answers.is_empty() {
            client.deliver(&mut answers);
        }
    }
}

/// Write queued frames, coalescing whatever is already queued into one
/// write.
async fn write_loop(
    mut w: WriteHalf<BoxStream>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) -> std::io::Result<()> {
    const COALESCE: usize = 64 * 1024;
    let mut buf = Vec::with_capacity(COALESCE);
    while let Some(first) = rx.recv().await {
        buf.clear();
        buf.extend_from_slice(&first);
        while buf.len() < COALESCE {
            match rx.try_recv() {
                Ok(f) => buf.extend_from_slice(&f),
                Err(_) => break,
            }
        }
        w.write_all(&buf).await?;
        w.flush().await?;
    }
    Ok(())
}
