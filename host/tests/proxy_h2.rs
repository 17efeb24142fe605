//! HTTP/2 and upgrades at the proxy's front door: a CONNECT on an HTTP/2
//! stream is refused (each stream would be a tunnel the connection cap
//! never counted), and only a GET asks for a WebSocket upgrade (the
//! upstream is always sent a GET, so another method would pass the
//! route's method rule as itself). An HTTP/2 request in a TLS tunnel is
//! checked as https whatever `:scheme` it names, so its SNI must match.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_util;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{Method, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy_util::{read_head, setup};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_over_http2_is_refused() {
    let env = setup(true).await;
    let tcp = TcpStream::connect(env.proxy.addr.unwrap()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("open.test:{}", env.tls_port))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = tokio::time::timeout(std::time::Duration::from_secs(10), send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.headers()["x-bottle-rule"], "unsupported");
    // HTTP/1.1 CONNECT (what the guest's clients send) still works.
    let r = env.curl(&env.https("open.test", "/x"), &[]).await;
    assert_eq!(r.code, 200, "{r:?}");
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_get_asks_for_a_websocket_upgrade() {
    let env = setup(true).await;
    let host = format!("api.test:{}", env.tls_port);
    let mut t = env.tunnel(&host, "api.test").await.unwrap();
    let req = format!(
        "POST /v1/ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Content-Length: 0\r\n\r\n"
    );
    t.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut t).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("x-seen-method"),
        "{head}"
    );
    env.proxy.stop().await;
}

/// `:scheme: http` on an HTTP/2 stream inside a TLS tunnel whose SNI names
/// another host: still https to the proxy, so the SNI check applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_scheme_does_not_skip_the_sni_check() {
    let env = setup(true).await;
    let host = format!("open.test:{}", env.tls_port);
    for (sni, scheme, want) in [
        ("other.test", "http", 403),
        ("other.test", "https", 403),
        ("open.test", "http", 200),
    ] {
        let t = env.tunnel_alpn(&host, sni, &[b"h2"]).await.unwrap();
        assert_eq!(t.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut send, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
            TokioExecutor::new(),
            TokioIo::new(t),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = Request::builder()
            .uri(format!("{scheme}://{host}/h2-scheme"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = tokio::time::timeout(std::time::Duration::from_secs(10), send.send_request(req))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(res.status(), want, "SNI {sni}, :scheme {scheme}");
        if want == 403 {
            assert_eq!(res.headers()["x-bottle-rule"], "host-mismatch");
        } else {
            assert_eq!(res.headers()["x-seen-version"], "HTTP/2.0");
        }
    }
    env.proxy.stop().await;
}
