//! `bottle-e2e`: end-to-end tests of bot-bottle. They run the real
//! `bottle-host` and `bottle-guest` binaries, real DNS clients (`dig`,
//! `getent`, Python's `getaddrinfo`), and a guest-like network namespace.
//!
//! - [`bins`]: where the built binaries are.
//! - [`upstream`]: a tiny authoritative DNS server on 127.0.0.1 standing in
//!   for the internet.
//! - [`netns`]: a fresh network + mount namespace running the guest DNS
//!   stub on 127.0.0.1:53 with its own `/etc/resolv.conf`.
//! - [`proc`]: child processes that log a ready line.
//! - [`dig`]: running `dig` and reading its answer.
//! - [`https`]: an HTTPS echo server with its own test CA.
//! - [`load`]: `dig` loops running while a test breaks something.
//! - [`channel`]: a bare DNS-channel client, to drive `bottle-host dns` alone.
//! - [`sys`]: signals, peak memory, stray processes, the fd limit.
//!
//! - [`vm`]: real-VM launches (QEMU) against a stand-in internet.
//! - [`escape`]: the escape & exfiltration suite's runner (one boot, every probe).
//! - [`hostside`]: its host-side checks: what another local user can reach.
//! - [`container`]: the container image's root filesystem in unprivileged namespaces.
//! - [`agent_image`]: the Debian agent image, found or built, and its bottle's manifest.
//! - [`standins`]: git, PyPI, npm and Anthropic API stand-ins for the agent image.
//!
//! Tests that need root or `unshare` print `skipped: <why>` and return.

pub mod agent_image;
pub mod bins;
pub mod channel;
pub mod container;
pub mod dig;
pub mod escape;
pub mod hostside;
pub mod https;
pub mod load;
pub mod netns;
pub mod proc;
pub mod standins;
pub mod sys;
pub mod tmux;
pub mod upstream;
pub mod vm;

/// Namespace tests take this lock so they run one at a time: their
/// "fast" deadlines are about the DNS path, not about CPU contention
/// between tests.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Why this machine cannot run the namespace tests, if it cannot.
pub fn netns_unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root (network namespaces need it)".into());
    }
    for tool in ["unshare", "nsenter", "ip", "mount"] {
        if !bins::on_path(tool) {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}
