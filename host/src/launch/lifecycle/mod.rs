//! A running bottle's name and control socket, and what it answers.
//!
//! Each `launch` owns its VM and serves `<state>/names/<NAME>.sock` (the
//! state directory is the user's own, 0700; the socket is 0600 and checks
//! each peer's uid). The other verbs (`ps`, `stop`, `kill`, `logs`,
//! `audit`) connect to it; no daemon is involved. One request per
//! connection: a JSON line in, a JSON line out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bottle_shared::transport::{connect, BoxStream, Listener};
use bottle_shared::Address;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

/// Longest request line accepted.
pub const MAX_REQUEST: usize = 4096;
/// How long a client may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `ps` waits for the guest's counters.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// What `ps` shows of a bottle.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Info {
    /// The bottle's name.
    pub name: String,
    /// Its id (`<state>/bottles/<id>`).
    pub id: String,
    /// The manifest.
    pub manifest: PathBuf,
    /// Kernel and initramfs (or root) it boots.
    pub image: String,
    /// VMM backend and accelerator.
    pub backend: String,
    /// Start time, Unix milliseconds.
    pub started_unix_ms: u64,
    /// The `bottle-host launch` process.
    pub pid: u32,
    /// Its log directory.
    pub logs: PathBuf,
    /// The agent: `booting`, `running`, `restarting`, `exited`, `stopping`.
    pub agent_state: String,
    /// The agent's pid in the guest.
    pub agent_pid: Option<u32>,
    /// Restarts so far.
    pub restarts: u32,
    /// The agent's last exit code.
    pub last_exit: Option<i32>,
    /// The guest's own status (`bottle-guest status --json`): its DNS and
    /// egress counters. `None` when it did not answer in time.
    pub guest: Option<serde_json::Value>,
}

/// A request on the control socket.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The bottle's [`Info`].
    Ps,
    /// Stop gracefully: SIGTERM to the agent, SIGKILL after `grace_ms`.
    Stop {
        /// Grace period.
        grace_ms: u64,
    },
    /// Kill the VM now.
    Kill,
    /// Run a process in the guest beside the agent; after the answer line
    /// the connection carries its session (frames as on the session
    /// channel: `SessionInput` in, `SessionOutput` out).
    Exec {
        /// argv.
        command: Vec<String>,
        /// A terminal.
        tty: bool,
        /// Input from the client.
        stdin: bool,
        /// Terminal rows.
        rows: u16,
        /// Terminal columns.
        cols: u16,
    },
}

/// The answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    /// The bottle's info (every answer carries it).
    pub info: Option<Info>,
    /// Why the request failed.
    pub error: Option<String>,
}

/// What the control socket asks of the supervision loop.
pub enum Command {
    /// Stop gracefully.
    Stop(Duration),
    /// Kill the VM.
    Kill,
    /// The guest's status JSON, when it comes.
    Status(oneshot::Sender<String>),
    /// Run a process in the guest; its session stream, once attached.
    Exec(bottle_shared::message::ExecSpec, oneshot::Sender<BoxStream>),
}

/// Follow the agent's state in `info`.
pub fn note_event(info: &mut Info, ev: &bottle_shared::message::ProcessEvent) {
    use bottle_shared::message::ProcessEvent as E;
    match ev {
        E::Started { pid, .. } => {
            if info.agent_state != "stopping" {
                info.agent_state = "running".into();
            }
            info.agent_pid = Some(*pid);
        }
        E::Exited { code, .. } => {
            info.last_exit = Some(*code);
            info.agent_pid = None;
            if info.agent_state != "stopping" {
                info.agent_state = "exited".into();
            }
        }
        E::Restarting { .. } => {
            info.restarts = info.restarts.saturating_add(1);
            info.agent_state = "restarting".into();
        }
        E::StartFailed { .. } => info.agent_state = "failed".into(),
        _ => {}
    }
}

/// Docker's rule: a letter or digit, then letters, digits, `_`, `.`, `-`;
/// at most 64 characters here (socket paths are short).
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        bail!("bad bottle name {name:?}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit");
    }
    Ok(())
}

/// A name for a bottle launched without `--name`: `bottle-` and six hex
/// digits from the clock and the pid.
pub fn generate_name() -> String {
    format!("bottle-{:06x}", random_u32() >> 8)
}

/// A random number from the system's generator.
pub fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // The system's generator does not fail on Linux; were it to, the
    // clock still makes names and ids differ.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        b = (t ^ std::process::id().rotate_left(16)).to_ne_bytes();
    }
    u32::from_ne_bytes(b)
}

/// `<state>/names`, private.
pub fn names_dir(state: &Path) -> Result<PathBuf> {
    let d = state.join("names");
    crate::hardening::private_dir(&d)?;
    Ok(d)
}

/// The control socket of bottle `name`.
pub fn socket_path(state: &Path, name: &str) -> PathBuf {
    state.join("names").join(format!("{name}.sock"))
}

/// The lock file of bottle `name`: `<state>/names/<NAME>.lock`.
pub fn lock_path(state: &Path, name: &str) -> PathBuf {
    state.join("names").join(format!("{name}.lock"))
}

/// An exclusive `flock` on a name's lock file, held by the launch that
/// owns the name for as long as it runs (the kernel releases it when the
/// process ends, however it ends). Only its holder binds the name's
/// socket or removes a stale one. The holder removes the file when it
/// lets go (so generated names leave nothing behind); whoever takes a
/// lock checks that its file is still the one at the path, since a file
/// removed (and another made) while it waited guards nothing.
#[derive(Debug)]
pub struct NameLock {
    file: std::fs::File,
    path: PathBuf,
}

impl Drop for NameLock {
    fn drop(&mut self) {
        // Still held here: nobody else can have replaced the file.
        if same_file(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Is `file` the file at `path` now?
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl NameLock {
    /// Take the lock at `path` (created `0600` if missing) without
    /// waiting; `Ok(None)` when another holds it.
    fn try_take_at(path: &Path) -> std::io::Result<Option<NameLock>> {
        use std::os::fd::AsRawFd;
        loop {
            let file = crate::hardening::open_private_append(path)?;
            // SAFETY: flock(2) on a descriptor `file` owns; no memory is
            // passed.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                if same_file(&file, path) {
                    return Ok(Some(NameLock {
                        file,
                        path: path.to_path_buf(),
                    }));
                }
                continue; // its holder removed it on the way out: again
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) => return Ok(None),
                _ => return Err(e),
            }
        }
    }

    /// Take bottle `name`'s lock without waiting; `Ok(None)` when a
    /// running launch holds it.
    pub fn try_take(state: &Path, name: &str) -> Result<Option<NameLock>> {
        names_dir(state)?;
        let path = lock_path(state, name);
        NameLock::try_take_at(&path).with_context(|| format!("name lock {}", path.display()))
    }
}

/// Connect to the socket at `path`; `Ok(None)` when nobody is there: no
/// file, or a file nobody listens on (its `bottle-host` was killed).
async fn connect_path(path: &Path) -> std::io::Result<Option<BoxStream>> {
    let addr = Address::Unix(path.into());
    match tokio::time::timeout(Duration::from_secs(2), connect(&addr)).await {
        Ok(Ok(s)) => Ok(Some(s)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(None),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// [`connect_path`], and a socket file nobody listens on is removed, but
/// only if its name's lock is free (taken and released here): a launch
/// holding it may be about to listen on a socket it has just bound.
async fn dial_path(path: &Path) -> std::io::Result<Option<BoxStream>> {
    let s = connect_path(path).await?;
    if s.is_none() && path.exists() {
        if let Ok(Some(_lock)) = NameLock::try_take_at(&path.with_extension("lock")) {
            let _ = std::fs::remove_file(path);
        }
    }
    Ok(s)
}

/// Whether a socket file has a live bottle behind it; a stale one is
/// removed (when its name's lock is free).
pub async fn is_live(path: &Path) -> bool {
    match dial_path(path).await {
        Ok(s) => s.is_some(),
        // Busy or not ours to judge: keep it.
        Err(_) => path.exists(),
    }
}

/// A connection to bottle `name`'s control socket (one, not a probe and
/// then another).
pub async fn dial(state: &Path, name: &str) -> Result<BoxStream> {
    check_name(name)?;
    match dial_path(&socket_path(state, name)).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => bail!("no running bottle named {name:?} (bottle-host ps lists them)"),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            bail!("bottle {name:?} did not answer")
        }
        Err(e) => Err(e).with_context(|| format!("bottle {name:?}")),
    }
}

/// A name taken by this launch: its control socket's listener and the
/// name's lock. Fields drop in order: the socket goes before the lock is
/// released, so the next launch of that name never finds ours.
#[derive(Debug)]
pub struct Claim {
    /// The control socket.
    pub listener: Listener,
    _lock: NameLock,
}

fn taken(name: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "a bottle named {name:?} is already running (bottle-host ps; bottle-host stop {name})"
    )
}

/// Take `name` for this launch: its lock, held until the [`Claim`] is
/// dropped; then its socket, after removing a stale one. A held lock, or
/// a socket that answers (a launch from before name locks), is a clash.
pub async fn claim(state: &Path, name: &str) -> Result<Claim> {
    check_name(name)?;
    let Some(lock) = NameLock::try_take(state, name)? else {
        return Err(taken(name));
    };
    let path = socket_path(state, name);
    match connect_path(&path).await {
        Ok(None) => {}
        // Answering, or busy (not ours to judge): someone has it.
        Ok(Some(_)) | Err(_) => return Err(taken(name)),
    }
    // Ours to clean: we hold the lock, and nobody answers.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing the stale {}", path.display()))
        }
        _ => {}
    }
    let listener = Listener::bind_owner_only(&Address::Unix(path.clone()))
        .await
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    Ok(Claim {
        listener,
        _lock: lock,
    })
}

/// Send `req` to bottle `name` and return its answer.
pub async fn request(state: &Path, name: &str, req: &Request) -> Result<Info> {
    let mut s = dial(state, name).await?;
    let exchange = async {
        let mut line = serde_json::to_string(req)?;
        line.push('\n');
        s.write_all(line.as_bytes()).await?;
        let mut answer = String::new();
        BufReader::new(s)
            .take(16 << 20)
            .read_line(&mut answer)
            .await?;
        anyhow::Ok(serde_json::from_str::<Reply>(answer.trim())?)
    };
    let reply = tokio::time::timeout(REQUEST_TIMEOUT + STATUS_TIMEOUT, exchange)
        .await
        .with_context(|| format!("bottle {name:?} did not answer"))?
        .with_context(|| format!("bottle {name:?}"))?;
    match (reply.info, reply.error) {
        (_, Some(e)) => bail!("bottle {name:?}: {e}"),
        (Some(i), None) => Ok(i),
        (None, None) => bail!("bottle {name:?}: empty answer"),
    }
}

/// `ps`: every running bottle's [`Info`], in name order. The bottles are
/// asked all at once, so one slow to answer (each has its own deadline)
/// does not hold up the others; one that ends meanwhile, or does not
/// answer, is left out.
pub async fn ps_all(state: &Path) -> Vec<Info> {
    let mut asks = tokio::task::JoinSet::new();
    for (n, name) in list(state).await.into_iter().enumerate() {
        let state = state.to_path_buf();
        asks.spawn(async move { (n, request(&state, &name, &Request::Ps).await) });
    }
    let mut got = Vec::new();
    while let Some(done) = asks.join_next().await {
        if let Ok((n, Ok(info))) = done {
            got.push((n, info));
        }
    }
    got.sort_by_key(|(n, _)| *n);
    got.into_iter().map(|(_, info)| info).collect()
}

/// Names of the running bottles under `state` (stale sockets removed).
pub async fn list(state: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let Ok(rd) = std::fs::read_dir(state.join("names")) else {
        return names;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Some(name) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".sock"))
        else {
            continue;
        };
        if is_live(&p).await {
            names.push(name.to_string());
        }
    }
    names.sort();
    names
}

mod server;
pub use server::{read_line, serve};

#[cfg(test)]
mod tests;
