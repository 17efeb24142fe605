//! Many concurrent DNS queries through the real path: UDP clients →
//! `bottle-guest dns-stub` on 127.0.0.1 → Unix socket → `bottle-host dns`
//! → the test upstream on 127.0.0.1. Each query has its own socket and is
//! sent at the same instant; a query without an answer is retried after
//! 2 s (as resolvers do), at most 3 times. Prints errors, retries, latency
//! percentiles and both processes' peak RSS (VmHWM).
//!
//! Size: `BOTTLE_LOAD_DNS` queries at once (default 1000); `bench/load.sh`
//! runs 10 000 in release mode. Needs no root.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bottle_e2e::channel::query;
use bottle_e2e::proc::Proc;
use bottle_e2e::upstream::Upstream;
use bottle_e2e::{bins, sys};
use tokio::net::UdpSocket;
use tokio::process::Command;
use tokio::sync::Barrier;

/// Tries per query; each waits this long for its answer.
const TRIES: u32 = 3;
const WAIT: Duration = Duration::from_secs(2);

/// The result of one client: latency and tries used, or why it failed.
type Outcome = Result<(Duration, u32), String>;

/// One client: its own socket, one query, the expected response code.
async fn client(stub: std::net::SocketAddr, i: usize, barrier: Arc<Barrier>) -> Outcome {
    let sock = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let (name, want_rcode) = match i % 4 {
        0 | 1 => ("allowed.test.".to_string(), 0),
        2 => ("denied.example.".to_string(), 3),
        _ => (format!("n{i}.wild.test."), 0),
    };
    let id = u16::try_from(i % 65_536).unwrap_or(0);
    let q = query(id, &name);
    barrier.wait().await;
    let start = Instant::now();
    let mut buf = vec![0u8; 4096];
    for attempt in 1..=TRIES {
        sock.send_to(&q, stub)
            .await
            .map_err(|e| format!("send: {e}"))?;
        match tokio::time::timeout(WAIT, sock.recv(&mut buf)).await {
            Ok(Ok(n)) if n >= 12 => {
                let got_id = u16::from_be_bytes([buf[0], buf[1]]);
                let rcode = buf[3] & 0x0f;
                if got_id != id {
                    return Err(format!("{name}: id {got_id} for {id}"));
                }
                if rcode != want_rcode {
                    return Err(format!("{name}: rcode {rcode}, want {want_rcode}"));
                }
                return Ok((start.elapsed(), attempt));
            }
            Ok(Ok(n)) => return Err(format!("{name}: {n}-byte answer")),
            Ok(Err(e)) => return Err(format!("{name}: recv: {e}")),
            Err(_) => continue,
        }
    }
    Err(format!("{name}: no answer in {TRIES} tries"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_queries_through_stub_and_host() {
    let _serial = bottle_e2e::serial().await;
    let n: usize = std::env::var("BOTTLE_LOAD_DNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let fds = sys::raise_nofile(n as u64 + 4096);
    assert!(
        fds >= n as u64 + 256,
        "open-file limit {fds} too low for {n}"
    );

    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let m = dir.path().join("bottle.toml");
    std::fs::write(
        &m,
        format!(
            "[agent]\ncommand = [\"/bin/true\"]\n\n\
             [dns]\nupstreams = [\"{}\"]\nextra_names = [\"allowed.test\", \"*.wild.test\"]\n\n\
             [dns.limits]\nunique_names_per_window = 1000000\n",
            up.addr
        ),
    )
    .unwrap();
    let listen = format!("unix://{}", dir.path().join("host.sock_6002").display());
    let mut cmd = Command::new(bins::host());
    cmd.arg("dns")
        .args(["--listen", &listen])
        .arg("--manifest")
        .arg(&m)
        .args(["--upstream", &up.addr.to_string()]);
    let host = Proc::spawn("host", cmd, "dns: serving on", Duration::from_secs(10)).await;
    // Port 0: the stub picks one free for UDP and TCP alike and says
    // which (a port probed free here could be taken by then).
    let mut cmd = Command::new(bins::guest());
    cmd.args(["dns-stub", "--host", &listen, "--listen", "127.0.0.1:0"]);
    let stub = Proc::spawn(
        "stub",
        cmd,
        "dns-stub: listening on",
        Duration::from_secs(10),
    )
    .await;
    let stub_addr: std::net::SocketAddr = stub
        .ready_line
        .rsplit(' ')
        .find_map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no address in {:?}", stub.ready_line));

    let barrier = Arc::new(Barrier::new(n));
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(client(stub_addr, i, barrier.clone())))
        .collect();
    let mut lat = Vec::with_capacity(n);
    let mut errors = Vec::new();
    let mut retried = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok((d, tries)) => {
                lat.push(d);
                retried += usize::from(tries > 1);
            }
            Err(e) => errors.push(e),
        }
    }
    let wall = started.elapsed();
    let host_hwm = sys::status_kb(host.pid(), "VmHWM").unwrap_or(0);
    let stub_hwm = sys::status_kb(stub.pid(), "VmHWM").unwrap_or(0);
    let [p50, p99, max] = sys::percentiles(&mut lat);
    println!(
        "dns load: {n} concurrent queries, {} errors, {retried} retried, wall {:.2} s, \
         latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms, host VmHWM {:.1} MiB, \
         stub VmHWM {:.1} MiB",
        errors.len(),
        wall.as_secs_f64(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        host_hwm as f64 / 1024.0,
        stub_hwm as f64 / 1024.0,
    );
    let mut kinds: Vec<String> = errors
        .iter()
        .map(|e| {
            e.split_once(": ")
                .map_or(e.as_str(), |(_, k)| k)
                .to_string()
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    if !kinds.is_empty() {
        println!("dns load: kinds of errors: {kinds:?}");
    }
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    // Within the stub's in-flight limit (4096) nothing may be dropped: the
    // stub's UDP receive buffer holds the burst (forced past rmem_max,
    // which needs root).
    // SAFETY: geteuid has no preconditions and cannot fail.
    if n <= 4096 && unsafe { libc::geteuid() } == 0 {
        assert_eq!(retried, 0, "queries dropped below the in-flight limit");
    }
    assert!(
        host_hwm > 0 && host_hwm < 512 * 1024,
        "host peak RSS {host_hwm} kB"
    );
    assert!(
        stub_hwm > 0 && stub_hwm < 512 * 1024,
        "stub peak RSS {stub_hwm} kB"
    );
    // Every unique name reached the upstream exactly once.
    let unique = (0..n).filter(|i| i % 4 == 3).count();
    let seen: u32 = (0..n)
        .filter(|i| i % 4 == 3)
        .map(|i| up.seen(&format!("n{i}.wild.test")))
        .sum();
    assert_eq!(seen as usize, unique, "upstream queries for unique names");
    stub.kill().await;
    host.kill().await;
}
