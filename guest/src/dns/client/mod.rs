//! The host client: one persistent, multiplexed connection to the host's
//! DNS channel.
//!
//! Each query gets a fresh `u32` request id and a oneshot; a reader task
//! hands every [`DnsResponse::Answer`] to the oneshot with the same id, so
//! any number of queries are in flight at once and answers may come back in
//! any order. A connection task dials, says hello, and on any failure (the
//! host closing, an oversize or corrupt frame) drops every pending oneshot,
//! so each waiting query fails at once, then redials with exponential
//! backoff.
//!
//! Queries come in two kinds. [`HostClient::query`] is awaited by a task
//! (TCP). [`HostClient::submit`] takes a batch of queries whose answers go
//! to callbacks run on the reader task (UDP, no task per query); their
//! timeouts are enforced by a sweeper, and a lost connection fails them at
//! once like the others. After each group of callbacks (the answers of one
//! read, a lost connection, a sweep) the client calls the hook set with
//! [`HostClient::on_flush`], so the UDP listener sends the replies the
//! callbacks queued in one system call. The callback side lives in
//! `batch.rs`, the connection and sweeper tasks in `conn.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bottle_shared::frame::encode_message;
use bottle_shared::message::{DnsRequest, DnsTransport};
use bottle_shared::{Address, Channel};
use tokio::sync::{mpsc, oneshot, watch};

use super::stats::{InFlightOwned, Stats};

mod batch;
mod conn;

/// Timings of the host client.
#[derive(Clone, Copy, Debug)]
pub struct ClientTimings {
    /// How long one query may wait for the host's answer.
    pub query_timeout: Duration,
    /// How long a query arriving while disconnected waits for a reconnect.
    pub reconnect_wait: Duration,
    /// First redial delay; doubles on each failure.
    pub backoff_initial: Duration,
    /// Redial delay ceiling.
    pub backoff_max: Duration,
    /// Limit on dialing plus the hello.
    pub connect_timeout: Duration,
}

impl Default for ClientTimings {
    fn default() -> Self {
        ClientTimings {
            query_timeout: Duration::from_secs(3),
            reconnect_wait: Duration::from_millis(200),
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// Why a query got no answer from the host.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueryError {
    /// Not connected, and no reconnect within the wait.
    #[error("host DNS channel is down")]
    Disconnected,
    /// The connection broke while the query was in flight.
    #[error("host DNS connection lost")]
    ConnectionLost,
    /// No answer in time.
    #[error("no answer from host within {0:?}")]
    Timeout(Duration),
    /// The query could not be framed (too large).
    #[error("query too large for the DNS channel")]
    TooLarge,
}

/// Frames queued for the writer task of the current connection.
type FrameTx = mpsc::UnboundedSender<Vec<u8>>;

/// Receives a submitted query's answer, or why there is none. Runs on the
/// client's own tasks: it must not block.
pub type Done = Box<dyn FnOnce(Result<Vec<u8>, QueryError>) + Send>;

/// Run after a group of [`Done`] callbacks; see [`HostClient::on_flush`].
pub type Flush = Box<dyn Fn() + Send + Sync>;

/// One query for [`HostClient::submit`].
pub struct Submission {
    /// How the client asked.
    pub transport: DnsTransport,
    /// The query, wire format.
    pub wire: Vec<u8>,
    /// Where the answer goes.
    pub done: Done,
}

/// Who waits for an answer.
enum Waiter {
    /// A task awaiting [`HostClient::query`]; dropping it fails the query.
    Task(oneshot::Sender<Vec<u8>>),
    /// A submitted query's callback.
    Call(Call),
}

/// A submitted query waiting for its answer.
struct Call {
    done: Done,
    started: Instant,
    /// When it gives up.
    deadline: Instant,
    _in_flight: InFlightOwned,
}

#[derive(Default)]
struct State {
    /// The current connection's writer queue, `None` while disconnected.
    conn: Option<FrameTx>,
    /// Waiting queries by request id.
    pending: HashMap<u32, Waiter>,
    /// How many of `pending` are callbacks (the sweeper sleeps at zero).
    calls: usize,
}

impl State {
    fn take(&mut self, id: u32) -> Option<Waiter> {
        let w = self.pending.remove(&id);
        if matches!(w, Some(Waiter::Call(..))) {
            self.calls -= 1;
        }
        w
    }
}

/// A handle to the host client; cheap to clone.
#[derive(Clone)]
pub struct HostClient {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    next_id: AtomicU32,
    connected: watch::Sender<bool>,
    /// Wakes the sweeper when the first callback is registered.
    sweep: tokio::sync::Notify,
    /// Run after each group of callbacks.
    flush: OnceLock<Flush>,
    timings: ClientTimings,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for HostClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostClient")
            .field("connected", &*self.inner.connected.borrow())
            .finish_non_exhaustive()
    }
}

impl HostClient {
    /// Start the connection task for `addr`; returns the client and the
    /// task (abort it to stop redialing). Must be called inside a tokio
    /// runtime.
    pub fn start(
        addr: Address,
        timings: ClientTimings,
        stats: Arc<Stats>,
    ) -> (HostClient, tokio::task::JoinHandle<()>) {
        let client = HostClient {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                next_id: AtomicU32::new(1),
                connected: watch::Sender::new(false),
                sweep: tokio::sync::Notify::new(),
                flush: OnceLock::new(),
                timings,
                stats,
            }),
        };
        let (c1, c2) = (client.clone(), client.clone());
        let task = tokio::spawn(async move {
            tokio::join!(conn::connection_loop(c1, addr), conn::sweep_loop(c2));
        });
        (client, task)
    }

    /// Run `hook` after every group of [`Done`] callbacks the client runs
    /// (the answers of one read from the host, the failures of a lost
    /// connection or of a sweep, refused submissions): callbacks may
    /// queue their work and let `hook` do it for the whole group. Only the
    /// first hook set is kept; `false` if one was already set.
    pub fn on_flush(&self, hook: Flush) -> bool {
        self.inner.flush.set(hook).is_ok()
    }

    /// Run the flush hook, if any.
    pub fn flush(&self) {
        if let Some(f) = self.inner.flush.get() {
            f();
        }
    }

    /// True while a connection to the host is up.
    pub fn is_connected(&self) -> bool {
        *self.inner.connected.borrow()
    }

    /// Wait until connected, at most `limit`.
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        let mut rx = self.inner.connected.subscribe();
        let res = tokio::time::timeout(limit, rx.wait_for(|c| *c)).await;
        matches!(res, Ok(Ok(_)))
    }

    /// Send one DNS query (wire format) and wait for the host's answer.
    pub async fn query(
        &self,
        transport: DnsTransport,
        wire: Vec<u8>,
    ) -> Result<Vec<u8>, QueryError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_message(
            &DnsRequest::Query {
                id,
                transport,
                wire,
            },
            max_frame(),
        )
        .map_err(|_| QueryError::TooLarge)?;
        let (rx, tx) = match self.register(id) {
            Some(pair) => pair,
            None => {
                if !self.wait_connected(self.inner.timings.reconnect_wait).await {
                    return Err(QueryError::Disconnected);
                }
                self.register(id).ok_or(QueryError::Disconnected)?
            }
        };
        let _guard = PendingGuard { client: self, id };
        let _counted = self.inner.stats.in_flight();
        let started = Instant::now();
        // If the connection current at `register` is gone, its pending
        // entries were dropped with it and `rx` fails below.
        let _ = tx.send(frame);
        let limit = self.inner.timings.query_timeout;
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(answer)) => {
                self.inner.stats.latency(started.elapsed());
                Ok(answer)
            }
            Ok(Err(_)) => Err(QueryError::ConnectionLost),
            Err(_) => Err(QueryError::Timeout(limit)),
        }
    }

    /// Register a pending query if connected; returns its oneshot and the
    /// current connection's writer queue.
    fn register(&self, id: u32) -> Option<(oneshot::Receiver<Vec<u8>>, FrameTx)> {
        let mut st = self.lock();
        let conn = st.conn.clone()?;
        let (tx, rx) = oneshot::channel();
        st.pending.insert(id, Waiter::Task(tx));
        Some((rx, conn))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the map consistent (every
        // operation on it is a single insert, remove or drain).
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connection established: publish the writer queue.
    fn up(&self, tx: FrameTx) {
        self.lock().conn = Some(tx);
        self.inner.connected.send_replace(true);
    }

    /// Connection lost: fail every pending query at once.
    fn down(&self) {
        let pending = {
            let mut st = self.lock();
            st.conn = None;
            st.calls = 0;
            std::mem::take(&mut st.pending)
        };
        self.inner.connected.send_replace(false);
        if !pending.is_empty() {
            tracing::warn!(
                failed = pending.len(),
                "dns-stub: host connection lost with queries in flight"
            );
        }
        for (_, w) in pending {
            if let Waiter::Call(c) = w {
                (c.done)(Err(QueryError::ConnectionLost));
            }
        }
        self.flush();
    }
}

/// Removes a query's pending entry when it completes or is cancelled.
struct PendingGuard<'a> {
    client: &'a HostClient,
    id: u32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.client.lock().take(self.id);
    }
}

fn max_frame() -> usize {
    Channel::Dns.max_frame()
}
