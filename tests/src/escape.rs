//! The escape & exfiltration suite's runner: one VM boot runs every probe
//! of `tests/probes/*.py` as the bottle's (root) agent, a second boot
//! runs the rebinding probes under a manifest that keeps private answers
//! out. Each probe prints `PROBE <name> ok|FAIL <detail> <ms>ms`; the
//! results, the console output and what the stand-in internet saw are kept
//! in a [`Suite`] that every `probe_*` test reads.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;

use crate::https::Seen;
use crate::vm::{Testbed, TOKEN};

/// The probe script, run in the guest by `python3 -c`: the files of
/// `tests/probes/`, one per channel, in this order.
pub const SCRIPT: &str = concat!(
    include_str!("../probes/common.py"),
    include_str!("../probes/helpers.py"),
    include_str!("../probes/dns.py"),
    include_str!("../probes/net.py"),
    include_str!("../probes/proxy.py"),
    include_str!("../probes/secrets.py"),
    include_str!("../probes/tamper.py"),
    include_str!("../probes/workspace.py"),
    include_str!("../probes/boots.py"),
);

/// A host secret the agent is assumed to have read (in a repository, say):
/// the probes try to get it out in every encoding.
pub const HOST_SECRET: &str = "hs9Kq2Vx7Lm4Pw8Zr3Tn6Yb1Qd";

/// Boot plus probes, generously: TCG on a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(300);

/// What one launch produced.
#[derive(Debug, Default)]
pub struct Run {
    /// `PROBE` lines: name → the rest of the line (`ok ...` / `FAIL ...`).
    pub probes: HashMap<String, String>,
    /// Everything the launch printed.
    pub output: String,
    /// The launch's exit code.
    pub code: Option<i32>,
    /// Requests the HTTPS site received.
    pub web_seen: Vec<Seen>,
    /// Names the DNS upstream was asked.
    pub dns_names: Vec<String>,
    /// Raw upstream DNS queries that contained the host secret.
    pub dns_raw_with_secret: usize,
    /// Raw upstream DNS queries in all.
    pub dns_raw_count: usize,
    /// Command lines of the launch's children (QEMU, the vsock daemon).
    pub child_cmdlines: Vec<String>,
    /// Wall time of the launch, seconds.
    pub secs: f64,
    /// The host-side checks made while the bottle ran (main run only).
    pub host_side: std::collections::BTreeMap<&'static str, crate::hostside::Verdict>,
}

/// Both runs.
#[derive(Debug)]
pub struct Suite {
    /// The main run: every channel.
    pub main: Run,
    /// The rebinding run: private answers dropped, private upstreams refused.
    pub rebind: Run,
    /// The connector run: private answers kept, private upstreams refused.
    pub connector: Run,
}

/// Which manifest a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Testbed on loopback allowed; host secret loaded; DNS budget 30.
    Main,
    /// `allow_private = false`, `allow_private_answers = false`.
    Rebind,
    /// `allow_private = false`, `allow_private_answers = true`: the proxy's
    /// own address check is the only guard.
    Connector,
}

/// A TOML basic string holding `s`.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Written in a file beside the workspaces, outside both: no probe may
/// read it.
pub const OUTSIDE_MARK: &str = "outside-the-workspace-7Hq2";

/// The main run's shared directories and the host file beside them.
pub struct Workspaces {
    /// Shared writable at /work.
    pub rw: std::path::PathBuf,
    /// Shared read-only at /ro.
    pub ro: std::path::PathBuf,
    /// The file outside both's inode number (a guess handed to the probe).
    pub outside_ino: u64,
}

/// Make `ws/` (with a file, a symlink to the outside directory by its
/// absolute host path and one by `..`), `ro/` and `outside/secret.txt`.
pub fn workspace(bed: &Testbed) -> Workspaces {
    use std::os::unix::fs::MetadataExt;
    let root = bed.dir.path();
    let (rw, ro, outside) = (root.join("ws"), root.join("ro"), root.join("outside"));
    for d in [&rw, &ro, &outside] {
        std::fs::create_dir_all(d).expect("workspace dir");
    }
    std::fs::write(outside.join("secret.txt"), OUTSIDE_MARK).expect("outside file");
    std::fs::write(rw.join("in.txt"), "from the host\n").expect("in.txt");
    std::fs::write(ro.join("readme.txt"), "read only\n").expect("readme");
    let _ = std::os::unix::fs::symlink(&outside, rw.join("hostlink"));
    let _ = std::os::unix::fs::symlink("../outside", rw.join("uplink"));
    let outside_ino = std::fs::metadata(outside.join("secret.txt"))
        .map(|m| m.ino())
        .unwrap_or(0);
    Workspaces {
        rw,
        ro,
        outside_ino,
    }
}

/// The probe manifest for `mode`.
pub fn manifest(bed: &Testbed, mode: Mode) -> std::path::PathBuf {
    let port = bed.web.addr.port();
    let secret_file = bed.dir.path().join("host-secret");
    std::fs::write(&secret_file, HOST_SECRET).expect("secret file");
    let sha = ring::digest::digest(&ring::digest::SHA256, TOKEN.as_bytes());
    let sha: String = sha.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let rebind = vec!["api.bottle.test", "meta.rebind.test", "lan.rebind.test"];
    let (mode_name, private, private_answers, routes) = match mode {
        Mode::Main => ("main", true, true, vec!["api.bottle.test"]),
        Mode::Rebind => ("rebind", false, false, rebind),
        Mode::Connector => ("connector", false, true, rebind),
    };
    let ws = workspace(bed);
    let mut toml = format!(
        r#"[vm]
backend = "qemu"
memory_mib = 512

[agent]
command = ["/usr/bin/python3", "-c", {script}]
grace_period_ms = 2000

[agent.env]
PROBE_MODE = "{mode_name}"
PROBE_PORT = "{port}"
PROBE_SECRET = "{HOST_SECRET}"
PROBE_TOKEN_SHA256 = "{sha}"
PROBE_TOKEN_LEN = "{len}"
PROBE_TOKEN_FIRST = "{first}"
PROBE_OUTSIDE_MARK = "{OUTSIDE_MARK}"
PROBE_OUTSIDE_INO = "{ino}"
PROBE_PROTOCOL_MAJOR = "{major}"

[secrets]
token = {{ env = "BOTTLE_VMTEST_TOKEN" }}
probe = {{ file = {file} }}

[egress]
allow_private = {private}

[dns]
upstreams = ["{dns}"]
allow_private_answers = {private_answers}
extra_names = ["*.tunnel.bottle.test"]

[dns.limits]
unique_names_per_window = 30
"#,
        script = toml_str(SCRIPT),
        len = TOKEN.len(),
        first = &TOKEN[..1],
        file = toml_str(&secret_file.to_string_lossy()),
        dns = bed.dns.addr,
        ino = ws.outside_ino,
        major = bottle_shared::PROTOCOL_MAJOR,
    );
    if mode == Mode::Main {
        let _ = write!(
            toml,
            "\n[[mounts]]\nhost = {}\nguest = \"/work\"\n\n[[mounts]]\nhost = {}\nguest = \"/ro\"\nreadonly = true\n",
            toml_str(&ws.rw.to_string_lossy()),
            toml_str(&ws.ro.to_string_lossy()),
        );
    }
    for host in routes {
        let _ = write!(
            toml,
            r#"
[[egress.routes]]
host = "{host}"
ports = [{port}]
inject = {{ header = "authorization", secret = "token", format = "Bearer {{secret}}" }}
"#
        );
    }
    let p = bed.dir.path().join(format!("probes-{mode_name}.toml"));
    std::fs::write(&p, toml).expect("manifest");
    p
}

/// Boot one VM for `mode` and collect everything.
pub async fn run(mode: Mode) -> Run {
    let bed = Testbed::start().await;
    let manifest = manifest(&bed, mode);
    if mode == Mode::Main {
        // Searchable by others, so that only the bottle's own modes keep
        // the other user of the host-side checks out of its state.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bed.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod testbed dir");
    }
    let mut l = bed.launch(&manifest);
    l.wait_for("PROBES start", LIMIT).await;
    let mut host_side = std::collections::BTreeMap::new();
    if mode == Mode::Main {
        match crate::vm::banner(&l.seen, "run dir").map(std::path::PathBuf::from) {
            Some(run_dir) => {
                let target = crate::hostside::Target {
                    pid: l.pid(),
                    state_dir: bed.dir.path().join("state"),
                    audit_logs: ["audit log", "dns audit"]
                        .iter()
                        .filter_map(|label| crate::vm::banner(&l.seen, label))
                        .map(std::path::PathBuf::from)
                        .collect(),
                    run_dir,
                    secrets: vec![TOKEN.to_string(), HOST_SECRET.to_string()],
                    web_port: bed.web.addr.port(),
                };
                host_side = crate::hostside::check(&target).await;
            }
            None => {
                host_side.insert("host_side_run_dir", Err("no run dir in the banner".into()));
            }
        }
    }
    let child_cmdlines = crate::vm::children_of(l.pid())
        .into_iter()
        .filter_map(|(pid, _)| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .collect();
    let launch = l.finish(LIMIT).await;
    if mode == Mode::Main {
        workspace_after(bed.dir.path(), &mut host_side);
    }
    let mut probes = HashMap::new();
    for line in launch.output.lines() {
        if let Some(i) = line.find("PROBE ") {
            let rest = &line[i + "PROBE ".len()..];
            if let Some((name, verdict)) = rest.split_once(' ') {
                probes.insert(name.to_string(), verdict.to_string());
            }
        }
    }
    Run {
        probes,
        code: launch.code,
        secs: launch.elapsed.as_secs_f64(),
        output: launch.output,
        web_seen: bed.web.seen(),
        dns_names: bed.dns.names(),
        dns_raw_with_secret: bed.dns.raw_containing(HOST_SECRET.as_bytes()),
        dns_raw_count: bed.dns.raw_count(),
        child_cmdlines,
        host_side,
    }
}

/// After the main run: the read-only share and the outside directory
/// are as the host left them, and what the (root) agent wrote in the
/// workspace belongs to the user who ran the bottle.
fn workspace_after(
    root: &std::path::Path,
    out: &mut std::collections::BTreeMap<&'static str, crate::hostside::Verdict>,
) {
    use std::os::unix::fs::MetadataExt;
    let names = |d: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(root.join(d))
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let ro = names("ro");
    let outside = names("outside");
    out.insert(
        "host_side_workspace_readonly_unchanged",
        if ro == ["readme.txt"] && outside == ["secret.txt"] {
            Ok("ro/ and outside/ hold only what the host put there".into())
        } else {
            Err(format!("ro/ now {ro:?}, outside/ now {outside:?}"))
        },
    );
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    out.insert(
        "host_side_workspace_files_are_the_users",
        match std::fs::metadata(root.join("ws/probe-wrote.txt")) {
            Ok(m) if m.uid() == me => Ok(format!("probe-wrote.txt is uid {me}")),
            Ok(m) => Err(format!("probe-wrote.txt is uid {}, not {me}", m.uid())),
            Err(e) => Err(format!("ws/probe-wrote.txt: {e}")),
        },
    );
}

impl Run {
    /// Panic unless host-side check `name` found the way in closed.
    pub fn assert_host_side(&self, name: &str) {
        match self.host_side.get(name) {
            Some(Ok(detail)) => eprintln!("{name}: {detail}"),
            Some(Err(why)) => panic!("HOST SIDE {name} open: {why}"),
            None => panic!(
                "no host-side check {name} (ran: {:?})",
                self.host_side.keys().collect::<Vec<_>>()
            ),
        }
    }

    /// Panic unless probe `name` printed `ok`.
    pub fn assert_probe(&self, name: &str) {
        match self.probes.get(name) {
            Some(v) if v.starts_with("ok") => {}
            Some(v) => panic!("PROBE {name} {v}"),
            None => panic!(
                "no PROBE {name} line (launch exit {:?}); output:\n{}",
                self.code, self.output
            ),
        }
    }
}

/// The host secret in every form the probes send it: raw, hex, base64,
/// base64url, base32 and percent-encoded; JSON- and `\x`-escaped, base64
/// of its hex and hex of its base64. None may reach the upstream, in any
/// letter case.
pub fn secret_forms() -> Vec<String> {
    let b = HOST_SECRET.as_bytes();
    let b64 = |t: &[u8]| base64::engine::general_purpose::STANDARD.encode(t);
    let hex = data_encoding::HEXLOWER.encode(b);
    vec![
        HOST_SECRET.to_string(),
        hex.clone(),
        b64(b),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b),
        data_encoding::BASE32_NOPAD.encode(b),
        b.iter().map(|c| format!("%{c:02X}")).collect(),
        b.iter().map(|c| format!("\\u{c:04x}")).collect(),
        b.iter().map(|c| format!("\\x{c:02x}")).collect(),
        b64(hex.as_bytes()),
        data_encoding::HEXLOWER.encode(b64(b).as_bytes()),
    ]
}

/// Every byte a request carried to the upstream (path, headers, body).
pub fn request_bytes(s: &Seen) -> Vec<u8> {
    let mut v = s.path.clone().into_bytes();
    for (n, val) in &s.headers {
        v.extend_from_slice(n.as_bytes());
        v.push(b':');
        v.extend_from_slice(val.as_bytes());
        v.push(b'\n');
    }
    v.extend_from_slice(&s.body);
    v
}

/// True if `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
