//! Codings on the way out: a request body is scanned through every
//! `Content-Encoding` it names (two headers are two codings, not one
//! ignored), a transfer coding the proxy would not see through is refused,
//! and `TE` goes upstream only as `trailers`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_util;

use std::io::{Read, Write};

use proxy_util::{file, setup, LEAK};

fn gzip(d: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(d).unwrap();
    e.finish().unwrap()
}

/// What the echo upstream received, gunzipped as often as it takes.
fn unwrapped(mut b: Vec<u8>) -> Vec<u8> {
    loop {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&b[..])
            .read_to_end(&mut out)
            .is_err()
            || out.is_empty()
        {
            return b;
        }
        b = out;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_content_encoding_header_is_a_second_coding() {
    let env = setup(true).await;
    let payload = format!("token={LEAK}");
    let cases: [(&str, &str, Vec<u8>); 3] = [
        ("identity", "gzip", gzip(payload.as_bytes())),
        ("gzip", "gzip", gzip(&gzip(payload.as_bytes()))),
        ("gzip", "identity", gzip(payload.as_bytes())),
    ];
    for (first, second, body) in cases {
        let path = file(&env, &format!("body-{first}-{second}"), &body);
        let at = format!("@{}", path.display());
        let h1 = format!("Content-Encoding: {first}");
        let h2 = format!("Content-Encoding: {second}");
        for version in ["--http1.1", "--http2"] {
            let r = env
                .curl(
                    &env.https("open.test", "/upload"),
                    &[version, "--data-binary", &at, "-H", &h1, "-H", &h2],
                )
                .await;
            let leaked = unwrapped(r.body.clone())
                .windows(LEAK.len())
                .any(|w| w == LEAK.as_bytes());
            assert!(
                r.code == 415 || r.code == 403,
                "{first} + {second} {version}: status {}, upstream saw {:?}, the secret in it: {leaked}",
                r.code,
                r.header("x-seen-codings")
            );
        }
    }
    // One coding said twice as `identity` is none; the body is scanned raw.
    let path = file(&env, "plain", b"hello");
    let at = format!("@{}", path.display());
    let r = env
        .curl(
            &env.https("open.test", "/upload"),
            &[
                "--data-binary",
                &at,
                "-H",
                "Content-Encoding: identity",
                "-H",
                "Content-Encoding: identity",
            ],
        )
        .await;
    assert_eq!((r.code, r.body.as_slice()), (200, &b"hello"[..]), "{r:?}");
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_under_a_transfer_coding_is_refused() {
    let env = setup(true).await;
    let body = gzip(format!("token={LEAK}\n").repeat(4).as_bytes());
    let path = file(&env, "te-gzip", &body);
    let at = format!("@{}", path.display());
    let r = env
        .curl(
            &env.https("open.test", "/upload"),
            &[
                "--http1.1",
                "--data-binary",
                &at,
                "-H",
                "Transfer-Encoding: gzip, chunked",
            ],
        )
        .await;
    assert_eq!(
        r.code,
        415,
        "upstream saw {:?}: {r:?}",
        r.header("x-seen-codings")
    );
    assert_eq!(
        r.header("x-bottle-rule").as_deref(),
        Some("unsupported-encoding")
    );
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn te_goes_upstream_only_as_trailers() {
    let env = setup(true).await;
    for (sent, seen) in [("gzip, trailers", ""), ("trailers", "trailers")] {
        let te = format!("TE: {sent}");
        let url = format!("http://plain.test:{}/x", env.plain_port);
        let r = env.curl(&url, &["-H", &te]).await;
        assert_eq!(r.code, 200, "{r:?}");
        assert_eq!(r.header("x-seen-te").as_deref(), Some(seen), "TE: {sent}");
    }
    env.proxy.stop().await;
}
