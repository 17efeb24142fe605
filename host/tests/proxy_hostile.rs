//! Hostile input to the egress proxy: bodies over the limit (declared,
//! chunked, and through curl), garbage inside an allowed CONNECT tunnel,
//! more connections on the egress channel than `egress.max_connections`;
//! each refused cleanly while the proxy keeps serving others.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_util;

use std::net::SocketAddr;
use std::time::Duration;

use proxy_util::{file, read_body, read_head, setup};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The test manifest's `egress.max_body_bytes`.
const LIMIT: usize = 16 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_over_the_limit_are_413_and_the_proxy_keeps_serving() {
    let env = setup(true).await;

    // curl, a real body one byte over the limit.
    let big = vec![b'a'; LIMIT + 1];
    let path = file(&env, "huge.bin", &big);
    let at = format!("@{}", path.display());
    for extra in [
        &["--http1.1"][..],
        &["--http2"][..],
        &["--http1.1", "-H", "Transfer-Encoding: chunked"][..],
    ] {
        let mut args = vec!["--data-binary", at.as_str()];
        args.extend_from_slice(extra);
        let r = env.curl(&env.https("open.test", "/upload"), &args).await;
        assert_eq!(r.code, 413, "{extra:?}: {r:?}");
        assert_eq!(r.header("x-bottle-rule").as_deref(), Some("body-too-large"));
    }

    // A declared 10 GB body is refused before any of it is read.
    let port = env.plain_port;
    let mut s = tokio::net::TcpStream::connect(env.proxy.addr.unwrap())
        .await
        .unwrap();
    s.write_all(
        format!(
            "POST http://plain.test:{port}/ HTTP/1.1\r\nHost: plain.test:{port}\r\n\
             Content-Length: 10000000000\r\n\r\nabc"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut s))
        .await
        .expect("refused without waiting for the body");
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    // Chunked without end: refused once past the limit, not buffered on.
    let mut s = tokio::net::TcpStream::connect(env.proxy.addr.unwrap())
        .await
        .unwrap();
    s.write_all(
        format!(
            "POST http://plain.test:{port}/ HTTP/1.1\r\nHost: plain.test:{port}\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let chunk = format!("4000\r\n{}\r\n", "b".repeat(0x4000));
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let mut sent = 0usize;
        while sent < 8 * LIMIT && wr.write_all(chunk.as_bytes()).await.is_ok() {
            sent += 0x4000;
        }
        sent
    });
    let head = tokio::time::timeout(Duration::from_secs(30), read_head(&mut rd))
        .await
        .expect("an answer");
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    drop(rd);
    let sent = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("writer ends")
        .unwrap();
    // The limit, then at most 16 MiB drained (body::DRAIN), plus socket
    // buffers: loopback autotuning lets the sender's and the proxy's
    // buffers grow to several MiB each (tcp_wmem/tcp_rmem maxima), which
    // 8 MiB of slack did not always cover under load. The writer offers
    // 128 MiB, so the bound still proves the proxy stopped reading.
    assert!(
        sent < LIMIT + (16 << 20) + (16 << 20),
        "proxy kept reading: {sent} bytes"
    );

    // Still serving.
    let r = env.curl(&env.https("open.test", "/after"), &[]).await;
    assert_eq!(r.code, 200, "{r:?}");
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_inside_an_allowed_tunnel_reaches_nothing() {
    let env = setup(true).await;
    let connect = format!("open.test:{}", env.tls_port);
    for garbage in [
        &b"\x00\x01\x02\x03 not tls, not http\r\n\r\n"[..],
        // A TLS record header followed by junk.
        &b"\x16\x03\x01\x00\x05junkjunkjunk"[..],
        // HTTP inside the tunnel without TLS, to a host the tunnel is not for.
        &b"GET / HTTP/1.1\r\nHost: denied.test\r\nConnection: close\r\n\r\n"[..],
    ] {
        let mut s = tokio::net::TcpStream::connect(env.proxy.addr.unwrap())
            .await
            .unwrap();
        s.write_all(format!("CONNECT {connect} HTTP/1.1\r\nHost: {connect}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        s.write_all(garbage).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .unwrap_or_else(|_| panic!("the proxy ends the tunnel after {garbage:?}"));
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains("x-seen-"), "reached the upstream: {text}");
    }
    let r = env.curl(&env.https("open.test", "/after"), &[]).await;
    assert_eq!(r.code, 200, "{r:?}");
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connect_inside_a_tunnel_is_a_clean_400_not_a_panic() {
    // A panic in any proxy task fails this test, even though tokio would
    // catch it: the hook sees it first.
    let panicked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&panicked);
    let old = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        old(info);
    }));
    let env = setup(true).await;
    let port = env.tls_port;
    let mut tls = env
        .tunnel(&format!("open.test:{port}"), "open.test")
        .await
        .unwrap();
    tls.write_all(b"CONNECT evil.example.com:443 HTTP/1.1\r\nHost: evil.example.com:443\r\n\r\n")
        .await
        .unwrap();
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut tls))
        .await
        .expect("an answer, not a dropped tunnel");
    assert!(head.starts_with("HTTP/1.1 400"), "{head:?}");
    // The proxy keeps serving.
    let r = env.curl(&env.https("open.test", "/after"), &[]).await;
    assert_eq!(r.code, 200, "{r:?}");
    assert!(
        !panicked.load(std::sync::atomic::Ordering::SeqCst),
        "a proxy task panicked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_request_with_a_body_is_answered_and_the_connection_stays_usable() {
    let env = setup(true).await;
    let port = env.plain_port;
    let s = tokio::net::TcpStream::connect(env.proxy.addr.unwrap())
        .await
        .unwrap();
    let (mut rd, mut wr) = s.into_split();
    // A refused POST whose body the proxy never needs, then a second
    // request on the same connection (as a client that pipelines, or
    // `git push` writing its pack while the refusal is on its way).
    let body = "p".repeat(256 * 1024);
    let writer = tokio::spawn(async move {
        let first = format!(
            "POST http://denied.test:{port}/repo.git/git-receive-pack HTTP/1.1\r\n\
             Host: denied.test:{port}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let second = format!(
            "GET http://plain.test:{port}/after HTTP/1.1\r\nHost: plain.test:{port}\r\n\r\n"
        );
        wr.write_all(first.as_bytes()).await?;
        wr.write_all(second.as_bytes()).await?;
        Ok::<_, std::io::Error>(wr)
    });
    let answers = tokio::time::timeout(Duration::from_secs(30), async {
        let head = read_head(&mut rd).await;
        let text = read_body(&mut rd, &head).await;
        let second = read_head(&mut rd).await;
        (head, text, second)
    })
    .await
    .expect("both answers in time");
    let (head, text, second) = answers;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(text.contains("host-not-allowed"), "{text}");
    assert!(
        second.starts_with("HTTP/1.1 200"),
        "the connection ended with the refusal: {second:?}"
    );
    let _wr = writer.await.unwrap().expect("the whole body was taken");
    env.proxy.stop().await;
}

/// Open a connection on the egress channel at `addr`, do the hello and
/// one request; `None` when the proxy closed it instead of answering.
async fn egress_request(
    addr: &bottle_shared::addr::Address,
    port: u16,
) -> Option<bottle_shared::transport::BoxStream> {
    use bottle_shared::channel::Channel;
    use bottle_shared::message::Role;
    let mut s = bottle_shared::transport::connect(addr).await.unwrap();
    let hello = bottle_shared::io::dial_hello(&mut s, Role::Guest, Channel::Egress, "test");
    tokio::time::timeout(Duration::from_secs(10), hello)
        .await
        .expect("the hello is answered or the connection closed")
        .ok()?;
    plain_get(s, port).await
}

/// A plain GET through the standalone proxy's TCP listener: the stream
/// if it was answered 200, `None` if the proxy closed it unanswered.
async fn tcp_request(proxy: SocketAddr, port: u16) -> Option<tokio::net::TcpStream> {
    plain_get(tokio::net::TcpStream::connect(proxy).await.unwrap(), port).await
}

/// One GET to the plain upstream on the proxy connection `s`: `s` again
/// if it was answered 200, `None` if the proxy closed it unanswered.
async fn plain_get<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, port: u16) -> Option<S> {
    let req = format!("GET http://plain.test:{port}/ HTTP/1.1\r\nHost: plain.test:{port}\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut head = [0u8; 12];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut head))
        .await
        .expect("answered or closed")
        .unwrap_or(0);
    assert!(
        n == 0 || head[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &head[..n]
    );
    (n > 0).then_some(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_guest_cannot_hold_more_connections_than_the_cap() {
    let (env, addr) = proxy_util::setup_egress("egress.sock").await;
    let port = env.plain_port;
    holds_at_most_the_cap(|| egress_request(&addr, port)).await;
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tcp_listener_holds_no_more_connections_than_the_cap() {
    let env = proxy_util::setup_capped_tcp().await;
    let (addr, port) = (env.proxy.addr.unwrap(), env.plain_port);
    holds_at_most_the_cap(|| tcp_request(addr, port)).await;
    env.proxy.stop().await;
}

/// `request` opens a connection and sends a request on it: the cap's
/// worth are served and held, the next are closed, and a slot comes free
/// once one of them ends.
async fn holds_at_most_the_cap<S, F, Fut>(mut request: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<S>>,
{
    let mut held = Vec::new();
    for i in 0..proxy_util::EGRESS_MAX_CONNECTIONS {
        let s = request().await;
        held.push(s.unwrap_or_else(|| panic!("connection {i} under the cap was refused")));
    }
    // At the cap: the next connections are closed, not served.
    for _ in 0..3 {
        assert!(
            request().await.is_none(),
            "a connection over egress.max_connections was served"
        );
    }
    // One ends: its slot is free again once the proxy has seen it close.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = request().await {
            held.push(s);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no slot came free after a connection closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
