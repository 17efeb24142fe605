//! Many concurrent HTTPS connections through the `bottle-host proxy`
//! process to a local HTTPS upstream with its own CA: every connection
//! must succeed; latency percentiles and the proxy's peak RSS (VmHWM) are
//! printed. The proxy runs in a private mount namespace whose `/etc/hosts`
//! maps `open.test` to 127.0.0.1 (root and `unshare` needed, else
//! `skipped: why`).
//!
//! Size: `BOTTLE_LOAD_PROXY` connections at once (default 200);
//! `bench/load.sh` runs 1000 in release mode.

mod proxy_util;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bottle_host::ca::Ca;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::sync::Barrier;

const LIMIT: Duration = Duration::from_secs(60);

fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    lim.rlim_cur = want.min(lim.rlim_max);
    // SAFETY: `lim` is a valid rlimit no higher than the hard limit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    lim.rlim_cur
}

fn vm_hwm_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn tls_config(ca_pem: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca_pem).unwrap();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(cfg)
}

/// CONNECT, TLS through the proxy's CA, one GET; Ok(latency) on a 200.
async fn one(
    proxy: u16,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    barrier: Arc<Barrier>,
) -> Result<Duration, String> {
    barrier.wait().await;
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", proxy))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let connect = format!("CONNECT open.test:{port} HTTP/1.1\r\nHost: open.test:{port}\r\n\r\n");
    s.write_all(connect.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let head = proxy_util::read_head(&mut s).await;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("CONNECT: {head:?}"));
    }
    let name = rustls::pki_types::ServerName::try_from("open.test").unwrap();
    let s = tokio_rustls::TlsConnector::from(tls)
        .connect(name, s)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let mut s = BufReader::new(s);
    let get = format!("GET /load HTTP/1.1\r\nHost: open.test:{port}\r\nConnection: close\r\n\r\n");
    s.get_mut()
        .write_all(get.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut status = String::new();
    s.read_line(&mut status).await.map_err(|e| e.to_string())?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("GET: {status:?}"));
    }
    Ok(start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_https_connections_through_the_proxy() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: not running as root (a private /etc/hosts needs it)");
        return;
    }
    let n: usize = std::env::var("BOTTLE_LOAD_PROXY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let fds = raise_nofile(8 * n as u64 + 1024);
    assert!(fds >= 4 * n as u64, "open-file limit {fds} too low for {n}");

    let dir = tempfile::tempdir().unwrap();
    let (up_ca, tls_port, _) = proxy_util::upstreams().await;
    let up_ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&up_ca_path, up_ca).unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.1 open.test\n").unwrap();
    let m = dir.path().join("bottle.toml");
    std::fs::write(
        &m,
        format!(
            "[agent]\ncommand = [\"true\"]\n\n[egress]\nallow_private = true\n\n\
             [[egress.routes]]\nhost = \"open.test\"\nports = [{tls_port}]\n"
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let proxy_ca = dir.path().join("proxy-ca.pem");
    Ca::load_or_create(&state)
        .unwrap()
        .export(&proxy_ca)
        .unwrap();
    let proxy_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = format!(
        "mount --bind '{hosts}' /etc/hosts && exec '{bin}' proxy --listen tcp://127.0.0.1:{proxy_port} \
         --manifest '{m}' --state-dir '{state}' --upstream-ca '{up}' --audit-log '{audit}'",
        hosts = hosts.display(),
        bin = env!("CARGO_BIN_EXE_bottle-host"),
        m = m.display(),
        state = state.display(),
        up = up_ca_path.display(),
        audit = dir.path().join("audit.jsonl").display(),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("start the proxy");
    let pid = child.id().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("proxy: serving on") {
                return true;
            }
            eprintln!("[proxy] {l}");
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "the proxy did not start");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let tls = tls_config(&proxy_ca);
    let barrier = Arc::new(Barrier::new(n));
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (tls, barrier) = (tls.clone(), barrier.clone());
            tokio::spawn(async move {
                tokio::time::timeout(LIMIT, one(proxy_port, tls_port, tls, barrier))
                    .await
                    .unwrap_or_else(|_| Err("timed out".into()))
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(n);
    let mut errors = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(d) => lat.push(d),
            Err(e) => errors.push(e),
        }
    }
    let wall = started.elapsed();
    let hwm = vm_hwm_kb(pid);
    lat.sort_unstable();
    let pct = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
    println!(
        "proxy load: {n} concurrent HTTPS connections, {} errors, wall {:.2} s, \
         latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms, proxy VmHWM {:.1} MiB",
        errors.len(),
        wall.as_secs_f64(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        pct(1.0).as_secs_f64() * 1e3,
        hwm as f64 / 1024.0
    );
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    assert!(hwm > 0 && hwm < 1024 * 1024, "proxy peak RSS {hwm} kB");
    drop(child);
}
