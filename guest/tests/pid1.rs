//! `bottle-guest init` as PID 1 of a fresh PID/net/mount/UTS namespace,
//! against a control-channel test host in this process, over `unix://`.
//! Needs root and `unshare`; otherwise each test prints `skipped: why`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bottle_shared::channel::Channel;
use bottle_shared::io::{accept_hello, read_message, write_message};
use bottle_shared::message::{
    AgentSpec, GuestConfig, GuestMessage, HelloReply, HostMessage, ProcessEvent, RestartMode,
    RestartPolicy,
};
use bottle_shared::transport::{BoxStream, Listener};
use bottle_shared::{Address, Role};
use tokio::process::{Child, Command};

/// The binary under test; `BOTTLE_GUEST_BIN` may point at another build
/// (e.g. the static one, to measure it).
fn bin() -> String {
    std::env::var("BOTTLE_GUEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_bottle-guest").to_string())
}
const CA: &str = "-----BEGIN CERTIFICATE-----\nVGVzdENB\n-----END CERTIFICATE-----\n";
const MAX: usize = bottle_shared::MAX_FRAME_LEN;

/// Why these tests cannot run here, if they cannot.
fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    let ok = std::process::Command::new("unshare")
        .args([
            "--pid",
            "--net",
            "--mount",
            "--uts",
            "--fork",
            "--mount-proc",
            "true",
        ])
        .stderr(Stdio::null())
        .status();
    match ok {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("unshare cannot create namespaces ({s})")),
        Err(e) => Some(format!("no unshare: {e}")),
    }
}

macro_rules! skip_unless_able {
    () => {
        if let Some(why) = skip_reason() {
            println!("skipped: {why}");
            return;
        }
    };
}

/// A temp dir outside /tmp: the init mounts a fresh tmpfs on /tmp in its
/// mount namespace, which would hide sockets placed there.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("p1")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        // A Debian-like rootfs for the CA install and /etc/passwd.
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc/ssl/certs")).unwrap();
        std::fs::create_dir_all(root.join("usr/local/share/ca-certificates")).unwrap();
        std::fs::write(root.join("etc/ssl/certs/ca-certificates.crt"), "").unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        Sandbox { dir }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn base(&self) -> String {
        format!("unix://{}", self.path("host.sock").display())
    }
    async fn listen(&self) -> Listener {
        let base = Address::parse(&self.base()).unwrap();
        Listener::bind(&base.for_port(6001).unwrap()).await.unwrap()
    }
    /// Start the init in new namespaces; the test's `/etc` is never touched
    /// (`--root` points into the sandbox).
    fn start_init(&self) -> Child {
        Command::new("unshare")
            .args([
                "--pid",
                "--net",
                "--mount",
                "--uts",
                "--fork",
                "--mount-proc",
                &bin(),
                "init",
            ])
            .arg("--host")
            .arg(self.base())
            .arg("--root")
            .arg(self.path("root"))
            .arg("--status-socket")
            .arg(self.path("status.sock"))
            .arg("--no-poweroff")
            .env("RUST_LOG", "debug")
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }
}

/// The init's pid as seen from here: the only child of `unshare`.
fn init_pid(unshare: u32) -> u32 {
    for _ in 0..200 {
        let kids = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
            .unwrap_or_default();
        if let Some(pid) = kids.split_whitespace().next() {
            return pid.parse().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("unshare {unshare} has no child");
}

fn config(command: &str, restart: RestartPolicy, grace_ms: u64) -> GuestConfig {
    GuestConfig {
        hostname: "bottled".into(),
        agent: AgentSpec {
            command: vec!["sh".into(), "-c".into(), command.into()],
            restart,
            grace_ms,
            ..Default::default()
        },
        ca_pem: CA.into(),
        ..Default::default()
    }
}

/// Accept the guest, check its hello and boot message, push `cfg`.
async fn handshake(listener: &Listener, cfg: GuestConfig) -> BoxStream {
    let mut s = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("the guest never dialed")
        .unwrap();
    let hello = accept_hello(&mut s, Role::Host, Channel::Control, "test-host")
        .await
        .unwrap();
    assert!(hello.software.starts_with("bottle-guest"), "{hello:?}");
    let boot: GuestMessage = read_message(&mut s, MAX).await.unwrap().unwrap();
    assert!(matches!(boot, GuestMessage::Boot(_)), "{boot:?}");
    write_message(&mut s, &HostMessage::Config(Box::new(cfg)), MAX)
        .await
        .unwrap();
    s
}

/// Read guest messages until `Exit` (inclusive), with arrival times.
async fn until_exit(s: &mut BoxStream, limit: Duration) -> Vec<(Instant, GuestMessage)> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let msg = tokio::time::timeout_at(deadline, read_message::<_, GuestMessage>(s, MAX))
            .await
            .unwrap_or_else(|_| panic!("no Exit within {limit:?}; got {got:?}"))
            .unwrap();
        let Some(msg) = msg else {
            panic!("control channel closed before Exit; got {got:?}");
        };
        let exit = matches!(msg, GuestMessage::Exit { .. });
        got.push((Instant::now(), msg));
        if exit {
            return got;
        }
    }
}

fn events(msgs: &[(Instant, GuestMessage)]) -> Vec<GuestMessage> {
    msgs.iter().map(|(_, m)| m.clone()).collect()
}

async fn exit_status(mut child: Child) -> i32 {
    let st = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("init did not exit")
        .unwrap();
    st.code().unwrap_or_else(|| panic!("init killed: {st:?}"))
}

fn status_json(socket: &Path) -> serde_json::Value {
    let out = std::process::Command::new(bin())
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Zombie children of `pid` right now.
fn zombies_of(pid: u32) -> Vec<String> {
    let mut z = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let f: Vec<&str> = after.split(' ').collect();
        if f.len() > 1 && f[0] == "Z" && f[1] == pid.to_string() {
            z.push(stat);
        }
    }
    z
}

fn vm_rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[path = "pid1/cases.rs"]
mod cases;
