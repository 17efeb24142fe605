//! Real-VM tests: `bottle-host launch` under QEMU (TCG here), with the
//! stand-in internet on 127.0.0.1 ([`Testbed`]: the test DNS zone, where
//! `*.bottle.test` is 127.0.0.1, and an HTTPS echo site with its own CA).
//!
//! A test writes a manifest whose agent is a shell script; the script
//! prints `CHECK <name> ok|FAIL <detail>` lines; [`Launch::check`] finds
//! them in the console output. Tests that cannot run here (no QEMU, no
//! vsock daemon, no image) print `skipped: <why>`; `.ci/run` installs and
//! builds all three, so in CI they run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::https::Https;
use crate::upstream::Upstream;

/// The token the proxy injects in VM tests (the agent sends a placeholder).
pub const TOKEN: &str = "vmtest-token-5f1c2e9a7b3d";

/// Why real-VM tests cannot run here, if they cannot.
pub fn vm_unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    if !crate::bins::on_path("qemu-system-x86_64") {
        return Some(
            "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)".into(),
        );
    }
    let home_daemon = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".cargo/bin/vhost-device-vsock"))
        .is_some_and(|p| p.is_file());
    if !crate::bins::on_path("vhost-device-vsock") && !home_daemon {
        return Some("vhost-device-vsock is not installed (bash images/vsock-daemon.sh)".into());
    }
    let img = image_dir();
    if !img.join("vmlinuz").is_file() || !img.join("initramfs.cpio").is_file() {
        return Some(format!(
            "no guest image in {} (bash images/build.sh)",
            img.display()
        ));
    }
    None
}

/// The image directory `images/build.sh` fills.
pub fn image_dir() -> PathBuf {
    std::env::var_os("BOTTLE_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.bottle/image"))
}

/// The stand-in internet.
#[derive(Debug)]
pub struct Testbed {
    /// DNS zone.
    pub dns: Upstream,
    /// HTTPS echo site (certificate for `bottle.test` and `*.bottle.test`).
    pub web: Https,
    /// A directory for manifests, the CA file and state.
    pub dir: tempfile::TempDir,
}

impl Testbed {
    /// Start both servers.
    pub async fn start() -> Testbed {
        let dns = Upstream::start().await;
        let web = Https::start(
            "127.0.0.1:0",
            &["bottle.test", "*.bottle.test"],
            Some(format!("Bearer {TOKEN}")),
        )
        .await
        .expect("https testbed");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("upstream-ca.pem"), &web.ca_pem).expect("ca");
        Testbed { dns, web, dir }
    }

    /// A manifest: `agent_script` run by `/bin/sh -c`, a route to
    /// `api.bottle.test` on the testbed's port with the token injected,
    /// `*.tunnel.bottle.test` resolvable, and `extra` TOML appended.
    pub fn manifest(&self, agent_script: &str, extra: &str) -> PathBuf {
        self.manifest_with_agent(agent_script, "", extra)
    }

    /// [`Self::manifest`] with `agent_extra` TOML added to `[agent]`.
    pub fn manifest_with_agent(
        &self,
        agent_script: &str,
        agent_extra: &str,
        extra: &str,
    ) -> PathBuf {
        let toml = manifest_toml(
            agent_script,
            agent_extra,
            extra,
            self.web.addr.port(),
            &self.dns.addr.to_string(),
        );
        let p = self.dir.path().join("bottle.toml");
        std::fs::write(&p, toml).expect("manifest");
        p
    }

    /// `bottle-host launch` for `manifest`, started (not waited for).
    pub fn launch(&self, manifest: &Path) -> Launching {
        let mut cmd = Command::new(crate::bins::host());
        cmd.arg("launch");
        Launching::spawn(self.launch_args(cmd, manifest))
    }

    /// `cmd` (a `bottle-host` to run) with the launch arguments and
    /// environment for `manifest`: the testbed's state directory and CA,
    /// the token, the image.
    pub fn launch_args(&self, mut cmd: Command, manifest: &Path) -> Command {
        // The console on stderr too: failures then show the guest's log.
        cmd.arg(manifest)
            .arg("--console")
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .arg("--upstream-ca")
            .arg(self.dir.path().join("upstream-ca.pem"))
            .env("BOTTLE_VMTEST_TOKEN", TOKEN)
            .env("BOTTLE_IMAGE_DIR", image_dir())
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// The proxy's audit log lines, of every bottle launched from here.
    pub fn proxy_audit(&self) -> String {
        self.logs("audit.jsonl")
    }

    /// The DNS filter's audit log lines, of every bottle launched from here.
    pub fn dns_audit(&self) -> String {
        self.logs("dns-audit.jsonl")
    }

    /// `name` of every bottle (`state/bottles/<id>/name`), concatenated.
    fn logs(&self, name: &str) -> String {
        bottle_dirs(&self.dir.path().join("state"))
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join(name)).ok())
            .collect()
    }
}

/// The text of a [`Testbed::manifest_with_agent`] manifest for a testbed
/// whose HTTPS site is on `web_port` and DNS zone on `dns` (`IP:PORT`).
pub fn manifest_toml(
    agent_script: &str,
    agent_extra: &str,
    extra: &str,
    web_port: u16,
    dns: &str,
) -> String {
    assert!(!agent_script.contains("'''"), "script must not contain '''");
    format!(
        r#"[vm]
backend = "qemu"
memory_mib = 512

[agent]
command = ["/bin/sh", "-c", '''{agent_script}''']
grace_period_ms = 2000
{agent_extra}

[secrets]
token = {{ env = "BOTTLE_VMTEST_TOKEN" }}

[[egress.routes]]
host = "api.bottle.test"
ports = [{web_port}]
inject = {{ header = "authorization", secret = "token", format = "Bearer {{secret}}" }}

[egress]
allow_private = true

[dns]
upstreams = ["{dns}"]
allow_private_answers = true
extra_names = ["*.tunnel.bottle.test"]
{extra}
"#
    )
}

/// The per-bottle log directories under a state directory
/// (`<state>/bottles/<id>`), oldest first.
pub fn bottle_dirs(state: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(state.join("bottles"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// The value after `label` in a launch's banner (`bottle: run dir  PATH`).
pub fn banner(lines: &[String], label: &str) -> Option<String> {
    lines.iter().find_map(|l| {
        let rest = l.split_once(&format!("bottle: {label}"))?.1.trim();
        Some(rest.split(" (").next().unwrap_or(rest).to_string())
    })
}

/// A launch in progress: its output arrives line by line.
#[derive(Debug)]
pub struct Launching {
    /// The `bottle-host launch` process.
    pub child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every line so far (stdout and stderr interleaved).
    pub seen: Vec<String>,
    started: Instant,
}

impl Launching {
    /// Start `cmd` (a launch) and follow its output.
    pub fn spawn(mut cmd: Command) -> Launching {
        let mut child = cmd.spawn().expect("start bottle-host launch");
        let (tx, lines) = mpsc::unbounded_channel();
        // Standard output may go elsewhere (a file); standard error is piped.
        let out = child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn AsyncRead + Send + Unpin>);
        let err = child.stderr.take().expect("stderr");
        for s in out
            .into_iter()
            .chain([Box::new(err) as Box<dyn AsyncRead + Send + Unpin>])
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut l = BufReader::new(s).lines();
                while let Ok(Some(line)) = l.next_line().await {
                    eprintln!("[launch] {line}");
                    let _ = tx.send(line);
                }
            });
        }
        Launching {
            child,
            lines,
            seen: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Wait for a line containing `what`; panics with the output after
    /// `limit`.
    pub async fn wait_for(&mut self, what: &str, limit: Duration) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.contains(what) {
                        return line;
                    }
                }
                Ok(None) | Err(_) => panic!(
                    "no line containing {what:?} within {limit:?}; output:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Take the lines that have arrived, without waiting.
    pub fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// Wait for the launch to exit (up to `limit`) and collect the rest.
    pub async fn finish(mut self, limit: Duration) -> Launch {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(s) => s.expect("wait"),
            Err(_) => {
                let _ = self.child.kill().await;
                panic!(
                    "launch did not exit within {limit:?}; output:\n{}",
                    self.seen.join("\n")
                );
            }
        };
        // The readers end when the pipes close.
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(5), self.lines.recv()).await
        {
            self.seen.push(line);
        }
        Launch {
            code: status.code(),
            output: self.seen.join("\n"),
            elapsed: self.started.elapsed(),
        }
    }

    /// The launch process's pid.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }
}

/// A finished launch.
#[derive(Debug)]
pub struct Launch {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Everything it printed, console included.
    pub output: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Launch {
    /// The `CHECK <name> ...` line for `name` (from `CHECK` on, whatever
    /// the console printed before it on that line); panics if absent.
    pub fn check(&self, name: &str) -> &str {
        let prefix = format!("CHECK {name} ");
        self.output
            .lines()
            .find_map(|l| l.find(&prefix).map(|i| &l[i..]))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{}", self.output))
    }

    /// Assert the check passed (its line says `ok`).
    pub fn assert_ok(&self, name: &str) {
        let line = self.check(name);
        assert!(
            line.starts_with(&format!("CHECK {name} ok")),
            "{line}\nfull output:\n{}",
            self.output
        );
    }
}

/// Pids of every process whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // comm is in parentheses and may hold spaces: split after the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map(|x| x.1).unwrap_or("").to_string();
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid == Some(pid) {
            out.push((child, comm));
        }
    }
    out
}

/// True while process `pid` exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next())
                .is_some_and(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// The shell helper every agent script starts with: `check NAME CMD...`
/// prints `CHECK NAME ok` or `CHECK NAME FAIL <output>`, and `fails CMD`
/// inverts a command.
pub const CHECK_SH: &str = r#"
check() {
  name=$1; shift
  if out=$("$@" 2>&1); then echo "CHECK $name ok $(echo "$out" | head -2 | tr '\n' ' ')"
  else echo "CHECK $name FAIL $(echo "$out" | head -3 | tr '\n' ' ')"; fi
}
fails() { ! "$@"; }
# ms CMD...: run CMD, print its duration in ms on stderr's stead (stdout last line)
ms() { python3 -c 'import subprocess,sys,time; t=time.monotonic(); r=subprocess.run(sys.argv[1:]); print(int((time.monotonic()-t)*1000)); sys.exit(r.returncode)' "$@"; }
"#;

/// The demo-like agent: real tools (`getent`, `curl`, Python, `dnsq`)
/// check what may and may not leave; it exits 42. `PORT` is the testbed's
/// HTTPS port.
const DEMO_AGENT_SH: &str = r#"
site=https://api.bottle.test:PORT
check only_lo sh -c '[ "$(ls /sys/class/net)" = lo ] && [ "$(ip -o link | wc -l)" = 1 ]'
check resolv_conf grep -x 'nameserver 127.0.0.1' /etc/resolv.conf
check getent_allowed getent hosts api.bottle.test
check curl_https sh -c "curl -sS --max-time 60 -H 'authorization: Bearer placeholder' $site/hello | grep -x 'hello from upstream'"
check python_https python3 -c "import urllib.request as u; assert u.urlopen('$site/py', timeout=60).read() == b'hello from upstream\n'"
check denied_nxdomain_fast sh -c 'out=$(dnsq evil.example.com A); echo "$out"; echo "$out" | grep -q "^NXDOMAIN " && [ "$(echo "$out" | awk "{print \$5}")" -lt 1000 ]'
check getaddrinfo_denied_fast python3 -c '
import socket, time
t = time.monotonic()
try:
    socket.getaddrinfo("evil.example.com", 443)
    raise SystemExit("resolved!")
except socket.gaierror as e:
    ms = (time.monotonic() - t) * 1000
    print(e, round(ms))
    assert ms < 1000, ms
'
check txt_refused sh -c 'dnsq api.bottle.test TXT | grep "^REFUSED "'
check null_refused sh -c 'dnsq api.bottle.test NULL | grep "^REFUSED "'
check tunnel_hex_blocked sh -c 'dnsq 6a3f9c0d1e2b4a5968778695a4b3c2d1e0f9a8b7.tunnel.bottle.test A | grep "^NXDOMAIN "'
check tunnel_plain_allowed sh -c 'dnsq www.tunnel.bottle.test A | grep "^NOERROR 1 "'
check dlp_blocked sh -c "curl -sS --max-time 60 -o /dev/null -w '%{http_code}' '$site/x?k=ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5' | grep -x 403"
check denied_host_403 sh -c "curl -sS --max-time 60 -o /dev/null https://example.com/ 2>&1 | grep 'response 403'"
check status bottle-guest status
exit 42
"#;

/// [`DEMO_AGENT_SH`] with the check helper, for the testbed on `port`.
pub fn demo_agent(port: u16) -> String {
    format!(
        "{CHECK_SH}{}",
        DEMO_AGENT_SH.replace("PORT", &port.to_string())
    )
}

/// Every `CHECK` line [`demo_agent`] prints.
pub const DEMO_CHECKS: &[&str] = &[
    "only_lo",
    "resolv_conf",
    "getent_allowed",
    "curl_https",
    "python_https",
    "denied_nxdomain_fast",
    "getaddrinfo_denied_fast",
    "txt_refused",
    "null_refused",
    "tunnel_hex_blocked",
    "tunnel_plain_allowed",
    "dlp_blocked",
    "denied_host_403",
    "status",
];
