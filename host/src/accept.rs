//! Accepting on the channels' listeners without giving up on errors that
//! pass. Out of descriptors (`EMFILE`, `ENFILE`: a guest can open that
//! many connections), out of memory or buffers, or a connection aborted
//! before it was taken: the listener is still good, so the error is
//! logged and the accept retried after [`PAUSE`] (retrying at once would
//! spin). Any other error is returned: the listener itself is broken.
//! [`Cap`] bounds how many of a listener's connections are open at once.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bottle_shared::transport::{BoxStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long to wait before accepting again after an error that passes.
pub const PAUSE: Duration = Duration::from_millis(100);

/// Does `e` leave the listener usable?
pub fn passes(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::ECONNABORTED
                | libc::EINTR
                | libc::EPROTO
        )
    )
}

/// The next connection on `listener`; `what` names it in the log.
pub async fn next(listener: &Listener, what: &str) -> io::Result<BoxStream> {
    retrying(what, || listener.accept()).await
}

/// The next connection on a TCP listener, with its peer's address.
pub async fn next_tcp(listener: &TcpListener, what: &str) -> io::Result<(TcpStream, SocketAddr)> {
    retrying(what, || listener.accept()).await
}

/// `accept()` until it gives a connection or fails for good.
async fn retrying<T, F, Fut>(what: &str, mut accept: F) -> io::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    loop {
        match accept().await {
            Ok(s) => return Ok(s),
            Err(e) if passes(&e) => {
                tracing::warn!("{what}: cannot accept a connection now ({e}); retrying");
                tokio::time::sleep(PAUSE).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A cap on a listener's connections open at once: each accepted one
/// takes a slot it holds until dropped; with none free, the caller closes
/// the new connection. Refusals are logged once per run of them.
#[derive(Debug)]
pub struct Cap {
    slots: Arc<Semaphore>,
    max: usize,
    refusing: bool,
}

impl Cap {
    /// At most `max` connections at once.
    pub fn new(max: usize) -> Cap {
        Cap {
            slots: Arc::new(Semaphore::new(max)),
            max,
            refusing: false,
        }
    }

    /// A slot for a connection just accepted, or `None` when all are
    /// taken; `what` names the listener (and its setting) in the log.
    pub fn take(&mut self, what: &str) -> Option<OwnedSemaphorePermit> {
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => {
                self.refusing = false;
                Some(slot)
            }
            Err(_) => {
                if !self.refusing {
                    tracing::warn!(
                        "{what}: {} connections are open; closing new ones until some end",
                        self.max
                    );
                    self.refusing = true;
                }
                None
            }
        }
    }
}

/// The most [`raise_descriptor_limit`] asks for: enough for thousands of
/// proxied connections, small enough that a child process (QEMU, the
/// daemons) that walks every possible descriptor stays quick.
pub const DESCRIPTOR_LIMIT: u64 = 65_536;

/// Raise this process's soft limit on open descriptors towards its hard
/// limit, at most [`DESCRIPTOR_LIMIT`]: every proxied connection holds one
/// or two, and Debian's default soft limit of 1,024 would run out at a
/// few hundred.
pub fn raise_descriptor_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let want = hard.min(DESCRIPTOR_LIMIT);
    if soft < want {
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, want, hard) {
            tracing::debug!("cannot raise the descriptor limit from {soft} to {want}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_exhaustion_passes_a_broken_listener_does_not() {
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ECONNABORTED,
        ] {
            assert!(passes(&io::Error::from_raw_os_error(errno)), "{errno}");
        }
        for errno in [libc::EBADF, libc::EINVAL, libc::ENOTSOCK] {
            assert!(!passes(&io::Error::from_raw_os_error(errno)), "{errno}");
        }
    }

    #[test]
    fn a_cap_gives_out_its_slots_and_takes_them_back() {
        let mut cap = Cap::new(2);
        let a = cap.take("test");
        let b = cap.take("test");
        assert!(a.is_some() && b.is_some());
        assert!(cap.take("test").is_none());
        assert!(cap.take("test").is_none());
        drop(a);
        assert!(cap.take("test").is_some());
    }
}
