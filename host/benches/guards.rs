//! The per-request guards of the egress proxy one at a time, on the
//! requests `bench/proxy.sh` sends (`GET /` with a host header, nginx's
//! five-header reply with a 3-byte body) and its two host secrets: the
//! DLP scans of the request, the redaction of the response head and body,
//! and the audit line's JSON and time stamp. Where ours' keep-alive CPU
//! per request goes against hudsucker's no-op is in docs/performance.md.
//!
//! `cargo bench -p bottle-host --bench guards`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use bottle_host::manifest::Secret;
use bottle_host::proxy::audit::{self, Record};
use bottle_host::proxy::dlp::Dlp;
use bottle_host::proxy::redact::{Redactor, StreamRedactor};
use bottle_host::proxy::redact_http::redact_headers;
use criterion::{criterion_group, criterion_main, Criterion};
use hudsucker::hyper::header::{HeaderMap, HeaderValue};

fn bench(c: &mut Criterion) {
    let secrets: Vec<Secret> = [
        ("bench", "bench-secret-value-0123456789"),
        ("api", "sk-bench-api-key-abcdefghijklmnop"),
    ]
    .iter()
    .map(|(n, v)| Secret {
        name: n.to_string(),
        value: v.to_string(),
    })
    .collect();
    let dlp = Dlp::new(&secrets).unwrap();
    let redactor = Redactor::new(&secrets).unwrap();
    let mut head = HeaderMap::new();
    for (n, v) in [
        ("server", "nginx/1.22.1"),
        ("date", "Thu, 03 Dec 2026 08:22:34 GMT"),
        ("content-type", "text/plain"),
        ("content-length", "3"),
        ("connection", "keep-alive"),
    ] {
        head.insert(n, HeaderValue::from_static(v));
    }
    let rec = Record {
        time: audit::now(),
        method: "GET".into(),
        host: "localhost".into(),
        path: "/".into(),
        verdict: "allow",
        status: 200,
        ..Record::default()
    };

    let mut g = c.benchmark_group("guards");
    g.bench_function("dlp request target", |b| {
        b.iter(|| black_box(dlp.scan_target(black_box("/"))))
    });
    g.bench_function("dlp host header", |b| {
        b.iter(|| black_box(dlp.scan(black_box(b"localhost:34567"), "")))
    });
    g.bench_function("dlp header names", |b| {
        b.iter(|| black_box(dlp.scan_head_names("GET", ["host"].into_iter())))
    });
    g.bench_function("response head clone (reference)", |b| {
        b.iter(|| black_box(head.clone()))
    });
    g.bench_function("response head clone and redaction", |b| {
        b.iter(|| {
            let mut h = head.clone();
            black_box(redact_headers(&mut h, &redactor, "header"))
        })
    });
    g.bench_function("response body of 3 bytes", |b| {
        b.iter(|| {
            let mut s = StreamRedactor::new(redactor.clone());
            black_box(s.push_last(black_box(b"ok\n")))
        })
    });
    g.bench_function("audit time stamp", |b| b.iter(|| black_box(audit::now())));
    g.bench_function("audit line json", |b| {
        b.iter(|| {
            let mut line = Vec::with_capacity(256);
            serde_json::to_writer(&mut line, black_box(&rec)).unwrap();
            black_box(line)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
