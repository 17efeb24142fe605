use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use super::*;
use crate::manifest::Secret;
use crate::proxy::connector::{self, CheckedResolver};
use crate::proxy::handler::Shared;

const SECRET: &str = "streamed-secret-Zq8vN2pL5xR7tW1y";

fn shared(dir: &std::path::Path) -> Arc<Shared> {
    let secrets = vec![Secret {
        name: "k".into(),
        value: SECRET.into(),
    }];
    Arc::new(Shared {
        routes: Vec::new(),
        dlp: Dlp::new(&secrets).unwrap(),
        redactor: crate::proxy::redact::Redactor::new(&secrets).unwrap(),
        injections: Default::default(),
        audit: crate::proxy::audit::AuditLog::open(&dir.join("audit.jsonl")).unwrap(),
        max_body: 64 << 20,
        ws_connector: connector::build(CheckedResolver::new(false, None), None, false).unwrap(),
    })
}

/// A client body arriving in 16 KiB chunks.
fn client_body(data: Vec<u8>) -> Body {
    let chunks: Vec<Result<Frame<Bytes>, hudsucker::Error>> = data
        .chunks(16 * 1024)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    Body::from(http_body_util::StreamBody::new(futures_util::stream::iter(
        chunks,
    )))
}

async fn run(shared: &Arc<Shared>, data: Vec<u8>, limit: u64) -> Result<Prepared, BodyRefusal> {
    let audit = AuditOnRefusal {
        shared: shared.clone(),
        record: Record {
            method: "POST".into(),
            host: "up.test".into(),
            verdict: "allow",
            ..Record::default()
        },
        start: Instant::now(),
    };
    prepare(
        client_body(data),
        None,
        false,
        shared.dlp.clone(),
        limit,
        || audit,
    )
    .await
    .map_err(|(r, _)| r)
}

/// Everything the upstream would receive, and whether the body ended in
/// an error.
async fn upstream_reads(body: Body) -> (Vec<u8>, bool) {
    let mut body = body;
    let mut got = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => got.extend_from_slice(f.data_ref().map_or(&[][..], |d| &d[..])),
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

fn filler(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| b"abcdefghij klmnopqrstuvwxyz\n"[i % 28])
        .collect()
}

#[tokio::test]
async fn small_bodies_are_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared(dir.path());
    match run(&s, filler(1000), 1 << 20).await.unwrap() {
        Prepared::Whole(b) => assert_eq!(b.len(), 1000),
        Prepared::Streaming(..) => panic!("a small body streamed"),
    }
    let mut with_secret = filler(1000);
    with_secret.extend_from_slice(SECRET.as_bytes());
    let r = run(&s, with_secret, 1 << 20).await.err().unwrap();
    assert_eq!(r.status_rule(), (403, "secret:k:raw".into()));
}

#[tokio::test]
async fn large_bodies_stream_intact() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared(dir.path());
    let data = filler(3 << 20);
    let Prepared::Streaming(body, state) = run(&s, data.clone(), 64 << 20).await.unwrap() else {
        panic!("a 3 MiB body was held whole");
    };
    let (got, failed) = upstream_reads(body).await;
    assert!(!failed);
    assert_eq!(got, data);
    assert_eq!(state.sent(), data.len() as u64);
    assert_eq!(state.refusal(), None);
}

#[tokio::test]
async fn a_secret_deep_in_a_large_body_aborts_before_any_of_it_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared(dir.path());
    // At several offsets, including right across 16 KiB chunk seams.
    for at in [(1 << 20) + 7, (2 << 20) - 5, (2 << 20) - SECRET.len() / 2] {
        let mut data = filler(3 << 20);
        data[at..at + SECRET.len()].copy_from_slice(SECRET.as_bytes());
        let Prepared::Streaming(body, state) = run(&s, data, 64 << 20).await.unwrap() else {
            panic!("held whole");
        };
        let (got, failed) = upstream_reads(body).await;
        assert!(failed, "the upstream body must end in an error");
        assert!(
            got.len() <= at,
            "{} bytes sent, the secret starts at {at}",
            got.len()
        );
        let r = state.refusal().expect("refusal recorded");
        assert!(r.status_rule().1.starts_with("secret"), "{r:?}");
        assert_eq!(state.sent(), got.len() as u64);
    }
    // Each refusal was audited by the task.
    let mut log = String::new();
    for _ in 0..50 {
        log = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
        if log.lines().count() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(log.lines().count(), 3, "{log}");
    for line in log.lines() {
        assert!(line.contains("\"verdict\":\"deny\""), "{line}");
        assert!(line.contains("\"status\":403"), "{line}");
        assert!(!line.contains(SECRET), "{line}");
    }
}

#[tokio::test]
async fn the_size_limit_holds_while_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared(dir.path());
    let limit = 1 << 20;
    let Prepared::Streaming(body, state) = run(&s, filler(2 << 20), limit).await.unwrap() else {
        panic!("held whole");
    };
    let (got, failed) = upstream_reads(body).await;
    assert!(failed);
    assert!(got.len() as u64 <= limit);
    assert_eq!(state.refusal(), Some(BodyRefusal::TooLarge(limit)));
}
