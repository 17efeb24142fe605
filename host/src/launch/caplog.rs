//! The background launch's own output, `<state>/names/<NAME>.launch.log`,
//! capped at [`LIMIT`] like the agent's log and `console.log`.
//!
//! What the launch writes to standard error includes what the guest can
//! provoke (its setup failures, refused sessions, the proxy's warnings
//! about the agent's requests, the console with `--console`), and the
//! file outlives the launch on the owner's disk. So the detached launch
//! routes its descriptor 2 through a pipe to a thread that appends to the
//! log up to the limit, then writes a notice and reads on without keeping
//! anything, so no writer ever blocks (`crate::log_cap`). (QEMU, virtiofsd
//! and the vsock daemon write their own output to their own logs in the
//! run directory, capped the same way: `vmm/daemon_log.rs`.)

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most bytes kept, as for `agent.log` and `console.log`.
pub const LIMIT: u64 = crate::log_cap::LOG_LIMIT;

/// The copying thread, once started.
static COPIER: Mutex<Option<JoinHandle<()>>> = Mutex::new(None);

/// Route descriptor 2 through the capped copier (to where it pointed).
pub fn cap_stderr() -> io::Result<()> {
    // SAFETY: dup(2) has no memory-safety preconditions; the descriptor
    // it returns is new and owned here.
    let orig = unsafe { libc::dup(2) };
    if orig < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `orig` was just returned by dup and is owned by nothing else.
    let log = File::from(unsafe { OwnedFd::from_raw_fd(orig) });
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just made by pipe2 and are owned here.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: `wr` is open; dup2 onto 2 replaces standard error (without
    // close-on-exec, so a child given no other stderr inherits the pipe).
    if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&wr), 2) } < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(wr);
    let handle = std::thread::Builder::new()
        .name("launch-log".into())
        .spawn(move || {
            copy_capped(File::from(rd), log, LIMIT);
        })?;
    *COPIER.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
    Ok(())
}

/// Before the process exits: close our end of the pipe and let the
/// copier write out what it has (at most 2 s: a child process may still
/// hold the pipe). Nothing when [`cap_stderr`] was not called.
pub fn finish() {
    let Some(handle) = COPIER.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return;
    };
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        // SAFETY: both descriptors are open; dup2 closes the pipe's end at 2.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 2) };
    }
    let t0 = Instant::now();
    while !handle.is_finished() && t0.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    if handle.is_finished() {
        let _ = handle.join();
    }
}

/// Run `main` and return its exit code, with [`finish`] called either
/// way. A panic that escapes `main` has already been reported on
/// standard error by the hook, into the pipe when [`cap_stderr`] was
/// called; left uncaught it would end the process before the copier took
/// the report from the pipe, so the launch log would not say why the
/// bottle stopped. It returns 101, an uncaught panic's exit status.
pub fn run_main(main: impl FnOnce() -> i32) -> i32 {
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(main)).unwrap_or(101);
    finish();
    code
}

/// Copy `from` to `to` until end of input, keeping at most `limit` bytes;
/// past it a notice, then the rest is read and dropped. The bytes kept
/// ([`crate::log_cap::Cap::kept`]).
pub fn copy_capped(mut from: impl Read, mut to: impl Write, limit: u64) -> u64 {
    let mut cap = crate::log_cap::Cap::new("the launch log", limit);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return cap.kept(),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return cap.kept(),
        };
        let admit = cap.offer(n);
        if to.write_all(&buf[..admit.take]).is_err() {
            cap.stop();
            continue;
        }
        if let Some(notice) = admit.notice {
            let _ = to.write_all(notice.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the child process of
    /// [`a_panic_in_main_reaches_the_log_before_the_process_exits`]: the
    /// log file it points its standard error at.
    const CHILD_LOG: &str = "BOTTLE_CAPLOG_TEST_LOG";

    /// As `main` does: standard error to a log through the copier, then a
    /// panic on the main thread, then `exit` at once with what
    /// [`run_main`] returned. The report must be in the log.
    #[test]
    fn a_panic_in_main_reaches_the_log_before_the_process_exits() {
        if let Some(path) = std::env::var_os(CHILD_LOG) {
            let log = File::create(path).expect("log");
            // SAFETY: both descriptors are open; this child process is
            // this test's alone, and only it writes to its standard error.
            assert!(unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&log), 2) } == 2);
            cap_stderr().expect("cap_stderr");
            let code = run_main(|| panic!("boom on the main thread"));
            // 42: what the parent looks for; a panic that escaped
            // `run_main` would end the harness with 101 instead.
            std::process::exit(if code == 101 { 42 } else { 1 });
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("launch.log");
        let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args([
                "--exact",
                "launch::caplog::tests::a_panic_in_main_reaches_the_log_before_the_process_exits",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_LOG, &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("the child did not exit within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(status.code(), Some(42), "{status}; log: {text}");
        assert!(text.contains("boom on the main thread"), "log: {text:?}");
    }

    /// Past the limit nothing more is kept, one notice says so, and the
    /// input is still read to its end (a writer never blocks).
    #[test]
    fn copies_up_to_the_limit_then_drains() {
        let input = vec![b'x'; 10 * 1024 * 1024];
        let mut out = Vec::new();
        // Not a whole number of the copier's 64 KiB reads: the log fills
        // to the limit exactly, cutting the read that crosses it.
        let limit = (1 << 20) + 1000;
        let kept = copy_capped(&input[..], &mut out, limit);
        assert_eq!(kept, limit);
        let notice =
            "\n[bot-bottle: the launch log is full (1049576 bytes); the rest is not kept]\n";
        assert_eq!(out.len() as u64, limit + notice.len() as u64);
        assert!(out[..limit as usize].iter().all(|&b| b == b'x'));
        assert_eq!(&out[limit as usize..], notice.as_bytes());
    }
}
