use std::io::Write as _;

use http_body_util::BodyExt as _;
use hudsucker::hyper::header::{HeaderName, CONTENT_LENGTH};

use super::*;
use crate::manifest::Secret;

const SECRET: &str = "rh-Yt6pW3nQ8sZ2vK9mX5bC1";

fn redactor() -> Arc<Redactor> {
    Redactor::new(&[Secret {
        name: "api".into(),
        value: SECRET.into(),
    }])
    .unwrap()
}

type Seen = Arc<std::sync::Mutex<Vec<String>>>;

fn recorder() -> (OnHits, Seen) {
    let seen: Seen = Arc::default();
    let s = Arc::clone(&seen);
    let f: OnHits = Box::new(move |rules, place| {
        for r in rules {
            s.lock().unwrap().push(format!("{r} in {place}"));
        }
    });
    (f, seen)
}

fn chunked(parts: Vec<Vec<u8>>, trailers: Option<HeaderMap>) -> Body {
    let mut frames: Vec<Result<Frame<Bytes>, hudsucker::Error>> = parts
        .into_iter()
        .map(|p| Ok(Frame::data(Bytes::from(p))))
        .collect();
    if let Some(t) = trailers {
        frames.push(Ok(Frame::trailers(t)));
    }
    Body::from(http_body_util::StreamBody::new(futures_util::stream::iter(
        frames,
    )))
}

async fn collect(body: Body) -> (Vec<u8>, Option<HeaderMap>) {
    let c = body.collect().await.unwrap();
    let t = c.trailers().cloned();
    (c.to_bytes().to_vec(), t)
}

#[tokio::test]
async fn a_reflected_header_and_body_never_carry_the_secret() {
    let body = format!("{{\"headers\": {{\"Authorization\": \"Bearer {SECRET}\"}}}}");
    let (a, b) = body.as_bytes().split_at(30); // the seam cuts the secret
    let mut trailers = HeaderMap::new();
    trailers.insert("x-echo", HeaderValue::from_str(SECRET).unwrap());
    let res = Response::builder()
        .header("x-echo-auth", format!("Bearer {SECRET}"))
        .header("x-other", "fine")
        .header(CONTENT_LENGTH, body.len())
        .body(chunked(vec![a.to_vec(), b.to_vec()], Some(trailers)))
        .unwrap();
    let (f, seen) = recorder();
    let (res, head_hits) = response(res, &redactor(), f, false).unwrap();
    assert_eq!(head_hits, vec!["secret:api:raw in header x-echo-auth"]);
    let h = res.headers();
    assert_eq!(
        h["x-echo-auth"],
        format!("Bearer {}", "*".repeat(SECRET.len())).as_str()
    );
    assert_eq!(h["x-other"], "fine");
    // Same length: the declared length still holds.
    assert_eq!(h[CONTENT_LENGTH], body.len().to_string().as_str());
    let (out, t) = collect(res.into_body()).await;
    assert_eq!(out.len(), body.len());
    let text = String::from_utf8(out).unwrap();
    assert!(
        !text.contains(SECRET) && text.contains("Bearer ****"),
        "{text}"
    );
    let t = t.expect("trailers kept");
    assert_eq!(t["x-echo"], "*".repeat(SECRET.len()).as_str());
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains(&"secret:api:raw in body".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"secret:api:raw in trailer x-echo".to_string()),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_compressed_body_is_decoded_then_redacted() {
    let plain = format!("token={SECRET}&x=1").repeat(50);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(plain.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let res = Response::builder()
        .header("content-encoding", "gzip")
        .header(CONTENT_LENGTH, gz.len())
        .body(chunked(gz.chunks(7).map(<[u8]>::to_vec).collect(), None))
        .unwrap();
    let (f, seen) = recorder();
    let (res, _) = response(res, &redactor(), f, false).unwrap();
    assert!(res.headers().get("content-encoding").is_none());
    assert!(res.headers().get(CONTENT_LENGTH).is_none());
    let (out, _) = collect(res.into_body()).await;
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.len(), plain.len());
    assert!(!text.contains(SECRET));
    assert_eq!(text.matches("token=*").count(), 50);
    assert_eq!(seen.lock().unwrap().len(), 1, "one line per rule and place");
}

#[tokio::test]
async fn an_undecodable_encoding_is_refused() {
    let res = Response::builder()
        .header("content-encoding", "x-unknown")
        .body(chunked(vec![b"abc".to_vec()], None))
        .unwrap();
    let (f, _) = recorder();
    let e = response(res, &redactor(), f, false).unwrap_err();
    assert!(e.to_string().contains("x-unknown"), "{e}");
}

#[tokio::test]
async fn header_names_are_kept_and_every_value_is_checked() {
    let mut h = HeaderMap::new();
    h.append("set-cookie", HeaderValue::from_static("a=1"));
    h.append(
        "set-cookie",
        HeaderValue::from_str(&format!("k={SECRET}")).unwrap(),
    );
    let hits = redact_headers(&mut h, &redactor(), "header");
    assert_eq!(hits.len(), 1);
    let values: Vec<_> = h
        .get_all(HeaderName::from_static("set-cookie"))
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(values[0], "a=1");
    assert!(!values[1].contains(SECRET));
}

#[tokio::test]
async fn a_head_response_keeps_its_encoding_headers_and_is_not_decoded() {
    let res = Response::builder()
        .header("content-encoding", "gzip")
        .header(CONTENT_LENGTH, "1234")
        .header("x-echo", SECRET)
        .body(Body::empty())
        .unwrap();
    let (f, _) = recorder();
    let (res, hits) = response(res, &redactor(), f, true).unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    assert_eq!(res.headers()[CONTENT_LENGTH], "1234");
    assert_eq!(hits.len(), 1);
    let (out, _) = collect(res.into_body()).await;
    assert!(out.is_empty());
}

/// A body that knows its one chunk is its last (as hyper's does once its
/// Content-Length is reached) but whose stream would close only later
/// (there: when the upstream connection's task gets to it): a further
/// poll stays pending.
struct KnownLength(Option<Bytes>);

impl http_body::Body for KnownLength {
    type Data = Bytes;
    type Error = hudsucker::Error;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Item>> {
        match self.0.take() {
            Some(c) => Poll::Ready(Some(Ok(Frame::data(c)))),
            None => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }
}

fn known_length(chunk: Option<&str>) -> Response<Body> {
    let body = KnownLength(chunk.map(|c| Bytes::from(c.to_string())));
    Response::new(Body::from(http_body_util::BodyExt::boxed(body)))
}

/// A small body goes out, redacted, as soon as its last chunk is in: the
/// held-back bytes do not wait for the stream to close (which made every
/// small response wait for another task). An empty body is over at once.
#[tokio::test]
async fn a_body_that_knows_its_end_is_not_held_back() {
    let (f, seen) = recorder();
    let (res, _) = response(known_length(Some(SECRET)), &redactor(), f, false).unwrap();
    let mut body = res.into_body();
    assert!(!http_body::Body::is_end_stream(&body));
    let frame = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame())
        .await
        .expect("the last chunk was held back")
        .unwrap()
        .unwrap();
    let data = frame.into_data().unwrap();
    assert_eq!(data.len(), SECRET.len());
    assert!(!data.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    assert!(http_body::Body::is_end_stream(&body));
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["secret:api:raw in body".to_string()]
    );

    let (f, seen) = recorder();
    let (res, _) = response(known_length(None), &redactor(), f, false).unwrap();
    assert!(http_body::Body::is_end_stream(res.body()));
    assert!(seen.lock().unwrap().is_empty());
}
