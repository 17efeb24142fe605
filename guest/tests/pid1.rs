//! `bottle-guest init` as PID 1 of a fresh PID/net/mount/UTS namespace,
//! against a control-channel test host in this process, over `unix://`.
//! Needs root and `unshare`; otherwise each test prints `skipped: why`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
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

/// Every wait in these tests is bounded by one of these: a stuck init fails
/// its test with a message, it never hangs the test run.
const STEP: Duration = Duration::from_secs(10);

/// The binary under test; `BOTTLE_GUEST_BIN` may point at another build
/// (e.g. the static one, to measure it).
fn bin() -> String {
    std::env::var("BOTTLE_GUEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_bottle-guest").to_string())
}
const CA: &str = "-----BEGIN CERTIFICATE-----\nVGVzdENB\n-----END CERTIFICATE-----\n";
const MAX: usize = bottle_shared::MAX_FRAME_LEN;

/// `fut`, or a panic naming `what` once `limit` has passed.
async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {limit:?}"))
}

/// Run `cmd` to completion (killed if it takes longer than [`STEP`]).
async fn output(mut cmd: Command) -> Output {
    let what = format!("{:?}", cmd.as_std());
    let out = cmd.kill_on_drop(true).output();
    within(STEP, &what, out)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Why these tests cannot run here, if they cannot.
async fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--pid",
        "--net",
        "--mount",
        "--uts",
        "--fork",
        "--mount-proc",
        "true",
    ])
    .stderr(Stdio::null())
    .kill_on_drop(true);
    let ok = within(STEP, "unshare true", cmd.status()).await;
    match ok {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("unshare cannot create namespaces ({s})")),
        Err(e) => Some(format!("no unshare: {e}")),
    }
}

macro_rules! skip_unless_able {
    () => {
        if let Some(why) = skip_reason().await {
            println!("skipped: {why}");
            return;
        }
    };
}

/// True if the init, as PID 1, may mount a fresh filesystem over `dir` (or
/// over a directory above it) in its mount namespace: `dir` would then be
/// hidden from it. The list is the init's own, so it stays true if it grows.
fn hidden_by_init(dir: &Path) -> bool {
    bottle_guest::init::boot::MOUNTS
        .iter()
        .any(|m| dir.starts_with(m.target))
}

/// The directory the sandboxes go in: the host's sockets, the init's status
/// socket and the rootfs it writes into must be seen by both this process
/// and the init. The init's tmpfs on `/tmp` would hide a target directory
/// under `/tmp` (a checkout there), so the first of these that the init
/// leaves visible is used, by its real path (a symlink could lead under
/// `/tmp`): cargo's temp dir, `TMPDIR`, `/var/tmp`.
fn sandbox_parent() -> PathBuf {
    let candidates = [
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        std::env::temp_dir(),
        PathBuf::from("/var/tmp"),
    ];
    candidates
        .iter()
        .filter_map(|c| c.canonicalize().ok())
        .find(|c| !hidden_by_init(c))
        .unwrap_or_else(|| {
            let hidden: Vec<&str> = bottle_guest::init::boot::MOUNTS
                .iter()
                .map(|m| m.target)
                .collect();
            panic!(
                "no directory for the test sandboxes outside what the init mounts over \
                 ({hidden:?}); tried {candidates:?}; set TMPDIR to a directory elsewhere"
            )
        })
}

/// A temp dir the init can see (see [`sandbox_parent`]).
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("p1")
            .tempdir_in(sandbox_parent())
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
    /// (`--root` points into the sandbox). Dropping the child kills
    /// `unshare`, and with it (`--kill-child`) the init and its namespace.
    fn start_init(&self) -> Child {
        Command::new("unshare")
            .args([
                "--pid",
                "--net",
                "--mount",
                "--uts",
                "--fork",
                "--kill-child",
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

/// Accept the guest's connection.
async fn accept(listener: &Listener) -> BoxStream {
    within(STEP, "the guest never dialed", listener.accept())
        .await
        .unwrap()
}

/// The next guest message (panics if the channel closes).
async fn next<M: serde::de::DeserializeOwned>(s: &mut BoxStream) -> M {
    within(
        STEP,
        "no message from the guest",
        read_message::<_, M>(s, MAX),
    )
    .await
    .unwrap()
    .expect("the guest closed the control channel")
}

/// Send one message to the guest.
async fn send<M: serde::Serialize>(s: &mut BoxStream, msg: &M) {
    within(STEP, "the guest reads nothing", write_message(s, msg, MAX))
        .await
        .unwrap();
}

/// Accept the guest, check its hello and boot message, push `cfg`.
async fn handshake(listener: &Listener, cfg: GuestConfig) -> BoxStream {
    let mut s = accept(listener).await;
    let hello = accept_hello(&mut s, Role::Host, Channel::Control, "test-host");
    let hello = within(STEP, "no hello from the guest", hello)
        .await
        .unwrap();
    assert!(hello.software.starts_with("bottle-guest"), "{hello:?}");
    let boot: GuestMessage = next(&mut s).await;
    assert!(matches!(boot, GuestMessage::Boot(_)), "{boot:?}");
    send(&mut s, &HostMessage::Config(Box::new(cfg))).await;
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
    let st = within(STEP, "init did not exit", child.wait())
        .await
        .unwrap();
    st.code().unwrap_or_else(|| panic!("init killed: {st:?}"))
}

/// `bottle-guest status` with `args` against `socket`.
async fn status(args: &[&str], socket: &Path) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("status").args(args).arg("--socket").arg(socket);
    output(cmd).await
}

async fn status_json(socket: &Path) -> serde_json::Value {
    let out = status(&["--json"], socket).await;
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
#[path = "pid1/session.rs"]
mod session;
