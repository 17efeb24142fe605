//! The echo upstream's WebSocket side.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::API_KEY;

/// A WebSocket upgrade: answer 101 and echo every text and binary
/// message; the first message echoed is prefixed with the `x-api-key` the
/// upstream saw (`key=VALUE;`).
pub fn websocket_echo(req: &mut Request<hyper::body::Incoming>) -> Option<Response<Full<Bytes>>> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, protocol::Role, Message};
    let is_ws = req
        .headers()
        .get("upgrade")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !is_ws {
        return None;
    }
    let key = req.headers().get("sec-websocket-key")?.as_bytes().to_vec();
    let api_key = req
        .headers()
        .get("x-api-key")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    let extensions = req.headers().contains_key("sec-websocket-extensions");
    let on = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(up),
            Role::Server,
            None,
        )
        .await;
        let mut first = true;
        while let Some(Ok(m)) = ws.next().await {
            let reply = match m {
                Message::Text(t) if first => {
                    let injected = if api_key == API_KEY { "yes" } else { "no" };
                    Message::text(format!(
                        "key={api_key};injected={injected};ext={extensions};{}",
                        t.as_str()
                    ))
                }
                Message::Text(_) | Message::Binary(_) => m,
                Message::Close(_) => break,
                _ => continue,
            };
            first = false;
            if ws.send(reply).await.is_err() {
                break;
            }
        }
    });
    Some(
        Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", derive_accept_key(&key))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
}
