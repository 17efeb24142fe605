//! WebSocket upgrades to allowed hosts.
//!
//! hudsucker's own WebSocket path dials the upstream itself (bypassing the
//! address check), so the handler answers upgrade requests here instead:
//! the upgrade request, already checked like any request, is sent over our
//! own connector (address check, `--upstream-ca`, HTTP/1.1 only), and when
//! the upstream answers 101 both connections are taken over and relayed
//! message by message. Every message from the client (text, binary and a
//! close reason) goes through one [`StreamScanner`], so a secret split
//! across messages is still found; a hit closes both sides (1008, policy
//! violation, to the client) and is audited. Messages from the upstream
//! have every host secret overwritten ([`super::redact`]; each message on
//! its own, so a secret split across messages is caught by the piece
//! matching), audited once per rule. Pings and pongs are answered on each side and not
//! forwarded. `Sec-WebSocket-Extensions` is not forwarded, so no
//! compression is negotiated and every frame can be read.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Empty;
use hudsucker::hyper::header::{self, HeaderValue};
use hudsucker::hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hudsucker::Body;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::audit::{self, Record};
use super::connector::Connector;
use super::dlp::{Hit, StreamScanner};
use super::handler::Shared;

/// Headers of the client's upgrade request that are not forwarded.
const DROPPED: &[&str] = &[
    "host",
    "sec-websocket-extensions",
    "proxy-connection",
    "proxy-authorization",
    "keep-alive",
    "te",
    "trailer",
    // The upgrade request goes up without a body.
    "content-length",
    "transfer-encoding",
];

/// Is this an HTTP/1.1 `GET` with `Upgrade: websocket`? (The upstream is
/// sent a GET whatever the guest's method: any other method asking for
/// the upgrade would pass a route's method rule as itself and arrive as
/// a GET, so it is not an upgrade, and is refused as another one.)
pub fn is_upgrade(req: &Request<Body>) -> bool {
    req.version() <= Version::HTTP_11
        && req.method() == hudsucker::hyper::Method::GET
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// Why the upstream side of an upgrade failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// Connecting (resolution, address check, TCP, TLS).
    #[error("connecting upstream: {0}")]
    Connect(Box<dyn std::error::Error + Send + Sync>),
    /// The HTTP/1.1 upgrade exchange.
    #[error("upstream upgrade: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be rebuilt.
    #[error("upgrade request: {0}")]
    Build(#[from] hyper::http::Error),
}

impl WsError {
    /// Was the upstream address refused by the address check?
    pub fn refused(&self) -> bool {
        let WsError::Connect(e) = self else {
            return false;
        };
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
        while let Some(e) = source {
            if e.downcast_ref::<super::connector::ConnectError>()
                .is_some_and(|c| matches!(c, super::connector::ConnectError::Refused { .. }))
            {
                return true;
            }
            source = e.source();
        }
        false
    }
}

/// Send the (checked) upgrade request `req` to `uri` (`scheme://host:port/pq`)
/// and answer with the upstream's reply; on 101, relay both connections.
/// `rec` is the request's audit record, used for a DLP refusal later.
pub async fn open(
    shared: Arc<Shared>,
    mut req: Request<Body>,
    uri: Uri,
    rec: Record,
) -> Result<Response<Body>, WsError> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (parts, _) = req.into_parts();
    let host = uri.host().unwrap_or_default();
    let host_value = match (uri.scheme_str(), uri.port_u16()) {
        (Some("https"), Some(443)) | (Some("http"), Some(80)) | (_, None) => host.to_string(),
        (_, Some(p)) => format!("{host}:{p}"),
    };
    let mut up = Request::builder()
        .method(Method::GET)
        .version(Version::HTTP_11)
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(header::HOST, host_value);
    for (name, value) in &parts.headers {
        if !DROPPED.contains(&name.as_str()) {
            up = up.header(name, value);
        }
    }
    let up = up.body(Empty::<Bytes>::new())?;

    let mut connector: Connector = shared.ws_connector.clone();
    futures_util::future::poll_fn(|cx| tower_service::Service::poll_ready(&mut connector, cx))
        .await
        .map_err(WsError::Connect)?;
    let io = tower_service::Service::call(&mut connector, uri)
        .await
        .map_err(WsError::Connect)?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("proxy: websocket upstream connection: {e}");
        }
    });
    let mut res = send.send_request(up).await?;
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(res.map(Body::from));
    }
    let server_upgrade = hyper::upgrade::on(&mut res);
    let (head, _) = res.into_parts();
    let mut reply = Response::from_parts(head, Body::empty());
    reply.headers_mut().remove(header::CONTENT_LENGTH);
    reply
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    tokio::spawn(relay(shared, client_upgrade, server_upgrade, rec));
    Ok(reply)
}

/// Wait for both upgrades, then relay until either side ends.
async fn relay(shared: Arc<Shared>, client: OnUpgrade, server: OnUpgrade, rec: Record) {
    let (client, server) = match tokio::try_join!(client, server) {
        Ok(both) => both,
        Err(e) => {
            tracing::warn!("proxy: websocket upgrade failed: {e}");
            return;
        }
    };
    let limit = usize::try_from(shared.max_body).unwrap_or(usize::MAX);
    let cfg = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let client = WebSocketStream::from_raw_socket(TokioIo::new(client), Role::Server, Some(cfg));
    let server = WebSocketStream::from_raw_socket(TokioIo::new(server), Role::Client, Some(cfg));
    let (client, server) = tokio::join!(client, server);
    let start = Instant::now();
    let (hit, scanned) = pump(&shared, client, server, &rec).await;
    if let Some(hit) = hit {
        tracing::info!(host = %rec.host, rule = %hit.rule, "proxy: websocket closed: DLP");
        let rec = Record {
            time: audit::now(),
            method: "WEBSOCKET".into(),
            verdict: "deny",
            rule: Some(hit.rule),
            status: u16::from(CloseCode::Policy),
            bytes_up: scanned,
            duration_ms: start.elapsed().as_millis() as u64,
            ..rec
        };
        if let Err(e) = shared.audit.write(&rec) {
            tracing::error!("proxy: {e}");
        }
    }
}

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// Move messages both ways; returns the DLP hit that ended the relay, if
/// any, and the client bytes scanned.
async fn pump(shared: &Shared, client: Ws, server: Ws, rec: &Record) -> (Option<Hit>, u64) {
    let (mut to_client, mut from_client) = client.split();
    let (mut to_server, mut from_server) = server.split();
    let mut scanner = StreamScanner::new(shared.dlp.clone());
    let mut redacted: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            m = from_client.next() => {
                let Some(Ok(msg)) = m else {
                    let _ = to_server.close().await;
                    break;
                };
                let data: &[u8] = match &msg {
                    Message::Text(t) => t.as_bytes(),
                    Message::Binary(b) => b,
                    Message::Close(Some(f)) => f.reason.as_bytes(),
                    _ => &[],
                };
                if let Some(hit) = scanner.push(data) {
                    let reason = format!("DLP rule {}", hit.rule);
                    let reason: String = reason.chars().take(120).collect();
                    let close = |code, reason: String| {
                        Message::Close(Some(CloseFrame { code, reason: reason.into() }))
                    };
                    let _ = to_client.send(close(CloseCode::Policy, reason)).await;
                    let _ = to_server.send(close(CloseCode::Away, String::new())).await;
                    return (Some(hit), scanner.scanned());
                }
                match msg {
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    other => {
                        if to_server.send(other).await.is_err() {
                            let _ = to_client.close().await;
                            break;
                        }
                    }
                }
            }
            m = from_server.next() => {
                let Some(Ok(msg)) = m else {
                    let _ = to_client.close().await;
                    break;
                };
                let msg = redact_message(shared, msg, rec, &mut redacted);
                match msg {
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    other => {
                        if to_client.send(other).await.is_err() {
                            let _ = to_server.close().await;
                            break;
                        }
                    }
                }
            }
        }
    }
    (None, scanner.scanned())
}

/// Overwrite every host secret in a server message; audit each rule the
/// first time it is seen on this connection.
fn redact_message(shared: &Shared, msg: Message, rec: &Record, seen: &mut Vec<String>) -> Message {
    let r = &shared.redactor;
    if r.is_empty() {
        return msg;
    }
    let (msg, hits) = match msg {
        Message::Text(t) => {
            let mut b = t.as_bytes().to_vec();
            let hits = r.redact_all(&mut b);
            // Only whole characters were overwritten, by ASCII.
            let text = String::from_utf8(b)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            (Message::Text(text.into()), hits)
        }
        Message::Binary(d) => {
            let mut b = d.to_vec();
            let hits = r.redact_all(&mut b);
            (Message::Binary(b.into()), hits)
        }
        Message::Close(Some(f)) => {
            let mut b = f.reason.as_bytes().to_vec();
            let hits = r.redact_all(&mut b);
            let reason = String::from_utf8_lossy(&b).into_owned();
            let frame = CloseFrame {
                code: f.code,
                reason: reason.into(),
            };
            (Message::Close(Some(frame)), hits)
        }
        other => (other, Vec::new()),
    };
    for rule in hits {
        if seen.contains(&rule) {
            continue;
        }
        tracing::info!(host = %rec.host, %rule, "proxy: redacted from a websocket message");
        let line = Record {
            time: audit::now(),
            method: "WEBSOCKET".into(),
            verdict: "redact",
            rule: Some(rule.clone()),
            redacted: vec![format!("{rule} in websocket message")],
            ..rec.clone()
        };
        if let Err(e) = shared.audit.write(&line) {
            tracing::error!("proxy: {e}");
        }
        seen.push(rule);
    }
    msg
}
