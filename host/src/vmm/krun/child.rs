//! The libkrun child process. `krun_start_enter` takes over the process that
//! calls it (it `exit()`s with the guest's exit code), so the supervisor
//! re-executes itself as `bottle-host __krun-child --spec <file>` and waits
//! for that child like any VMM process.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use super::{detect, execute, plan, KrunLib, VmSpec};

/// The hidden subcommand the child runs.
pub const CHILD_SUBCOMMAND: &str = "__krun-child";

/// Where the supervisor (`backend.rs`) writes the spec:
/// `<vsock_base>.krun.json`, beside the vsock sockets (a directory the
/// supervisor owns).
pub fn spec_path(spec: &VmSpec) -> PathBuf {
    let mut p = spec.vsock_base.as_os_str().to_owned();
    p.push(".krun.json");
    PathBuf::from(p)
}

/// Write `spec` as JSON to `path`, readable by the owner only (the guest
/// environment may hold secrets).
pub fn write_spec(spec: &VmSpec, path: &Path) -> anyhow::Result<()> {
    let json = serde_json::to_vec(spec).context("serialising the VM spec")?;
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(&json)
        .with_context(|| format!("writing {}", path.display()))
}

/// The command that runs the child: `exe __krun-child --spec <spec_path>`.
pub fn child_command(exe: &Path, spec_path: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg(CHILD_SUBCOMMAND).arg("--spec").arg(spec_path);
    cmd
}

/// Read and delete the spec file the supervisor wrote.
pub fn read_spec(spec_path: &Path) -> anyhow::Result<VmSpec> {
    let bytes =
        std::fs::read(spec_path).with_context(|| format!("reading {}", spec_path.display()))?;
    // The spec may carry secrets in guest_env; it has served its purpose.
    let _ = std::fs::remove_file(spec_path);
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", spec_path.display()))
}

/// Body of `bottle-host __krun-child --spec <file>`: load libkrun, plan and
/// boot. Does not return when the VM starts; returns an error otherwise.
pub fn child_main(spec_path: &Path) -> anyhow::Result<i32> {
    let spec = read_spec(spec_path)?;
    let lib = detect()?;
    child_main_with(&lib, &spec)
}

/// [`child_main`] with the library and spec already in hand.
pub fn child_main_with(lib: &KrunLib, spec: &VmSpec) -> anyhow::Result<i32> {
    let calls = plan(spec)?;
    tracing::debug!(library = %lib.name, calls = calls.len(), "entering libkrun");
    match execute(lib, &calls)? {}
}
