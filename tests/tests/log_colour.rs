//! The real `bottle-host` and `bottle-guest` write plain log lines to a
//! pipe; colour codes only on a terminal, and not there either with
//! `NO_COLOR` (each binary's `logging::colour`; the guest never colours as
//! PID 1, which `guest/tests/pid1.rs` runs). The terminal is a
//! pseudo-terminal made here.

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

const ESC: char = '\x1b';
const LIMIT: Duration = Duration::from_secs(20);

/// Where the child's standard error goes.
#[derive(Clone, Copy, Debug)]
enum Stderr {
    Pipe,
    Terminal,
}

/// A new pseudo-terminal: (controller, terminal), both close-on-exec.
fn pty() -> (OwnedFd, OwnedFd) {
    let (mut controller, mut terminal) = (-1, -1);
    // SAFETY: openpty writes two new descriptors into the two ints; the
    // name, termios and window size may be null.
    let rc = unsafe {
        libc::openpty(
            &mut controller,
            &mut terminal,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    for fd in [controller, terminal] {
        // SAFETY: fcntl on a descriptor we just opened and still own.
        let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        assert_eq!(rc, 0, "FD_CLOEXEC: {}", std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and owned by nothing else.
    unsafe {
        (
            OwnedFd::from_raw_fd(controller),
            OwnedFd::from_raw_fd(terminal),
        )
    }
}

/// What `cmd` writes to standard error on `to`, with `NO_COLOR` set to
/// `no_color` (unset if `None`), up to the first write containing `until`;
/// the child is then killed. Panics after [`LIMIT`].
fn stderr_of(mut cmd: Command, to: Stderr, no_color: Option<&str>, until: &str) -> String {
    cmd.env_remove("NO_COLOR").env("RUST_LOG", "info");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    let controller = match to {
        Stderr::Pipe => {
            cmd.stderr(Stdio::piped());
            None
        }
        Stderr::Terminal => {
            let (controller, terminal) = pty();
            cmd.stderr(Stdio::from(terminal));
            Some(File::from(controller))
        }
    };
    let mut child = cmd.spawn().expect("the binary starts");
    // Our copy of the terminal side goes with `cmd`: reads end with the child.
    drop(cmd);
    let mut from: Box<dyn Read + Send> = match controller {
        Some(c) => Box::new(c),
        None => Box::new(child.stderr.take().expect("piped stderr")),
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + LIMIT;
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains(until) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(chunk) => got.extend(chunk),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "no {until:?} on stderr ({to:?}) within {LIMIT:?}; got {:?}",
                    String::from_utf8_lossy(&got)
                );
            }
        }
    }
    // Killed, so this wait returns at once.
    let _ = child.kill();
    let _ = child.wait();
    String::from_utf8_lossy(&got).into_owned()
}

/// `bottle-host ca --export`: one quick info line.
fn ca_export(dir: &tempfile::TempDir) -> Command {
    let mut cmd = Command::new(bottle_e2e::bins::host());
    cmd.arg("ca")
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--export")
        .arg(dir.path().join("ca.pem"));
    cmd
}

/// `bottle-guest dns-stub` on a free port: an info line once it listens
/// (its missing host shows only in debug lines).
fn dns_stub(dir: &tempfile::TempDir) -> Command {
    let mut cmd = Command::new(bottle_e2e::bins::guest());
    cmd.arg("dns-stub")
        .arg("--host")
        .arg(format!("unix://{}", dir.path().join("none.sock").display()))
        .args(["--listen", "127.0.0.1:0"]);
    cmd
}

#[test]
fn log_lines_are_coloured_only_on_a_terminal_without_no_color() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (Stderr::Pipe, None, false),
        (Stderr::Pipe, Some(""), false),
        (Stderr::Terminal, Some("1"), false),
        (Stderr::Terminal, None, true),
        (Stderr::Terminal, Some(""), true),
    ];
    type Make = fn(&tempfile::TempDir) -> Command;
    let binaries: [(&str, Make, &str); 2] = [
        ("bottle-host", ca_export, "certificate written"),
        ("bottle-guest", dns_stub, "listening on"),
    ];
    for (bin, make, line) in binaries {
        for (to, no_color, coloured) in cases {
            let text = stderr_of(make(&dir), to, no_color, line);
            assert!(text.contains(line), "{bin}: {text:?}");
            assert_eq!(
                text.contains(ESC),
                coloured,
                "{bin}: stderr on {to:?}, NO_COLOR={no_color:?}: {text:?}"
            );
        }
    }
}
