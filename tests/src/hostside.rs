//! The escape suite's host side (issue #16): while a real bottle runs,
//! what another local user (uid 65534, `nobody`) can reach of it, and what
//! its processes expose to the same user. Each check returns `Ok(detail)`
//! when the way in is closed and `Err(detail)` when it is open; the
//! `probe_host_side_*` tests read them (`docs/security.md`).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// The other local user the checks act as.
pub const OTHER_UID: u32 = 65534;

/// A check's verdict: `Ok` closed, `Err` open (or not measurable).
pub type Verdict = Result<String, String>;

/// Where the running bottle keeps things.
#[derive(Debug, Clone)]
pub struct Target {
    /// The `bottle-host launch` process.
    pub pid: u32,
    /// Its state directory.
    pub state_dir: PathBuf,
    /// Its proxy and DNS audit logs.
    pub audit_logs: Vec<PathBuf>,
    /// Its run directory.
    pub run_dir: PathBuf,
    /// Values that must appear in no child's environment or command line.
    pub secrets: Vec<String>,
    /// The testbed's HTTPS port (the `curl -x` abuse targets it).
    pub web_port: u16,
}

/// Run every check against a running bottle.
pub async fn check(t: &Target) -> BTreeMap<&'static str, Verdict> {
    let mut out = BTreeMap::new();
    out.insert("host_side_no_loopback_listener", no_listener(t.pid));
    out.insert("host_side_sockets_refuse_other_uid", sockets(t).await);
    out.insert("host_side_state_private", state(t).await);
    out.insert("host_side_children_hold_no_secret", no_secret(t));
    out.insert("host_side_curl_x_abuse_refused", curl_x(t).await);
    out
}

/// `pid` and all its descendants.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let kids: Vec<u32> = crate::vm::children_of(all[i])
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        all.extend(kids);
        i += 1;
    }
    all
}

fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    let mut s = BTreeSet::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return s;
    };
    for fd in fds.flatten() {
        if let Ok(link) = std::fs::read_link(fd.path()) {
            let l = link.to_string_lossy();
            if let Some(n) = l.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                if let Ok(n) = n.parse() {
                    s.insert(n);
                }
            }
        }
    }
    s
}

/// One line of `/proc/net/{tcp,udp}{,6}`: local address, remote address,
/// state, inode.
struct NetEntry {
    local: String,
    remote: String,
    state: String,
    inode: u64,
}

fn net_table(name: &str) -> Vec<NetEntry> {
    let text = std::fs::read_to_string(format!("/proc/net/{name}")).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(NetEntry {
                local: f.get(1)?.to_string(),
                remote: f.get(2)?.to_string(),
                state: f.get(3)?.to_string(),
                inode: f.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

fn unset_remote(remote: &str) -> bool {
    remote.split(':').all(|part| part.chars().all(|c| c == '0'))
}

/// No TCP listener and no unconnected UDP socket belongs to the bottle's
/// processes (bottle-host, QEMU, the vsock daemon).
fn no_listener(pid: u32) -> Verdict {
    let procs = tree(pid);
    let mut inodes = BTreeSet::new();
    for p in &procs {
        inodes.extend(socket_inodes(*p));
    }
    if inodes.is_empty() {
        return Err(format!("no sockets found for {procs:?}"));
    }
    let mut open = Vec::new();
    for table in ["tcp", "tcp6"] {
        for e in net_table(table) {
            if e.state == "0A" && inodes.contains(&e.inode) {
                open.push(format!("{table} LISTEN {}", e.local));
            }
        }
    }
    for table in ["udp", "udp6"] {
        for e in net_table(table) {
            if inodes.contains(&e.inode) && unset_remote(&e.remote) {
                open.push(format!("{table} unconnected {}", e.local));
            }
        }
    }
    if open.is_empty() {
        Ok(format!(
            "{} sockets of {} processes, none listening",
            inodes.len(),
            procs.len()
        ))
    } else {
        Err(open.join(", "))
    }
}

/// Run a Python snippet as [`OTHER_UID`]; its stdout.
async fn as_other(script: &str, args: &[String]) -> Result<String, String> {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new("setpriv")
            .arg(format!("--reuid={OTHER_UID}"))
            .arg(format!("--regid={OTHER_UID}"))
            .arg("--clear-groups")
            .arg("--")
            // Debian's, not a per-user shim the other user cannot run.
            .arg("/usr/bin/python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| "the other user's check did not finish in 30 s".to_string())?
    .map_err(|e| format!("setpriv: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the other user's check failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Lines `PATH open` / `PATH closed:ERR`; `Err` lists the open ones.
fn verdict_of(out: &str, what: &str) -> Verdict {
    let open: Vec<&str> = out.lines().filter(|l| l.ends_with(" open")).collect();
    let n = out.lines().count();
    if n == 0 {
        return Err(format!("nothing {what}"));
    }
    if open.is_empty() {
        Ok(format!("{n} {what}, all refused"))
    } else {
        Err(open.join("; "))
    }
}

const CONNECT_PY: &str = r#"
import socket, sys
for p in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect(p)
        s.sendall(b"x")
        got = s.recv(1)
        print(p, "open" if got else "closed:eof-after-accept")
    except OSError as e:
        print(p, "closed:" + type(e).__name__)
    finally:
        s.close()
"#;

/// Every socket in the run directory (the guest's ports, the VMM's and the
/// daemon's) refuses another uid. The files are listed as root; the
/// connects are made as [`OTHER_UID`].
async fn sockets(t: &Target) -> Verdict {
    let Ok(entries) = std::fs::read_dir(&t.run_dir) else {
        return Err(format!("cannot list {}", t.run_dir.display()));
    };
    let socks: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|ft| ft.is_socket()))
        .map(|e| e.path().display().to_string())
        .collect();
    if socks.len() < 4 {
        return Err(format!("expected at least 4 sockets, found {socks:?}"));
    }
    let out = as_other(CONNECT_PY, &socks).await?;
    verdict_of(&out, "sockets")
}

const READ_PY: &str = r#"
import os, sys
for p in sys.argv[1:]:
    try:
        if os.path.isdir(p):
            os.listdir(p)
        else:
            open(p, "rb").read(1)
        print(p, "open")
    except OSError as e:
        print(p, "closed:" + type(e).__name__)
"#;

fn mode(p: &Path) -> Option<u32> {
    std::fs::metadata(p)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

/// The state directory, both audit logs, the CA key and the run directory
/// and its logs are private: modes checked as the owner, reads tried as
/// [`OTHER_UID`] (the state directory's parent is made searchable by the
/// test, so only the bottle's own modes stand in the way).
async fn state(t: &Target) -> Verdict {
    if t.audit_logs.len() != 2 {
        return Err(format!("audit logs not in the banner: {:?}", t.audit_logs));
    }
    let mut paths: Vec<PathBuf> = vec![
        t.state_dir.clone(),
        t.state_dir.join("ca.key"),
        t.run_dir.clone(),
    ];
    paths.extend(t.audit_logs.iter().cloned());
    if let Some(dir) = t.audit_logs.first().and_then(|p| p.parent()) {
        paths.push(dir.to_path_buf());
    }
    if let Ok(entries) = std::fs::read_dir(&t.run_dir) {
        paths.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log")),
        );
    }
    let mut loose = Vec::new();
    for p in &paths {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        match mode(p) {
            Some(m) if m == want => {}
            Some(m) => loose.push(format!("{} mode {m:04o}, want {want:04o}", p.display())),
            None => loose.push(format!("{} missing", p.display())),
        }
    }
    if !loose.is_empty() {
        return Err(loose.join("; "));
    }
    let args: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let out = as_other(READ_PY, &args).await?;
    verdict_of(&out, "paths")
}

/// No secret value in any child's environment or command line, nor in
/// bottle-host's own command line.
fn no_secret(t: &Target) -> Verdict {
    let procs = tree(t.pid);
    if procs.len() < 3 {
        return Err(format!(
            "expected QEMU and the vsock daemon, found {procs:?}"
        ));
    }
    let mut found = Vec::new();
    for p in &procs {
        let mut files = vec!["cmdline"];
        if *p != t.pid {
            files.push("environ");
        }
        for f in files {
            let Ok(data) = std::fs::read(format!("/proc/{p}/{f}")) else {
                continue;
            };
            for s in &t.secrets {
                if crate::escape::contains(&data, s.as_bytes()) {
                    found.push(format!("pid {p} {f}"));
                }
            }
        }
    }
    if found.is_empty() {
        Ok(format!(
            "{} processes' cmdline and {} children's environ hold no secret",
            procs.len(),
            procs.len() - 1
        ))
    } else {
        Err(found.join(", "))
    }
}

/// Loopback TCP listening ports on this machine (any owner).
fn loopback_tcp_ports() -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        for e in net_table(table) {
            if e.state != "0A" {
                continue;
            }
            let Some((ip, port)) = e.local.rsplit_once(':') else {
                continue;
            };
            // 0100007F = 127.0.0.1, 00000000 = any; v6 ::1 and ::.
            let reachable = ip.ends_with("7F")
                || ip.chars().all(|c| c == '0')
                || ip == "00000000000000000000000001000000";
            if let (true, Ok(p)) = (reachable, u16::from_str_radix(port, 16)) {
                ports.insert(p);
            }
        }
    }
    ports
}

/// `curl -sk` as [`OTHER_UID`] with `args`; the HTTP code it printed
/// (`000` when nothing answered), or why curl could not run.
async fn curl_as_other(args: Vec<String>) -> Result<String, String> {
    let out = Command::new("setpriv")
        .arg(format!("--reuid={OTHER_UID}"))
        .arg(format!("--regid={OTHER_UID}"))
        .args([
            "--clear-groups",
            "--",
            "/usr/bin/curl",
            "-sk",
            "--max-time",
            "4",
        ])
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(10), out).await {
        Ok(Ok(o)) => {
            let code = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if code.len() == 3 {
                Ok(code)
            } else {
                Err(format!(
                    "curl as the other user printed {code:?}: {}",
                    String::from_utf8_lossy(&o.stderr)
                ))
            }
        }
        Ok(Err(e)) => Err(format!("setpriv curl: {e}")),
        Err(_) => Err("curl did not end in 10 s".into()),
    }
}

/// The abuse from issue #16: every loopback TCP port tried as a proxy by
/// another user, asking for the bottle's route with the placeholder the
/// guest holds. None may answer 2xx (the testbed would have received the
/// injected token; the suite also checks it saw no `/host-abuse`). A
/// control first: the same user reaches the testbed directly, so curl
/// does run and a refusal below is the proxy's absence, not a broken
/// client.
async fn curl_x(t: &Target) -> Verdict {
    let control = curl_as_other(vec![
        "--resolve".into(),
        format!("api.bottle.test:{}:127.0.0.1", t.web_port),
        format!(
            "https://api.bottle.test:{}/baseline-host-side-control",
            t.web_port
        ),
    ])
    .await?;
    if control != "200" {
        return Err(format!("control: the testbed answered {control}, not 200"));
    }
    let ports = loopback_tcp_ports();
    if ports.is_empty() {
        return Err("no loopback TCP listener at all (the testbed has two)".into());
    }
    let url = format!("https://api.bottle.test:{}/host-abuse", t.web_port);
    let tries: Vec<_> = ports
        .iter()
        .map(|p| {
            let args = vec![
                "-H".to_string(),
                "authorization: Bearer placeholder".into(),
                "-x".into(),
                format!("http://127.0.0.1:{p}"),
                url.clone(),
            ];
            let p = *p;
            tokio::spawn(async move { (p, curl_as_other(args).await) })
        })
        .collect();
    let mut open = Vec::new();
    for t in tries {
        match t.await {
            Ok((_, Ok(code))) if !code.starts_with('2') => {}
            Ok((p, Ok(code))) => open.push(format!("port {p} answered {code}")),
            Ok((p, Err(e))) => open.push(format!("port {p}: {e}")),
            Err(e) => open.push(format!("task: {e}")),
        }
    }
    if open.is_empty() {
        Ok(format!(
            "control 200; {} loopback ports tried as a proxy, none served",
            ports.len()
        ))
    } else {
        Err(open.join(", "))
    }
}
