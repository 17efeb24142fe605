//! The upstream as a hostile or careless server reflecting the injected
//! `x-api-key` back (`/v1/probe/KIND`): in a header name, under a gzip
//! transfer coding, in byte ranges, and a zstd body asking for a huge
//! window.

use std::io::Write;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};

/// The upstream's body type.
pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

fn full(b: impl Into<Bytes>) -> BoxBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

fn gzip(d: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(d).unwrap();
    e.finish().unwrap()
}

/// The start of a zstd frame (RFC 8878) with a window of 2^`log` bytes
/// and `blocks` RLE blocks of 128 KiB of `A`; no end (the caller stalls).
pub fn zstd_window(log: u8, blocks: usize) -> Vec<u8> {
    // Magic; frame header: no checksum, no content size; the window
    // descriptor's exponent is log - 10.
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, (log - 10) << 3];
    for _ in 0..blocks {
        // Block header: size 128 KiB, type RLE (1), not last.
        let h: u32 = (131_072 << 3) | (1 << 1);
        frame.extend_from_slice(&h.to_le_bytes()[..3]);
        frame.push(b'A');
    }
    frame
}

/// The answer for `/v1/probe/KIND`.
pub async fn respond(req: Request<hyper::body::Incoming>) -> Response<BoxBody> {
    let key = req
        .headers()
        .get("x-api-key")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let kind = req
        .uri()
        .path()
        .trim_start_matches("/v1/probe/")
        .to_string();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    // A debug page listing the request's headers, a few times over (long
    // enough for gzip to encode the key as back-references).
    let reflection = format!("x-api-key: {}\n", String::from_utf8_lossy(&key)).repeat(20);
    match kind.as_str() {
        // The key (hex) as a header *name*.
        "header-name" => Response::builder()
            .header(format!("x-{hex}").as_str(), "1")
            .header("x-other", "kept")
            .body(full(Bytes::new()))
            .unwrap(),
        // A gzip transfer coding (not a content coding).
        "te-gzip" => Response::builder()
            .header("transfer-encoding", "gzip, chunked")
            .body(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
                [Ok::<_, hyper::Error>(Frame::data(Bytes::from(gzip(
                    reflection.as_bytes(),
                ))))],
            ))))
            .unwrap(),
        // The key honouring `Range` (as a static server or CDN would).
        "range" => {
            let range = req
                .headers()
                .get("range")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes="))
                .and_then(|v| v.split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
            match range {
                Some((a, b)) if a <= b && b < key.len() => Response::builder()
                    .status(206)
                    .header("content-range", format!("bytes {a}-{b}/{}", key.len()))
                    .body(full(key[a..=b].to_vec()))
                    .unwrap(),
                _ => Response::builder().body(full(key)).unwrap(),
            }
        }
        // ~4 KiB of zstd filling a 128 MiB window (or 128 KiB of an 8 MiB
        // one), then a stall.
        "zstd-window" | "zstd-8mib" => {
            use futures_util::StreamExt;
            let frame = match kind.as_str() {
                "zstd-window" => zstd_window(27, 1023),
                _ => zstd_window(23, 1),
            };
            let first = futures_util::stream::iter([Ok::<_, hyper::Error>(Frame::data(
                Bytes::from(frame),
            ))]);
            Response::builder()
                .header("content-encoding", "zstd")
                .body(BodyExt::boxed(StreamBody::new(
                    first.chain(futures_util::stream::pending()),
                )))
                .unwrap()
        }
        // Brotli stacked three times (each layer may take a 16 MiB window).
        "br-stack" => Response::builder()
            .header("content-encoding", "br")
            .header("content-encoding", "br, br")
            .body(full(Bytes::new()))
            .unwrap(),
        _ => Response::builder()
            .status(404)
            .body(full(Bytes::new()))
            .unwrap(),
    }
}
