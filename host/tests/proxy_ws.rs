//! WebSocket upgrades through the egress proxy: a real WebSocket echo
//! server over TLS on 127.0.0.1 (its own CA), a real client (tungstenite)
//! through a CONNECT tunnel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_util;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use proxy_util::{setup, Env, API_KEY, LEAK};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type Client =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Open `wss://host:port/path` through the proxy, sending a placeholder
/// `x-api-key` and asking for compression.
async fn open(env: &Env, host: &str, path: &str) -> Result<Client, WsError> {
    let authority = format!("{host}:{}", env.tls_port);
    let tls = env.tunnel(&authority, host).await.expect("CONNECT allowed");
    let mut req = format!("wss://{authority}{path}")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("x-api-key", "placeholder".parse().unwrap());
    req.headers_mut().insert(
        "sec-websocket-extensions",
        "permessage-deflate".parse().unwrap(),
    );
    tokio_tungstenite::client_async(req, tls)
        .await
        .map(|(ws, _)| ws)
}

/// The next message, with a time limit.
async fn next(ws: &mut Client) -> Option<Result<Message, WsError>> {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message or the end in time")
}

/// Read until the proxy closes; returns the close code seen.
async fn closed_with(ws: &mut Client) -> Option<CloseCode> {
    loop {
        match next(ws).await {
            Some(Ok(Message::Close(f))) => return f.map(|f| f.code),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_echo_works_and_leaks_close_the_connection() {
    let env = setup(true).await;

    // Echo over an allowed route; the injected key reaches the upstream,
    // compression is not negotiated.
    let mut ws = open(&env, "api.test", "/v1/ws").await.expect("upgrade");
    ws.send(Message::text("hello")).await.unwrap();
    let first = next(&mut ws).await.unwrap().unwrap();
    // The upstream got the key; its echo of it is redacted.
    assert_eq!(
        first.into_text().unwrap().as_str(),
        format!(
            "key={};injected=yes;ext=false;hello",
            "*".repeat(API_KEY.len())
        )
    );
    let bin: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
    ws.send(Message::binary(bin.clone())).await.unwrap();
    let back = next(&mut ws).await.unwrap().unwrap();
    assert_eq!(back.into_data().as_ref(), &bin[..]);

    // A host secret in a text message: closed with 1008, not echoed.
    ws.send(Message::text(format!("token {LEAK} here")))
        .await
        .unwrap();
    assert_eq!(closed_with(&mut ws).await, Some(CloseCode::Policy));

    // A credential split across two binary messages: the second closes it.
    let mut ws = open(&env, "open.test", "/ws").await.expect("upgrade");
    let key = "AKIAIOSFODNN7EXAMPLE";
    ws.send(Message::binary(format!("aws={}", &key[..9]).into_bytes()))
        .await
        .unwrap();
    let echoed = next(&mut ws).await.unwrap().unwrap();
    assert!(echoed.into_text().unwrap().ends_with(&key[..9]));
    ws.send(Message::binary(key.as_bytes()[9..].to_vec()))
        .await
        .unwrap();
    assert_eq!(closed_with(&mut ws).await, Some(CloseCode::Policy));

    // Allowlist rules apply to the upgrade request: path not allowed.
    match open(&env, "api.test", "/not-v1/ws").await {
        Err(WsError::Http(res)) => {
            assert_eq!(res.status(), 403);
            assert_eq!(res.headers()["x-bottle-rule"], "path-not-allowed");
        }
        other => panic!("expected a 403, got {:?}", other.map(|_| ())),
    }
    // A denied host is refused at the CONNECT.
    let denied = format!("denied.test:{}", env.tls_port);
    let head = env.tunnel(&denied, "denied.test").await.unwrap_err();
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");

    // Give the relay a moment to write its audit line.
    let deny = |l: &&serde_json::Value| l["method"] == "WEBSOCKET" && l["verdict"] == "deny";
    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = env.audit_lines();
        if lines.iter().filter(deny).count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(lines
        .iter()
        .any(|l| l["method"] == "GET" && l["path"] == "/v1/ws" && l["status"] == 101));
    // The echoed key was redacted, and audited by rule.
    assert!(
        lines.iter().any(|l| l["method"] == "WEBSOCKET"
            && l["verdict"] == "redact"
            && l["rule"] == "secret:api:raw"),
        "{lines:#?}"
    );
    let ws_lines: Vec<_> = lines.iter().filter(deny).collect();
    assert_eq!(ws_lines.len(), 2, "{lines:#?}");
    assert_eq!(ws_lines[0]["rule"], "secret:leak:raw");
    assert_eq!(ws_lines[0]["status"], 1008);
    assert_eq!(ws_lines[1]["rule"], "aws-access-key-id");
    let text = std::fs::read_to_string(&env.audit).unwrap();
    assert!(!text.contains(LEAK) && !text.contains(API_KEY));
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_to_refused_upstream_address_is_403() {
    let env = setup(false).await;
    match open(&env, "open.test", "/ws").await {
        Err(WsError::Http(res)) => {
            assert_eq!(res.status(), 403);
            assert_eq!(res.headers()["x-bottle-rule"], "upstream-address-refused");
        }
        other => panic!("expected a 403, got {:?}", other.map(|_| ())),
    }
    env.proxy.stop().await;
}
