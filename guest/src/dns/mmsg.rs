//! Batched UDP system calls: `recvmmsg` takes up to [`SLOTS`] datagrams
//! in one call, `sendmmsg` sends many answers (each to its own client) in
//! one call. Under load this halves the stub's system calls per query
//! compared with one `recvfrom` and one `sendto` each.
//!
//! Both work on a non-blocking socket; `WouldBlock` is returned as such,
//! for tokio's `try_io`.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams taken per `recvmmsg`.
pub const SLOTS: usize = 64;

/// Room per received datagram. A DNS query is a header, one question and
/// perhaps an OPT record: well under 1 KiB. Larger datagrams (nothing a
/// resolver sends) are cut by the kernel and dropped, see
/// [`RecvBatch::get`]. The buffer is allocated zeroed, so only the pages
/// datagrams are written to take memory.
pub const SLOT_LEN: usize = 4096;

/// Buffers for one `recvmmsg`, reused from call to call.
pub struct RecvBatch {
    bufs: Vec<u8>,
    // SAFETY-relevant: these are plain C structs; every pointer in them is
    // set right before each call, from the buffers above, which live as
    // long as the batch and are never reallocated.
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    len: usize,
}

// SAFETY: the raw pointers inside `iovs` and `hdrs` only ever point into
// the batch's own heap buffers (set again before each call, used only
// during it, through `&mut self`), so moving the batch to another thread
// shares nothing.
unsafe impl Send for RecvBatch {}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch::new()
    }
}

impl RecvBatch {
    /// Buffers for [`SLOTS`] datagrams of up to [`SLOT_LEN`] bytes.
    pub fn new() -> RecvBatch {
        RecvBatch {
            bufs: vec![0u8; SLOTS * SLOT_LEN],
            // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C
            // structs for which all-zero bytes are valid (null pointers,
            // zero lengths).
            addrs: (0..SLOTS).map(|_| unsafe { zeroed() }).collect(),
            // SAFETY: as above.
            iovs: (0..SLOTS).map(|_| unsafe { zeroed() }).collect(),
            // SAFETY: as above.
            hdrs: (0..SLOTS).map(|_| unsafe { zeroed() }).collect(),
            len: 0,
        }
    }

    /// Receive as many datagrams as are queued (at most [`SLOTS`]) from
    /// the non-blocking socket `fd`; returns how many. `WouldBlock` when
    /// none is queued.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.len = 0;
        let base = self.bufs.as_mut_ptr();
        for i in 0..SLOTS {
            self.iovs[i] = libc::iovec {
                // SAFETY: i * SLOT_LEN + SLOT_LEN <= bufs.len(), so the
                // slot lies inside the buffer.
                iov_base: unsafe { base.add(i * SLOT_LEN) }.cast(),
                iov_len: SLOT_LEN,
            };
            let hdr = &mut self.hdrs[i].msg_hdr;
            hdr.msg_name = std::ptr::from_mut(&mut self.addrs[i]).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = std::ptr::from_mut(&mut self.iovs[i]);
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: `hdrs` holds SLOTS headers whose name, iovec and buffer
        // pointers were just set to live, writable memory of the stated
        // sizes, owned by `self` for the whole call; a null timeout is
        // allowed. The kernel writes only within those bounds.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                SLOTS as libc::c_uint,
                // The flags are a c_int in glibc, a c_uint in musl.
                libc::MSG_DONTWAIT as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.len = usize::try_from(n).unwrap_or(0).min(SLOTS);
        Ok(self.len)
    }

    /// Datagram `i` of the last [`Self::recv`] and its sender; `None` if it
    /// was cut short (larger than [`SLOT_LEN`]) or its sender is not an
    /// IP address.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.len {
            return None;
        }
        let hdr = &self.hdrs[i];
        if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let len = usize::try_from(hdr.msg_len).ok()?.min(SLOT_LEN);
        let peer = to_socket_addr(&self.addrs[i])?;
        Some((&self.bufs[i * SLOT_LEN..i * SLOT_LEN + len], peer))
    }
}

/// The address in `ss`, if it is IPv4 or IPv6.
fn to_socket_addr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in,
            // which is smaller than sockaddr_storage and less aligned.
            let sin = unsafe { &*std::ptr::from_ref(ss).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &*std::ptr::from_ref(ss).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                sin6.sin6_addr.s6_addr.into(),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// `addr` as a C socket address and its length.
fn from_socket_addr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any
            // socket address, sockaddr_in included.
            let sin = unsafe { &mut *std::ptr::from_mut(&mut ss).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *std::ptr::from_mut(&mut ss).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// Send `msgs[..]` (each datagram to its address) with as few `sendmmsg`
/// calls as the socket allows. Returns how many were handed to the kernel
/// or dropped for an error of their own (logged); the rest (from the
/// returned index on) met a full socket buffer (`WouldBlock`). Never more
/// than [`SLOTS`] per call.
pub fn send_all(fd: RawFd, msgs: &[(Vec<u8>, SocketAddr)]) -> usize {
    let mut done = 0;
    while done < msgs.len() {
        let chunk = &msgs[done..msgs.len().min(done + SLOTS)];
        match send_chunk(fd, chunk) {
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return done,
            Err(e) => {
                // This datagram cannot go (e.g. no route): drop it alone.
                tracing::debug!(peer = %chunk[0].1, "dns-stub: udp send failed: {e}");
                done += 1;
            }
        }
    }
    done
}

/// One `sendmmsg` for `chunk` (at most [`SLOTS`] datagrams): how many were
/// sent, or the error of the first.
fn send_chunk(fd: RawFd, chunk: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    let mut addrs: [(libc::sockaddr_storage, libc::socklen_t); SLOTS] =
        // SAFETY: all-zero bytes are valid for these plain C structs.
        unsafe { zeroed() };
    // SAFETY: as above.
    let mut iovs: [libc::iovec; SLOTS] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; SLOTS] = unsafe { zeroed() };
    let n = chunk.len().min(SLOTS);
    for (i, (data, peer)) in chunk.iter().take(n).enumerate() {
        addrs[i] = from_socket_addr(peer);
        iovs[i] = libc::iovec {
            // The kernel only reads through this pointer (sendmmsg).
            iov_base: data.as_ptr().cast_mut().cast(),
            iov_len: data.len(),
        };
    }
    for i in 0..n {
        let hdr = &mut hdrs[i].msg_hdr;
        hdr.msg_name = std::ptr::from_mut(&mut addrs[i].0).cast();
        hdr.msg_namelen = addrs[i].1;
        hdr.msg_iov = std::ptr::from_mut(&mut iovs[i]);
        hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `n` headers point at `n` initialised addresses and
    // iovecs on this stack frame, whose buffers (`chunk`'s datagrams) are
    // borrowed for the whole call; the kernel only reads them.
    let sent = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT as _,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(sent).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn addresses_round_trip() {
        for a in ["127.0.0.1:53", "[::1]:5353", "[fe80::1%2]:1"] {
            let a: SocketAddr = a.parse().unwrap();
            let (ss, _) = from_socket_addr(&a);
            assert_eq!(to_socket_addr(&ss), Some(a));
        }
    }

    #[test]
    fn batches_go_out_and_come_back_with_their_senders() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let mut batch = RecvBatch::new();
        let err = batch.recv(rx.as_raw_fd()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        // More than one call's worth, of different sizes, plus one too big.
        let mut msgs: Vec<(Vec<u8>, SocketAddr)> = (0..100u8)
            .map(|i| (vec![i; 1 + usize::from(i)], to))
            .collect();
        msgs.push((vec![0xee; SLOT_LEN + 1], to));
        assert_eq!(send_all(tx.as_raw_fd(), &msgs), msgs.len());
        let mut got = Vec::new();
        let mut too_big = 0;
        loop {
            match batch.recv(rx.as_raw_fd()) {
                Ok(n) => {
                    assert!(n <= SLOTS);
                    for i in 0..n {
                        match batch.get(i) {
                            Some((data, from)) => {
                                assert_eq!(from, tx.local_addr().unwrap());
                                got.push(data.to_vec());
                            }
                            None => too_big += 1,
                        }
                    }
                    assert!(batch.get(n).is_none());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let want: Vec<Vec<u8>> = msgs[..100].iter().map(|(d, _)| d.clone()).collect();
        assert_eq!(got, want);
        assert_eq!(too_big, 1);
    }
}
