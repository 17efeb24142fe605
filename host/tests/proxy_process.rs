//! The `bottle-host proxy` process under faults and load: SIGTERM
//! mid-run and running out of descriptors (its audit log on a full disk and at its cap:
//! `proxy_audit.rs`; many concurrent connections: `proxy_load.rs`). The
//! binary runs as a child.

mod proxy_process_util;
mod proxy_util;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bottle_shared::addr::Address;
use bottle_shared::channel::Channel;
use bottle_shared::io::dial_hello;
use bottle_shared::message::Role;
use bottle_shared::transport::connect;
use proxy_process_util::{
    free_port, manifest, proxy_args, request, request_now, spawn_ready, DENIED, LIMIT,
};
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::process::Command;

fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}")))
        .collect()
}

fn signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).unwrap();
    // SAFETY: kill has no memory preconditions.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok() && n != me)
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_every_decision_and_removes_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 443);
    let sock = dir.path().join("egress.sock");
    let audit = dir.path().join("audit.jsonl");
    let listen = format!("unix://{}", sock.display());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bottle-host"));
    cmd.args(proxy_args(&listen, &m, dir.path(), &audit));
    let mut child = spawn_ready(cmd).await;
    let pid = child.id().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (sock, stop) = (sock.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut s = connect(&Address::Unix(sock)).await.unwrap();
            dial_hello(&mut s, Role::Guest, Channel::Egress, "test")
                .await
                .unwrap();
            let mut s = BufReader::new(s);
            let mut answered = 0u32;
            while !stop.load(Ordering::Relaxed) {
                match request(&mut s, DENIED).await {
                    Ok((403, rule, _)) if rule == "host-not-allowed" => answered += 1,
                    Ok(other) => panic!("unexpected {other:?}"),
                    Err(_) => break,
                }
            }
            answered
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    signal(pid, libc::SIGTERM);
    let status = tokio::time::timeout(LIMIT, child.wait())
        .await
        .expect("bottle-host proxy exits within 10 s of SIGTERM")
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut answered = 0;
    for c in clients {
        answered += c.await.unwrap();
    }
    assert!(status.success(), "exit status {status}");
    assert!(answered > 20, "only {answered} answers before SIGTERM");
    let lines = audit_lines(&audit);
    assert!(
        lines.len() >= answered as usize,
        "{answered} answers but {} audit lines",
        lines.len()
    );
    assert!(!sock.exists(), "socket file left behind");
    let stray = processes_mentioning(&dir.path().display().to_string());
    assert!(stray.is_empty(), "processes left: {stray:?}");
    println!(
        "proxy sigterm: {answered} answers, {} audit lines",
        lines.len()
    );
}

/// `bottle-host proxy` under a descriptor limit a few dozen connections
/// reach (bash's `ulimit -n` sets the hard limit too, so the proxy cannot
/// raise it).
fn proxy_with_few_descriptors(listen: &str, m: &Path, dir: &Path, audit: &Path) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(r#"ulimit -n 64 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_bottle-host"))
        .args(proxy_args(listen, m, dir, audit));
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_is_waited_out_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 443);
    let sock = dir.path().join("egress.sock");
    let audit = dir.path().join("audit.jsonl");
    let listen = format!("unix://{}", sock.display());
    let cmd = proxy_with_few_descriptors(&listen, &m, dir.path(), &audit);
    let mut child = spawn_ready(cmd).await;
    let addr = Address::Unix(sock.clone());

    // Connections held open, as a guest could, until one is not taken.
    let mut held = Vec::new();
    let mut ran_out = false;
    for _ in 0..200 {
        let mut s = tokio::time::timeout(LIMIT, connect(&addr))
            .await
            .expect("connect in time")
            .expect("the socket still listens");
        let hello = tokio::time::timeout(
            Duration::from_millis(500),
            dial_hello(&mut s, Role::Guest, Channel::Egress, "test"),
        )
        .await;
        held.push(s);
        if !matches!(hello, Ok(Ok(_))) {
            ran_out = true;
            break;
        }
    }
    assert!(ran_out, "200 connections and descriptors never ran out");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "bottle-host proxy exited when it ran out of descriptors"
    );

    // Once the guest lets go, the proxy serves again.
    drop(held);
    let mut s = connect(&addr).await.unwrap();
    tokio::time::timeout(
        LIMIT,
        dial_hello(&mut s, Role::Guest, Channel::Egress, "test"),
    )
    .await
    .expect("hello in time")
    .unwrap();
    let mut s = BufReader::new(s);
    let (status, rule, _) = request(&mut s, DENIED).await.unwrap();
    assert_eq!((status, rule.as_str()), (403, "host-not-allowed"));
    let _ = child.kill().await;
}

/// CPU time (user and system) process `pid` has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command's `(name)`: field 3 (state) onwards; utime and
    // stime are fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz.max(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_proxy_out_of_descriptors_waits_instead_of_spinning() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 443);
    let audit = dir.path().join("audit.jsonl");
    let port = free_port();
    let listen = format!("tcp://127.0.0.1:{port}");
    let mut cmd = proxy_with_few_descriptors(&listen, &m, dir.path(), &audit);
    // The TCP accept loop (`bridge::serve_tcp`, through `accept::next_tcp`)
    // logs each failure and waits `accept::PAUSE`; one that retried at once
    // (hudsucker's own did, before its patch 4) would spend a whole core
    // on accept(2) and logging.
    cmd.env("RUST_LOG", "info,hudsucker=off");
    let mut child = spawn_ready(cmd).await;
    let pid = child.id().unwrap();

    // Connections held open until one is not served: the next one waits
    // in the listen backlog while accept fails with EMFILE.
    let mut held = Vec::new();
    let mut ran_out = false;
    for _ in 0..200 {
        let s = tokio::time::timeout(LIMIT, TcpStream::connect(("127.0.0.1", port)))
            .await
            .expect("connect in time")
            .unwrap();
        let mut s = BufReader::new(s);
        let r = tokio::time::timeout(Duration::from_millis(500), request_now(&mut s, DENIED)).await;
        held.push(s);
        if !matches!(r, Ok(Ok((403, _, _)))) {
            ran_out = true;
            break;
        }
    }
    assert!(ran_out, "200 connections and descriptors never ran out");
    let before = cpu_time(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_time(pid) - before;
    assert!(
        used < Duration::from_millis(300),
        "out of descriptors, the proxy used {used:?} of CPU in 1 s (its accept loop spins)"
    );

    // Once the connections are let go, it serves again.
    drop(held);
    let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (status, rule, _) = request(&mut BufReader::new(s), DENIED).await.unwrap();
    assert_eq!((status, rule.as_str()), (403, "host-not-allowed"));
    let _ = child.kill().await;
}
