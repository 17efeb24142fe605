//! Tests of request body reading and scanning (`body.rs`).
use super::*;
use crate::manifest::Secret;
use flate2::write::GzEncoder;
use flate2::Compression;
use http_body_util::{Full, StreamBody};

fn dlp() -> Arc<Dlp> {
    Dlp::new(&[Secret {
        name: "k".into(),
        value: "horse-battery-stpl".into(),
    }])
    .unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn run(chunks: Vec<Vec<u8>>, enc: Option<&str>, limit: u64) -> Result<Bytes, BodyRefusal> {
    let form = enc == Some("form");
    let enc = enc.filter(|e| *e != "form");
    let frames = chunks
        .into_iter()
        .map(|c| Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(c))));
    let body = StreamBody::new(futures_util_stream(frames));
    read_scanned(&mut { body }, enc, form, dlp(), limit).await
}

fn futures_util_stream<I: Iterator + Unpin>(
    it: I,
) -> impl hudsucker::futures::Stream<Item = I::Item> + Unpin {
    hudsucker::futures::stream::iter(it)
}

#[tokio::test]
async fn bodies_table() {
    // Short enough (under 20 bytes) that piece matching (dlp::fragments)
    // stays out of the way: these cases test whole-secret seams.
    let secret = b"horse-battery-stpl".to_vec();
    let mut with_secret = vec![b'a'; 10_000];
    with_secret.extend_from_slice(&secret);
    let clean = vec![b'b'; 100_000];
    let (head, tail) = with_secret.split_at(10_010);
    // (name, chunks, encoding, limit, expected rule or None)
    type Case<'a> = (&'a str, Vec<Vec<u8>>, Option<&'a str>, u64, Option<&'a str>);
    let table: Vec<Case<'_>> = vec![
        ("clean", vec![clean.clone()], None, 1 << 20, None),
        (
            "form, escape split",
            vec![b"a=horse%2Dbattery%2".to_vec(), b"Dstpl".to_vec()],
            Some("form"),
            1 << 20,
            Some("secret:k:raw"),
        ),
        (
            // Escape probe regression: every character escaped, in a
            // body that does not say it is a form.
            "plain body, all escaped",
            vec![b"data=%68%6F%72%73%65%2D%62%61%74%74%65%72%79%2D%73%74%70%6C".to_vec()],
            None,
            1 << 20,
            Some("secret:k:raw"),
        ),
        (
            // The first `%` arrives after part of the secret.
            "plain body, escapes start mid-secret",
            vec![b"x horse-bat".to_vec(), b"tery-%73tpl".to_vec()],
            None,
            1 << 20,
            Some("secret:k:raw"),
        ),
        (
            "secret",
            vec![with_secret.clone()],
            None,
            1 << 20,
            Some("secret:k:raw"),
        ),
        (
            "split",
            vec![head.to_vec(), tail.to_vec()],
            None,
            1 << 20,
            Some("secret:k:raw"),
        ),
        (
            "too large",
            vec![clean.clone()],
            None,
            1000,
            Some("body-too-large"),
        ),
        (
            "gzip clean",
            vec![gzip(&clean)],
            Some("gzip"),
            1 << 20,
            None,
        ),
        (
            "gzip secret",
            vec![gzip(&with_secret)],
            Some("gzip"),
            1 << 20,
            Some("secret:k:raw"),
        ),
        (
            "deflate secret",
            vec![zlib(&with_secret)],
            Some("deflate"),
            1 << 20,
            Some("secret:k:raw"),
        ),
        (
            "gzip bomb",
            vec![gzip(&vec![0u8; 5 << 20])],
            Some("gzip"),
            1 << 20,
            Some("decompression-limit"),
        ),
        (
            "brotli",
            vec![clean.clone()],
            Some("br"),
            1 << 20,
            Some("unsupported-encoding"),
        ),
        (
            "corrupt gzip",
            vec![b"not gzip at all".to_vec()],
            Some("gzip"),
            1 << 20,
            Some("bad-compressed-body"),
        ),
    ];
    for (name, chunks, enc, limit, want) in table {
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        let got = run(chunks, enc, limit).await;
        match (want, got) {
            (None, Ok(b)) => assert_eq!(b.len(), total, "{name}"),
            (Some(rule), Err(e)) => assert_eq!(e.status_rule().1, rule, "{name}"),
            (w, g) => panic!("{name}: wanted {w:?}, got {g:?}"),
        }
    }
    let full = read_scanned(
        &mut Full::new(Bytes::from_static(b"ok")),
        None,
        false,
        dlp(),
        10,
    )
    .await;
    assert_eq!(full.unwrap(), Bytes::from_static(b"ok"));
}

/// A body that sends one chunk and then nothing.
fn stalled(
    first: &'static [u8],
) -> http_body_util::StreamBody<
    impl futures_util::Stream<Item = Result<http_body::Frame<Bytes>, std::convert::Infallible>> + Unpin,
> {
    use futures_util::StreamExt;
    let once = futures_util::stream::once(async move {
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(first)))
    });
    http_body_util::StreamBody::new(Box::pin(once.chain(futures_util::stream::pending())))
}

/// A body that stops sending is refused after BODY_IDLE (408), and a body
/// that finds no room in the budget waits that long, then 503: nothing
/// holds the proxy's memory for ever. (Time is paused: the waits pass at
/// once.)
#[tokio::test(start_paused = true)]
async fn a_stalled_body_times_out_and_a_full_budget_is_busy() {
    let t0 = tokio::time::Instant::now();
    let mut body = stalled(b"hello");
    let mut scan = Scan::for_body(&body, None, false, dlp(), 1 << 20).unwrap();
    let e = read_within(
        &mut body,
        &mut scan,
        usize::MAX,
        &tokio::sync::Semaphore::new(1024),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, BodyRefusal::Idle), "{e}");
    assert_eq!(e.status_rule(), (408, "request-body-idle".to_string()));
    assert!(t0.elapsed() >= BODY_IDLE);

    let full = tokio::sync::Semaphore::new(1024);
    let _taken = full.acquire_many(1024).await.unwrap();
    let mut body = stalled(b"hello");
    let mut scan = Scan::for_body(&body, None, false, dlp(), 1 << 20).unwrap();
    let e = read_within(&mut body, &mut scan, usize::MAX, &full)
        .await
        .unwrap_err();
    assert_eq!(e.status_rule(), (503, "proxy-busy".to_string()));
}
