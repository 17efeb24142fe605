//! Process-level checks for fault and load tests: signals, peak memory,
//! processes left behind, and the open-file limit.

use std::path::Path;

/// Send `sig` to `pid`.
pub fn signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    // SAFETY: kill has no memory preconditions; a stale pid only fails.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

/// A field of `/proc/PID/status` in kB (`VmHWM`, `VmRSS`), if readable.
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Pids of live processes whose command line mentions `needle` (other
/// than this test process).
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Children of `pid` (from every process's `PPid`).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| status_kb(*p, "PPid") == Some(u64::from(pid)))
        .collect()
}

/// Raise the soft open-file limit to `want` (at most the hard limit);
/// returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    lim.rlim_cur = want.min(lim.rlim_max);
    // SAFETY: `lim` is a valid rlimit no higher than the hard limit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    lim.rlim_cur
}

/// Is `p` a Unix socket (or anything) on disk?
pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// Latency percentiles of `samples` (sorted in place): (p50, p99, max).
pub fn percentiles(samples: &mut [std::time::Duration]) -> [std::time::Duration; 3] {
    samples.sort_unstable();
    let at = |q: f64| {
        let n = samples.len();
        if n == 0 {
            return std::time::Duration::ZERO;
        }
        let i = ((n as f64 - 1.0) * q).round() as usize;
        samples[i.min(n - 1)]
    };
    [at(0.50), at(0.99), at(1.0)]
}

/// The uid and gid of the system user `name` (no login shell, no home),
/// created when missing: tests that run something as an ordinary user.
pub fn ensure_user(name: &str) -> (u32, u32) {
    let id = |flag: &str| {
        std::process::Command::new("id")
            .args([flag, name])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
    };
    if id("-u").is_none() {
        let st = std::process::Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(name)
            .status()
            .expect("useradd");
        assert!(st.success(), "useradd {name} failed");
    }
    (id("-u").expect("uid"), id("-g").expect("gid"))
}
