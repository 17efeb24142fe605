//! DLP scan throughput on one core: the full built-in rule set plus four
//! host secrets (every encoding), fed through a `StreamScanner` in 64 KiB
//! chunks as a request body would be.
//!
//! `cargo bench -p bottle-host --bench dlp`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use bottle_host::manifest::Secret;
use bottle_host::proxy::dlp::{Dlp, StreamScanner};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// `len` bytes of pseudo-random text over `alphabet` (fixed seed).
fn text(len: usize, alphabet: &[u8]) -> Vec<u8> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            alphabet[(seed % alphabet.len() as u64) as usize]
        })
        .collect()
}

fn secrets() -> Vec<Secret> {
    [
        ("anthropic", "sk-ant-api03-benchmarkbenchmarkbenchmark0001"),
        ("github", "ghp_benchmarkBENCHMARK0123456789abcdefAB"),
        ("db", "correct horse battery staple 42"),
        ("demo", "hunter2-very-secret-value"),
    ]
    .iter()
    .map(|(n, v)| Secret {
        name: n.to_string(),
        value: v.to_string(),
    })
    .collect()
}

fn bench(c: &mut Criterion) {
    let dlp = Dlp::new(&secrets()).unwrap();
    let size = 16 << 20;
    let inputs = [
        (
            "json-like text",
            text(
                size,
                b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 {}\":,._-/\n",
            ),
        ),
        (
            "base64 blob",
            text(
                size,
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            ),
        ),
        ("english prose", {
            let words =
                b"the quick brown fox jumps over a lazy dog and then some more words follow ";
            words.iter().copied().cycle().take(size).collect()
        }),
    ];
    let mut g = c.benchmark_group("dlp");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    for (name, data) in &inputs {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut s = StreamScanner::new(dlp.clone());
                for chunk in data.chunks(64 << 10) {
                    assert!(s.push(black_box(chunk)).is_none());
                }
            })
        });
    }
    g.finish();

    // Peer, same run: the previous design's first stage alone (one
    // standard-semantics automaton over every secret form and rule prefix,
    // overlapping search), on the first input.
    let mut patterns: Vec<Vec<u8>> = bottle_host::proxy::dlp::secrets::forms(&secrets())
        .into_iter()
        .map(|f| f.pattern)
        .collect();
    patterns.extend(
        bottle_host::proxy::dlp::rules::PREFIXES
            .iter()
            .map(|p| p.as_bytes().to_vec()),
    );
    let old = aho_corasick::AhoCorasick::new(&patterns).unwrap();
    let mut g = c.benchmark_group("peer");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    g.bench_function(
        "one standard automaton, overlapping (json-like text)",
        |b| {
            b.iter(|| {
                let mut n = 0usize;
                for chunk in inputs[0].1.chunks(64 << 10) {
                    n += old.find_overlapping_iter(black_box(chunk)).count();
                }
                n
            })
        },
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
