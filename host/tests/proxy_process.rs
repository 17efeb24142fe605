//! The `bottle-host proxy` process under faults and load: SIGTERM
//! mid-run, its audit log on a full disk, and many concurrent HTTPS
//! connections. The binary runs as a child; tests that need a private
//! mount namespace (a tmpfs, a private `/etc/hosts`) need root and
//! `unshare`, and print `skipped: why` without them.
//!
//! Load size: `BOTTLE_LOAD_PROXY` connections (default 200); `bench/load.sh`
//! runs it with 1000 in release mode.

mod proxy_util;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bottle_shared::addr::Address;
use bottle_shared::channel::Channel;
use bottle_shared::io::dial_hello;
use bottle_shared::message::Role;
use bottle_shared::transport::connect;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const LIMIT: Duration = Duration::from_secs(10);

/// Why this machine cannot run the mount-namespace tests, if it cannot.
fn ns_unavailable() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root (mount namespaces need it)");
    }
    let ok = |t: &str| {
        std::process::Command::new(t)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    if !ok("unshare") || !ok("nsenter") {
        return Some("`unshare`/`nsenter` not installed");
    }
    None
}

/// Start `cmd` (stdout and stderr echoed) and wait for `proxy: serving on`.
async fn spawn_ready(mut cmd: Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("start bottle-host proxy");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = tokio::time::timeout(LIMIT, async {
        while let Ok(Some(l)) = lines.next_line().await {
            eprintln!("[proxy] {l}");
            if l.contains("proxy: serving on") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "bottle-host proxy did not get ready");
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            eprintln!("[proxy] {l}");
        }
    });
    child
}

/// A manifest with `open.test` allowed on `port`.
fn manifest(dir: &Path, port: u16) -> PathBuf {
    let m = dir.join("bottle.toml");
    std::fs::write(
        &m,
        format!(
            "[agent]\ncommand = [\"true\"]\n\n[egress]\nallow_private = true\n\n\
             [[egress.routes]]\nhost = \"open.test\"\nports = [{port}]\n"
        ),
    )
    .unwrap();
    m
}

/// `bottle-host proxy` arguments.
fn proxy_args(listen: &str, m: &Path, dir: &Path, audit: &Path) -> Vec<String> {
    [
        "proxy",
        "--listen",
        listen,
        "--manifest",
        &m.display().to_string(),
        "--state-dir",
        &dir.join("state").display().to_string(),
        "--audit-log",
        &audit.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Send one request and read its response: (status, rule header, body);
/// a `TimedOut` error if it takes longer than [`LIMIT`].
async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    req: &str,
) -> std::io::Result<(u16, String, String)> {
    tokio::time::timeout(LIMIT, request_now(s, req))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no response"))?
}

async fn request_now<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    req: &str,
) -> std::io::Result<(u16, String, String)> {
    s.get_mut().write_all(req.as_bytes()).await?;
    let mut status = 0;
    let mut rule = String::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(rest) = l.strip_prefix("HTTP/1.1 ") {
            status = rest.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        } else if let Some((k, v)) = l.split_once(':') {
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "x-bottle-rule" => rule = v.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    Ok((status, rule, String::from_utf8_lossy(&body).to_string()))
}

const DENIED: &str = "GET http://denied.test/x HTTP/1.1\r\nHost: denied.test\r\n\r\n";

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

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Run `sh -c script` in the mount namespace of `pid` (killed after [`LIMIT`]).
async fn in_ns(pid: u32, script: &str) -> std::process::Output {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "sh", "-c", script])
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(LIMIT, out)
        .await
        .unwrap_or_else(|_| panic!("{script:?} still running after {LIMIT:?}"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_audit_log_refuses_and_says_why() {
    if let Some(why) = ns_unavailable() {
        println!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 443);
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let audit = logs.join("audit.jsonl");
    let port = free_port();
    let listen = format!("tcp://127.0.0.1:{port}");
    let args = proxy_args(&listen, &m, dir.path(), &audit).join("' '");
    let script = format!(
        "mount -t tmpfs -o size=64k tmpfs '{}' && exec '{}' '{args}'",
        logs.display(),
        env!("CARGO_BIN_EXE_bottle-host"),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &script]);
    let child = spawn_ready(cmd).await;
    let pid = child.id().unwrap();
    let mut s = BufReader::new(TcpStream::connect(("127.0.0.1", port)).await.unwrap());

    let (status, rule, _) = request(&mut s, DENIED).await.unwrap();
    assert_eq!((status, rule.as_str()), (403, "host-not-allowed"));

    let out = in_ns(pid, &format!("cat /dev/zero > '{}/fill'", logs.display())).await;
    assert!(!out.status.success(), "the tmpfs did not fill up");
    let mut first_fail = None;
    for i in 0..200 {
        let (status, rule, body) = request(&mut s, DENIED).await.unwrap();
        match first_fail {
            None if status == 503 => {
                assert_eq!(rule, "audit-log-unwritable");
                assert!(body.contains("No space left on device"), "{body}");
                first_fail = Some(i);
            }
            None => assert_eq!(status, 403),
            Some(_) => assert_eq!((status, rule.as_str()), (503, "audit-log-unwritable")),
        }
        if first_fail.is_some_and(|f| i > f + 10) {
            break;
        }
    }
    assert!(
        first_fail.is_some_and(|f| f < 100),
        "no 503: {first_fail:?}"
    );
    let out = in_ns(pid, &format!("rm '{}/fill'", logs.display())).await;
    assert!(out.status.success(), "{out:?}");
    let (status, rule, _) = request(&mut s, DENIED).await.unwrap();
    assert_eq!(
        (status, rule.as_str()),
        (403, "host-not-allowed"),
        "recovered"
    );
    let out = in_ns(pid, &format!("cat '{}'", audit.display())).await;
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("torn line {l:?}: {e}"));
    }
    drop(child);
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
