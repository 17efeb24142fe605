//! Host-side hardening of the `bottle-host` process (docs/security.md,
//! "The host side"): a proxy run as an ordinary user is non-dumpable once it
//! holds secrets and its socket is that user's alone; TCP listeners off
//! loopback and state directories others may write are refused.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bottle-host");
const OTHER: u32 = 65534;
const SECRET: &str = "hardening-secret-value-7c1e4b9a2d";

fn manifest(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("bottle.toml");
    std::fs::write(
        &p,
        r#"[agent]
command = ["true"]

[secrets]
api = { env = "BOTTLE_HARDENING_SECRET" }

[[egress.routes]]
host = "api.example.com"
inject = { header = "x-api-key", secret = "api" }
"#,
    )
    .unwrap();
    p
}

fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_proxy_run_by_an_ordinary_user_is_non_dumpable_and_its_socket_private() {
    if !is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and setpriv to act as another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(OTHER), Some(OTHER)).unwrap();
    let m = manifest(dir.path());
    let sock = dir.path().join("proxy.sock");
    let child = Command::new("setpriv")
        .arg(format!("--reuid={OTHER}"))
        .arg(format!("--regid={OTHER}"))
        .args(["--clear-groups", "--", BIN, "proxy", "--listen"])
        .arg(format!("unix://{}", sock.display()))
        .arg("--manifest")
        .arg(&m)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--audit-log")
        .arg(dir.path().join("audit.jsonl"))
        .env("BOTTLE_HARDENING_SECRET", SECRET)
        .env("HOME", dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut child = Killed(child);
    let start = Instant::now();
    // The audit log is opened after the socket is bound and made private.
    while !dir.path().join("audit.jsonl").exists() {
        if let Some(st) = child.0.try_wait().unwrap() {
            panic!("bottle-host proxy exited: {st}");
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    // It runs as the other user, yet its /proc files belong to root: the
    // kernel's mark of a non-dumpable process, which that user can no
    // longer ptrace or read.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid_line.contains(&OTHER.to_string()), "{uid_line}");
    let environ = std::fs::metadata(format!("/proc/{pid}/environ")).unwrap();
    assert_eq!(environ.uid(), 0, "environ of a dumpable process");
    let read = output_within(
        Command::new("setpriv")
            .arg(format!("--reuid={OTHER}"))
            .arg(format!("--regid={OTHER}"))
            .args(["--clear-groups", "--", "cat"])
            .arg(format!("/proc/{pid}/environ")),
        Duration::from_secs(30),
    );
    assert!(!read.status.success(), "the same user read the environment");
    assert!(!String::from_utf8_lossy(&read.stdout).contains(SECRET));
    // The socket and the state are that user's alone.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sock), 0o600);
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    assert_eq!(mode(&dir.path().join("state/ca.key")), 0o600);
    assert_eq!(mode(&dir.path().join("audit.jsonl")), 0o600);
    assert!(child.0.try_wait().unwrap().is_none());
}

/// `cmd`'s output; a panic (and the child killed) if it runs past `limit`,
/// as a refusal that became an acceptance would: the server would serve.
fn output_within(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on our child, not yet reaped: the thread's
            // wait can only return after it has exited.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{cmd:?} still running after {limit:?}");
        }
    }
}

fn refused(args: &[&str], want: &str) {
    let out = output_within(
        Command::new(BIN)
            .args(args)
            .env("BOTTLE_HARDENING_SECRET", SECRET)
            .env("NO_COLOR", "1"),
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} was accepted: {err}");
    assert!(err.contains(want), "{args:?}: {err}");
    assert!(!err.contains(SECRET));
}

#[test]
fn tcp_listeners_off_loopback_are_refused_unless_meant() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path());
    let m = m.to_str().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    for addr in ["tcp://0.0.0.0:0", "tcp://[::]:0", "tcp://192.0.2.1:0"] {
        refused(
            &[
                "proxy",
                "--listen",
                addr,
                "--manifest",
                m,
                "--state-dir",
                state,
            ],
            "--allow-non-loopback",
        );
        refused(
            &["dns", "--listen", addr, "--manifest", m],
            "--allow-non-loopback",
        );
    }
}

#[test]
fn state_directories_others_may_write_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("shared-state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused(
        &["ca", "--state-dir", state.to_str().unwrap()],
        "writable by others",
    );
    assert!(!state.join("ca.key").exists(), "a key was written there");
}
