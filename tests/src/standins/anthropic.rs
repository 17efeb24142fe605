//! Enough of the Anthropic Messages API for a real CLI in headless mode:
//! `POST /v1/messages` answers a fixed text, as one JSON message or, when
//! the request asks to stream, as server-sent events in the API's order
//! (`message_start`, a text block, `message_delta`, `message_stop`);
//! `POST /v1/messages/count_tokens` counts nothing. Anything else is a 404
//! in the API's error shape. The request headers are recorded by the
//! stand-ins ([`super::StandIns::seen`]), so a test can tell which key
//! arrived.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde_json::{json, Value};

use super::{reply, Req};

/// Answer one request with `answer` as the model's text.
pub fn serve(answer: &str, req: &Req) -> Response<Full<Bytes>> {
    let error = |status: u16, kind: &str, msg: &str| {
        reply(
            status,
            "application/json",
            json!({"type": "error", "error": {"type": kind, "message": msg}}).to_string(),
        )
    };
    if req.method != "POST" {
        return error(405, "invalid_request_error", "method not allowed");
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(_) => return error(400, "invalid_request_error", "the body is not JSON"),
    };
    match req.path.as_str() {
        "/v1/messages/count_tokens" => reply(
            200,
            "application/json",
            json!({"input_tokens": 10}).to_string(),
        ),
        "/v1/messages" => {
            let model = body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("stand-in");
            if body.get("stream").and_then(Value::as_bool) == Some(true) {
                reply(200, "text/event-stream", events(model, answer))
            } else {
                reply(200, "application/json", message(model, answer).to_string())
            }
        }
        _ => error(
            404,
            "not_found_error",
            "the stand-in serves /v1/messages only",
        ),
    }
}

/// A whole (non-streamed) message.
fn message(model: &str, answer: &str) -> Value {
    json!({
        "id": "msg_standin",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": answer}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    })
}

/// The same message as server-sent events.
fn events(model: &str, answer: &str) -> String {
    let mut start = message(model, "");
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": start}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "text", "text": ""}}),
        ),
        ("ping", json!({"type": "ping"})),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": answer}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta",
                   "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                   "usage": {"output_tokens": 5}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, body: &str) -> Req {
        Req {
            method: "POST".into(),
            path: path.into(),
            query: String::new(),
            authority: "anthropic.bottle.test".into(),
            headers: vec![],
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn streams_or_not_as_asked_and_never_panics() {
        let r = serve("hi", &req("/v1/messages", r#"{"model":"m","stream":true}"#));
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        let r = serve("hi", &req("/v1/messages", r#"{"model":"m"}"#));
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(serve("hi", &req("/v1/messages", "not json")).status(), 400);
        assert_eq!(serve("hi", &req("/v1/other", "{}")).status(), 404);
        let s = events("m", "hello");
        assert!(s.starts_with("event: message_start\ndata: {"));
        assert!(s.contains(r#""text":"hello""#));
        assert!(s.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    }
}
