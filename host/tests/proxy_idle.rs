//! Idle and silent connections: the proxy closes a connection that sends
//! no request head within `proxy::HEADER_TIMEOUT` after a request, and
//! one that stops before its first request (nothing sent, half an HTTP/2
//! preface, an empty CONNECT tunnel, half a TLS client hello, a TLS
//! session without a request) within `hudsucker::OPENING_TIMEOUT`; and it
//! says so in its debug log, not as an error (a user's terminal showed
//! `ERROR ... read header from client timeout` whenever npm left a
//! connection idle). Its own test binary: it installs the process's
//! tracing subscriber to read what was logged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_util;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bottle_host::proxy::HEADER_TIMEOUT;
use proxy_util::{read_body, read_head, setup};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Everything logged, at every level, without colour.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).to_string()
    }
}

/// Wait for the proxy to end `s` (end of stream or a reset), within the
/// header timeout and some slack.
async fn closed_by_proxy<S: AsyncRead + Unpin>(s: &mut S, what: &str) {
    let mut buf = [0u8; 64];
    let limit = HEADER_TIMEOUT.max(hudsucker::OPENING_TIMEOUT) + Duration::from_secs(10);
    let end = tokio::time::timeout(limit, s.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{what}: still open long after the header timeout"));
    assert!(
        matches!(end, Ok(0) | Err(_)),
        "{what}: unexpected bytes {end:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_keep_alive_connections_are_closed_quietly() {
    let logs = Captured::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .init();
    let env = setup(true).await;

    // HTTPS through a tunnel: one request, then nothing.
    let authority = format!("open.test:{}", env.tls_port);
    let mut tls = env.tunnel(&authority, "open.test").await.unwrap();
    tls.write_all(format!("GET /once HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    read_body(&mut tls, &head).await;

    // Plain HTTP: one request, then nothing.
    let port = env.plain_port;
    let mut plain = tokio::net::TcpStream::connect(env.proxy.addr.unwrap())
        .await
        .unwrap();
    plain
        .write_all(
            format!(
                "GET http://plain.test:{port}/once HTTP/1.1\r\nHost: plain.test:{port}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let head = read_head(&mut plain).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    read_body(&mut plain, &head).await;

    // Connections that stop before their first request: nothing at all;
    // half the HTTP/2 preface; a tunnel with nothing in it; half a TLS
    // client hello in a tunnel; a TLS session without a request.
    let connect = || async {
        tokio::net::TcpStream::connect(env.proxy.addr.unwrap())
            .await
            .unwrap()
    };
    let mut silent = connect().await;
    let mut preface = connect().await;
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let open_tunnel = || async {
        let mut s = connect().await;
        s.write_all(
            format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        s
    };
    let mut empty_tunnel = open_tunnel().await;
    let mut half_hello = open_tunnel().await;
    half_hello
        .write_all(b"\x16\x03\x01\x02\x00\x01\x00")
        .await
        .unwrap();
    let mut tls_silent = env.tunnel(&authority, "open.test").await.unwrap();

    tokio::join!(
        closed_by_proxy(&mut tls, "idle tunnel"),
        closed_by_proxy(&mut plain, "idle plain connection"),
        closed_by_proxy(&mut silent, "silent connection"),
        closed_by_proxy(&mut preface, "half an HTTP/2 preface"),
        closed_by_proxy(&mut empty_tunnel, "empty tunnel"),
        closed_by_proxy(&mut half_hello, "half a TLS client hello"),
        closed_by_proxy(&mut tls_silent, "TLS without a request"),
    );
    // The tasks log as they end; give them a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = logs.text();
    assert!(
        text.contains("HTTPS connection closed") && text.contains("Connection closed"),
        "the closes are logged at debug level: {text}"
    );
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains(" WARN "))
        .filter(|l| !l.contains("allow_private"))
        .collect();
    assert!(errors.is_empty(), "logged as a problem: {errors:#?}");
    env.proxy.stop().await;
}
