//! The session path against a raw vsock stream, in one real VM: keystroke
//! echo round trips (one byte out, the same byte back) and pipe
//! throughput (bytes out and back), through `bottle-host exec` sessions
//! (control socket → host relay → session channel → the init's pump →
//! a pty or pipes → the program) and through a plain vsock connection
//! from the same program in the guest to a Unix socket on the host
//! (the run directory's `vsock_7000`, where the vsock daemon delivers
//! guest connections to host port 7000). The guest program is the same
//! Python echo in both, so the difference is the path. Alternating
//! rounds, medians; CPU of `bottle-host` and of QEMU per operation.
//!
//! Run by `bench/session.sh`; needs root, QEMU, the vsock daemon and the
//! guest image, like the real-VM tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bottle_shared::io::{read_message, write_message};
use bottle_shared::message::{SessionInput, SessionOutput};
use bottle_shared::transport::{connect, BoxStream};
use bottle_shared::Address;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROUNDS: usize = 5;
const KEYS: usize = 200;
const PIPE_BYTES: usize = 16 << 20;
const MAX: usize = bottle_shared::MAX_FRAME_LEN;

/// Echo stdin to stdout byte for byte, unbuffered (a terminal in raw mode
/// when it is one), or the same over AF_VSOCK to host port 7000.
const ECHO: &str = r#"
import os, sys, socket, tty
if len(sys.argv) > 1:
    s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    s.connect((2, 7000))
    rd = lambda: s.recv(1 << 20)
    wr = s.sendall
else:
    if os.isatty(0):
        tty.setraw(0)
    rd = lambda: os.read(0, 1 << 20)
    def wr(b):
        while b:
            b = b[os.write(1, b):]
while True:
    b = rd()
    if not b:
        break
    wr(b)
"#;

fn host_bin() -> PathBuf {
    bottle_e2e::bins::host()
}

fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
}

fn ticks_to_us(t: u64) -> f64 {
    // SAFETY: sysconf with a constant name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    t as f64 * 1e6 / hz
}

/// Open an exec session of `python3 -c ECHO` (a pty when `tty`).
async fn exec_session(state: &Path, name: &str, tty: bool) -> BoxStream {
    let mut s = connect(&Address::Unix(
        state.join("names").join(format!("{name}.sock")),
    ))
    .await
    .expect("control socket");
    let req = serde_json::json!({
        "op": "exec", "command": ["python3", "-c", ECHO], "tty": tty, "stdin": true, "rows": 24, "cols": 80
    });
    s.write_all(format!("{req}\n").as_bytes()).await.unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).await.unwrap() == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    let reply: serde_json::Value = serde_json::from_slice(&line).unwrap();
    assert!(reply["error"].is_null(), "{reply}");
    s
}

/// One raw vsock connection from the guest: start the echo as an exec
/// (its streams unused) and accept its connection on `listener`.
async fn raw_session(
    state: &Path,
    name: &str,
    listener: &tokio::net::UnixListener,
) -> (BoxStream, tokio::net::UnixStream) {
    let mut req = serde_json::json!({
        "op": "exec", "command": ["python3", "-c", ECHO, "vsock"], "tty": false, "stdin": false, "rows": 0, "cols": 0
    });
    req["stdin"] = false.into();
    let mut s = connect(&Address::Unix(
        state.join("names").join(format!("{name}.sock")),
    ))
    .await
    .unwrap();
    s.write_all(format!("{req}\n").as_bytes()).await.unwrap();
    let (conn, _) = tokio::time::timeout(Duration::from_secs(60), listener.accept())
        .await
        .expect("the guest's echo never connected")
        .unwrap();
    (s, conn)
}

/// Let the program start (and put its terminal in raw mode, which
/// flushes pending input): probe until a byte comes back, then drop
/// whatever else arrives. Not timed.
async fn warm_up(s: &mut BoxStream) {
    let t0 = Instant::now();
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the echo never started"
        );
        write_message(s, &SessionInput::Stdin(b"w".to_vec()), MAX)
            .await
            .unwrap();
        let got = tokio::time::timeout(
            Duration::from_millis(1000),
            read_message::<_, SessionOutput>(s, MAX),
        )
        .await;
        if let Ok(r) = got {
            match r.unwrap() {
                Some(SessionOutput::Stdout(_)) => break,
                Some(_) => continue,
                None => panic!("session ended"),
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while let Ok(Ok(Some(_))) = tokio::time::timeout(
        Duration::from_millis(500),
        read_message::<_, SessionOutput>(s, MAX),
    )
    .await
    {}
}

async fn keys_session(s: &mut BoxStream) -> Vec<f64> {
    let mut lat = Vec::new();
    for i in 0..KEYS + 5 {
        let t = Instant::now();
        write_message(s, &SessionInput::Stdin(vec![b'a' + (i % 26) as u8]), MAX)
            .await
            .unwrap();
        loop {
            match read_message::<_, SessionOutput>(s, MAX).await.unwrap() {
                Some(SessionOutput::Stdout(b)) if !b.is_empty() => break,
                Some(_) => continue,
                None => panic!("session ended"),
            }
        }
        if i >= 5 {
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    lat
}

async fn keys_raw(c: &mut tokio::net::UnixStream) -> Vec<f64> {
    let mut b = [0u8; 64];
    c.write_all(b"w").await.unwrap();
    let _ = c.read(&mut b).await.unwrap();
    let mut lat = Vec::new();
    for i in 0..KEYS + 5 {
        let t = Instant::now();
        c.write_all(&[b'a' + (i % 26) as u8]).await.unwrap();
        let n = c.read(&mut b).await.unwrap();
        assert!(n > 0);
        if i >= 5 {
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    lat
}

async fn pipe_session(s: BoxStream) -> f64 {
    let (mut rd, mut wr) = tokio::io::split(s);
    let t = Instant::now();
    let w = tokio::spawn(async move {
        let chunk = vec![7u8; 256 * 1024];
        let mut sent = 0;
        while sent < PIPE_BYTES {
            write_message(&mut wr, &SessionInput::Stdin(chunk.clone()), MAX)
                .await
                .unwrap();
            sent += chunk.len();
        }
        write_message(&mut wr, &SessionInput::StdinEof, MAX)
            .await
            .unwrap();
        wr
    });
    let mut got = 0;
    while got < PIPE_BYTES {
        match read_message::<_, SessionOutput>(&mut rd, MAX)
            .await
            .unwrap()
        {
            Some(SessionOutput::Stdout(b)) => got += b.len(),
            Some(_) => {}
            None => panic!("session ended after {got} bytes"),
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let _ = w.await;
    PIPE_BYTES as f64 / secs / 1e6
}

async fn pipe_raw(c: tokio::net::UnixStream) -> f64 {
    let (mut rd, mut wr) = c.into_split();
    let t = Instant::now();
    let w = tokio::spawn(async move {
        let chunk = vec![7u8; 256 * 1024];
        let mut sent = 0;
        while sent < PIPE_BYTES {
            wr.write_all(&chunk).await.unwrap();
            sent += chunk.len();
        }
        wr
    });
    let mut got = 0;
    let mut b = vec![0u8; 64 * 1024];
    while got < PIPE_BYTES {
        let n = rd.read(&mut b).await.unwrap();
        assert!(n > 0, "raw stream ended after {got} bytes");
        got += n;
    }
    let secs = t.elapsed().as_secs_f64();
    drop(w.await);
    PIPE_BYTES as f64 / secs / 1e6
}

/// A phase of the bench, or a clear failure: never a hang.
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(120), f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no progress within 120 s (a stalled stream)"),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let manifest = dir.path().join("b.toml");
    std::fs::write(
        &manifest,
        "[vm]\nbackend = \"qemu\"\nmemory_mib = 256\n\n[agent]\ncommand = [\"sleep\", \"3600\"]\n",
    )
    .unwrap();
    let st = Command::new(host_bin())
        .args(["launch", "-d", "--name", "bench"])
        .arg(&manifest)
        .arg("--state-dir")
        .arg(&state)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "launch -d failed");
    // The bottle goes when the bench does, even on a panic.
    struct Kill(PathBuf);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new(host_bin())
                .args(["kill", "bench", "--state-dir"])
                .arg(&self.0)
                .stdout(Stdio::null())
                .status();
        }
    }
    let _kill = Kill(state.clone());
    let info = || -> serde_json::Value {
        let o = Command::new(host_bin())
            .args(["ps", "--json", "--state-dir"])
            .arg(&state)
            .output()
            .unwrap();
        serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout)
            .unwrap()
            .pop()
            .unwrap()
    };
    let t0 = Instant::now();
    while info()["agent_state"] != "running" {
        assert!(t0.elapsed() < Duration::from_secs(240), "bottle never ran");
        std::thread::sleep(Duration::from_millis(500));
    }
    let host_pid = info()["pid"].as_u64().unwrap() as u32;
    let qemu_pid = bottle_e2e::vm::children_of(host_pid)
        .into_iter()
        .find(|(_, c)| c.contains("qemu"))
        .map(|(p, _)| p)
        .expect("qemu");
    let log = std::fs::read_to_string(state.join("names/bench.launch.log")).unwrap();
    let run = bottle_e2e::vm::banner(
        &log.lines().map(String::from).collect::<Vec<_>>(),
        "run dir",
    )
    .unwrap();
    let listener = tokio::net::UnixListener::bind(Path::new(&run).join("vsock_7000")).unwrap();
    let cpu = || (cpu_ticks(host_pid), cpu_ticks(qemu_pid));

    let (mut k_ours, mut k_raw, mut p_ours, mut p_raw) = (vec![], vec![], vec![], vec![]);
    let (mut kc_ours, mut kc_raw) = (vec![], vec![]);
    for round in 0..ROUNDS {
        for ours_first in [round % 2 == 0, round % 2 != 0] {
            if ours_first {
                let mut s = exec_session(&state, "bench", true).await;
                warm_up(&mut s).await;
                let c0 = cpu();
                let mut l = bounded("session keys", keys_session(&mut s)).await;
                let c1 = cpu();
                kc_ours.push(ticks_to_us((c1.0 - c0.0) + (c1.1 - c0.1)) / KEYS as f64);
                k_ours.push(median(&mut l));
                drop(s);
                let mut s = exec_session(&state, "bench", false).await;
                warm_up(&mut s).await;
                p_ours.push(bounded("session pipe", pipe_session(s)).await);
            } else {
                let (ctl, mut c) = raw_session(&state, "bench", &listener).await;
                let c0 = cpu();
                let mut l = bounded("raw keys", keys_raw(&mut c)).await;
                let c1 = cpu();
                kc_raw.push(ticks_to_us((c1.0 - c0.0) + (c1.1 - c0.1)) / KEYS as f64);
                k_raw.push(median(&mut l));
                drop((ctl, c));
                let (ctl, c) = raw_session(&state, "bench", &listener).await;
                p_raw.push(bounded("raw pipe", pipe_raw(c)).await);
                drop(ctl);
            }
        }
        eprintln!(
            "round {round}: keystroke ours {:.0} us raw {:.0} us; pipe ours {:.1} MB/s raw {:.1} MB/s",
            k_ours[round], k_raw[round], p_ours[round], p_raw[round]
        );
    }
    let (ko, kr) = (median(&mut k_ours), median(&mut k_raw));
    let (po, pr) = (median(&mut p_ours), median(&mut p_raw));
    println!("keystroke echo round trip (median of {ROUNDS} rounds × {KEYS} keys):");
    println!("  session (exec -t, pty): {ko:.0} us   raw vsock: {kr:.0} us   added: {:.0} us (goal <= 1000 us)", ko - kr);
    println!(
        "  CPU per key (bottle-host + QEMU): session {:.0} us, raw {:.0} us",
        median(&mut kc_ours),
        median(&mut kc_raw)
    );
    println!(
        "pipe throughput host → guest → host ({} MiB, median of {ROUNDS}):",
        PIPE_BYTES >> 20
    );
    println!("  session (exec, pipes): {po:.1} MB/s   raw vsock: {pr:.1} MB/s   ratio {:.2} (goal >= 0.8)", po / pr);
}
