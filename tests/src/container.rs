//! The container image without a container engine: the root filesystem
//! `deploy/container/rootfs.sh` assembles (the same script the
//! `Containerfile` runs), booted by `deploy/container/sandbox.sh` as an
//! ordinary user in unprivileged user, mount, PID and network namespaces,
//! with the stand-in internet (`bottle-testbed`) started inside the same
//! network namespace (loopback is per namespace).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::vm::{children_of, image_dir, manifest_toml, TOKEN};

/// The user the sandbox runs as (outside its namespaces).
pub const USER: &str = "bottle-ci";
/// The testbed's addresses inside the sandbox's network namespace.
pub const WEB_PORT: u16 = 8443;
/// The testbed's DNS zone.
pub const DNS: &str = "127.0.0.1:5354";

/// The checkout.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Why the sandbox cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    if let Some(why) = crate::vm::vm_unavailable() {
        return Some(why);
    }
    for tool in ["unshare", "setpriv", "ip", "busybox", "useradd"] {
        if !crate::bins::on_path(tool) {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    let (uid, gid) = crate::sys::ensure_user(USER);
    let userns = std::process::Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .args([
            "--clear-groups",
            "--",
            "unshare",
            "--user",
            "--map-root-user",
        ])
        .args(["--mount", "--pid", "--net", "--fork", "true"])
        .current_dir("/")
        .status();
    if !userns.is_ok_and(|s| s.success()) {
        return Some(
            "an ordinary user cannot create user namespaces here \
             (sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone \
             or an AppArmor restriction)"
                .into(),
        );
    }
    None
}

/// The vsock daemon `images/vsock-daemon.sh` installed.
fn vsock_daemon() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("vhost-device-vsock"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        Path::new(&std::env::var_os("HOME").unwrap_or_default())
            .join(".cargo/bin/vhost-device-vsock")
    })
}

/// A root filesystem and what a sandboxed run of it needs, in a private
/// temporary directory that the sandbox's user can read.
#[derive(Debug)]
pub struct Container {
    /// Everything below.
    pub dir: tempfile::TempDir,
    /// The root filesystem.
    pub root: PathBuf,
    /// Mounted on `/etc/bottle` (the Job's ConfigMap); owned by the user,
    /// who writes the testbed's CA here.
    pub config: PathBuf,
    /// The sandbox script, the testbed and its setup script.
    tools: PathBuf,
    uid: u32,
    gid: u32,
}

impl Container {
    /// Assemble the root filesystem with `deploy/container/rootfs.sh`
    /// from this build's `bottle-host` and guest image.
    pub fn build() -> Container {
        let (uid, gid) = crate::sys::ensure_user(USER);
        let dir = tempfile::tempdir().expect("tempdir");
        let open = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(dir.path(), open.clone()).unwrap();
        let root = dir.path().join("rootfs");
        let t = std::time::Instant::now();
        let st = std::process::Command::new("bash")
            .arg(repo().join("deploy/container/rootfs.sh"))
            .arg(&root)
            .env("BOTTLE_HOST_BIN", crate::bins::host())
            .env("BOTTLE_IMAGE_DIR", image_dir())
            .env("VSOCK_DAEMON", vsock_daemon())
            .status()
            .expect("run rootfs.sh");
        assert!(st.success(), "deploy/container/rootfs.sh failed");
        eprintln!("rootfs.sh took {:?}", t.elapsed());

        let config = dir.path().join("config");
        let tools = dir.path().join("tools");
        for d in [&config, &tools] {
            std::fs::create_dir(d).unwrap();
            std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap();
        }
        std::fs::copy(
            repo().join("deploy/container/sandbox.sh"),
            tools.join("sandbox.sh"),
        )
        .expect("copy sandbox.sh");
        std::fs::copy(
            crate::bins::binary("bottle-testbed"),
            tools.join("bottle-testbed"),
        )
        .expect("copy bottle-testbed");
        // The stand-in internet, started inside the sandbox's network
        // namespace before the container; ready within 10 s or the run fails.
        let setup = format!(
            r#"set -eu
t={tools}
"$t/bottle-testbed" --dns {DNS} --https 127.0.0.1:{WEB_PORT} \
  --ca-out {config}/upstream-ca.pem --expect-auth "Bearer {TOKEN}" >"$t/testbed.log" 2>&1 &
for _ in $(seq 100); do
  grep -q 'testbed ready' "$t/testbed.log" && exit 0
  sleep 0.1
done
echo "testbed not ready after 10 s:" >&2; cat "$t/testbed.log" >&2; exit 1
"#,
            tools = tools.display(),
            config = config.display(),
        );
        std::fs::write(tools.join("setup.sh"), setup).unwrap();
        Container {
            dir,
            root,
            config,
            tools,
            uid,
            gid,
        }
    }

    /// Write `name` in the config directory (`/etc/bottle/NAME` inside).
    pub fn config_file(&self, name: &str, text: &str) {
        let p = self.config.join(name);
        std::fs::write(&p, text).unwrap();
        std::os::unix::fs::chown(&p, Some(self.uid), Some(self.gid)).unwrap();
    }

    /// A demo-like manifest for the testbed inside the sandbox.
    pub fn manifest(agent_script: &str) -> String {
        manifest_toml(agent_script, "", "", WEB_PORT, DNS)
    }

    /// The file the sandbox's standard output goes to.
    pub fn stdout_path(&self) -> PathBuf {
        self.dir.path().join("stdout")
    }

    /// `sandbox.sh` as the ordinary user, with the testbed set up inside,
    /// the token passed as the Job's Secret would be, and `entry_args` for
    /// `bottle-entrypoint`. Standard output goes to [`Self::stdout_path`],
    /// standard error is piped.
    pub fn command(&self, entry_args: &[&str]) -> Command {
        let stdout = std::fs::File::create(self.stdout_path()).expect("stdout file");
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--clear-groups", "--", "bash"])
            .arg(self.tools.join("sandbox.sh"))
            .arg("--config")
            .arg(&self.config)
            .args(["--env", "BOTTLE_VMTEST_TOKEN", "--setup"])
            .arg(format!("bash {}", self.tools.join("setup.sh").display()))
            .arg(&self.root)
            .arg("--")
            .args(entry_args)
            .current_dir(&self.tools)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("BOTTLE_VMTEST_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

/// Every descendant of `pid` (children first), with its command name.
pub fn descendants(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for (c, comm) in children_of(p) {
            todo.push(c);
            out.push((c, comm));
        }
    }
    out
}

/// The value of `field` in `/proc/PID/status` (`CapEff`, `NSpid`, ...).
pub fn status_field(pid: u32, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}
