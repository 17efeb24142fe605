//! The Debian agent image (`images/agent-image.sh`) for real-VM tests:
//! where it is, building it when asked, and the manifest of a bottle that
//! boots it with a workspace and routes to the stand-ins
//! ([`crate::standins`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long building the image may take (cold: mmdebstrap and npm).
const BUILD_LIMIT: Duration = Duration::from_secs(1200);

/// The image's cache entry (`<cache>/agent-<hash>`): `$BOTTLE_AGENT_IMAGE`
/// if set, else what `images/agent-image.sh --check` prints; built first
/// when `BOTTLE_BUILD_AGENT_IMAGE=1`. `Err` says why there is none.
pub fn agent_image_dir() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("BOTTLE_AGENT_IMAGE") {
        let p = PathBuf::from(p);
        return if p.join("complete").is_file() {
            Ok(p)
        } else {
            Err(format!(
                "BOTTLE_AGENT_IMAGE={} is not a built agent image",
                p.display()
            ))
        };
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/agent-image.sh");
    if let Some(p) = run_script(&script, &["--check"], Duration::from_secs(30))? {
        return Ok(p);
    }
    if std::env::var("BOTTLE_BUILD_AGENT_IMAGE").as_deref() != Ok("1") {
        return Err("the agent image is not built (bash images/agent-image.sh, \
                    or BOTTLE_BUILD_AGENT_IMAGE=1 to build it from the test)"
            .into());
    }
    eprintln!("building the agent image (images/agent-image.sh)");
    run_script(&script, &[], BUILD_LIMIT)?
        .ok_or_else(|| "images/agent-image.sh failed (its output is above)".to_string())
}

/// Run the image script; `Ok(Some(path))` from its last stdout line when
/// it succeeds, `Ok(None)` when it exits non-zero.
fn run_script(script: &Path, args: &[&str], limit: Duration) -> Result<Option<PathBuf>, String> {
    let mut child = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} took over {limit:?}", script.display()));
            }
        }
    };
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        use std::io::Read;
        let _ = s.read_to_string(&mut out);
    }
    Ok(status
        .success()
        .then(|| out.lines().last().map(PathBuf::from))
        .flatten())
}

/// The `[vm] image` value for the image in `dir`: its OCI layout, which
/// the host verifies, unpacks into the test's state directory and shares
/// read-only (the same path a user's image takes).
pub fn image_ref(dir: &Path) -> String {
    format!("oci:{}:latest", dir.join("oci").display())
}

/// The API key the host injects for the model stand-in (never in the
/// guest).
pub const ANTHROPIC_KEY: &str = "sk-ant-vmtest-real-4d9c2b7e1f3a";
/// What the agent holds instead.
pub const PLACEHOLDER_KEY: &str = "sk-ant-placeholder";

/// Ports and addresses a [`manifest`] routes to.
#[derive(Debug)]
pub struct Ports {
    /// The testbed's echo site (`api.bottle.test`, token injected).
    pub web: u16,
    /// The stand-ins (`git`, `pypi`, `npm`, `anthropic` `.bottle.test`).
    pub standins: u16,
    /// The DNS zone, `IP:PORT`.
    pub dns: String,
}

/// A manifest booting `image` (a `[vm] image` value) as user `agent` in
/// `/work` (the host's `workspace`), running `script` with bash; git may
/// fetch but not push, PyPI and npm are read-only, the model API gets the
/// real key.
pub fn manifest(image: &str, workspace: &Path, script: &str, p: &Ports) -> String {
    assert!(!script.contains("'''"), "script must not contain '''");
    let (web, si, dns) = (p.web, p.standins, &p.dns);
    format!(
        r#"[vm]
backend = "qemu"
memory_mib = 2048
image = "{image}"

[agent]
command = ["/bin/bash", "-c", '''{script}''']
user = "agent"
workdir = "/work"
grace_period_ms = 2000

[agent.env]
ANTHROPIC_BASE_URL = "https://anthropic.bottle.test:{si}"
ANTHROPIC_API_KEY = "{PLACEHOLDER_KEY}"
DISABLE_AUTOUPDATER = "1"
DISABLE_TELEMETRY = "1"
DISABLE_ERROR_REPORTING = "1"
CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1"
PIP_DISABLE_PIP_VERSION_CHECK = "1"
NPM_CONFIG_UPDATE_NOTIFIER = "false"

[secrets]
token = {{ env = "BOTTLE_VMTEST_TOKEN" }}
anthropic = {{ env = "BOTTLE_VMTEST_ANTHROPIC_KEY" }}

[[mounts]]
host = "{ws}"
guest = "/work"

[[egress.routes]]
host = "api.bottle.test"
ports = [{web}]
inject = {{ header = "authorization", secret = "token", format = "Bearer {{secret}}" }}

[[egress.routes]]
host = "git.bottle.test"
ports = [{si}]
methods = ["GET", "POST"]
paths = ["/repo.git/info/refs", "/repo.git/git-upload-pack"]

[[egress.routes]]
host = "pypi.bottle.test"
ports = [{si}]
methods = ["GET"]

[[egress.routes]]
host = "npm.bottle.test"
ports = [{si}]
methods = ["GET"]

[[egress.routes]]
host = "anthropic.bottle.test"
ports = [{si}]
methods = ["POST"]
paths = ["/v1/"]
inject = {{ header = "x-api-key", secret = "anthropic" }}

[egress]
allow_private = true

[dns]
upstreams = ["{dns}"]
allow_private_answers = true
"#,
        ws = workspace.display()
    )
}
