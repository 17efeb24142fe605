//! `bottle-host launch` as an ordinary user (issue 15, "Without root"): the
//! demo-like agent's checks pass in a real VM (QEMU/TCG needs no
//! privilege), the state, CA, audit logs and run directory live in the
//! user's XDG state directory, and no file outside the user's home
//! appeared or changed owner.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bottle_e2e::vm::{demo_agent, vm_unavailable, Launching, Testbed, DEMO_CHECKS, TOKEN};
use tokio::process::Command;

const USER: &str = "bottle-ci";
const LIMIT: Duration = Duration::from_secs(240);

/// Files and directories owned by `uid` under `roots`, outside `home`.
fn owned_outside(uid: u32, roots: &[PathBuf], home: &Path) -> Vec<String> {
    let out = std::process::Command::new("find")
        .args(roots)
        .args(["-xdev", "-uid", &uid.to_string(), "-print"])
        .stderr(Stdio::null())
        .output()
        .expect("find");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !Path::new(l).starts_with(home))
        .map(str::to_string)
        .collect()
}

/// A copy of the binary and the image the user can read wherever the
/// checkout lives (it may be under root's private home).
fn readable_copy(dir: &Path) -> PathBuf {
    let bin = dir.join("bottle-host");
    std::fs::copy(bottle_e2e::bins::host(), &bin).expect("copy bottle-host");
    let img = dir.join("image");
    std::fs::create_dir(&img).unwrap();
    let src = bottle_e2e::vm::image_dir();
    for f in ["vmlinuz", "initramfs.cpio", "modules", "modules.fs"] {
        if src.join(f).exists() {
            std::fs::copy(src.join(f), img.join(f)).expect("copy image");
        }
    }
    for p in [dir, &img] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_as_an_ordinary_user_writes_only_its_own_directories() {
    if let Some(why) = vm_unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let _serial = bottle_e2e::serial().await;
    let (uid, gid) = bottle_e2e::sys::ensure_user(USER);
    let home = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(home.path(), Some(uid), Some(gid)).unwrap();
    let tools = tempfile::tempdir().unwrap();
    let bin = readable_copy(tools.path());

    let bed = Testbed::start().await;
    std::fs::set_permissions(bed.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // A workspace in the user's home: what the agent (root in the guest)
    // writes there belongs to the user, and the user's files show as the
    // agent's, so it may write them.
    let ws = home.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("mine.txt"), "the user's\n").unwrap();
    for p in [&ws, &ws.join("mine.txt")] {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
    }
    let ws_sh = r#"
check ws_agent_owns sh -c '[ "$(stat -c %u:%g /work/mine.txt)" = 0:0 ]'
check ws_agent_writes sh -c 'echo more >> /work/mine.txt && echo new > /work/agent.txt'
"#;
    let script = format!(
        "{}{ws_sh}{}",
        bottle_e2e::vm::CHECK_SH,
        demo_agent(bed.web.addr.port())
    );
    let extra = format!(
        "\n[[mounts]]\nhost = \"{}\"\nguest = \"/work\"\n",
        ws.display()
    );
    let manifest = bed.manifest(&script, &extra);

    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let roots: Vec<PathBuf> = ["/tmp", "/var/tmp", "/dev/shm", "/run", "/etc", "/usr/local"]
        .iter()
        .map(PathBuf::from)
        .chain([checkout])
        .filter(|p| p.exists())
        .collect();
    let before = owned_outside(uid, &roots, home.path());
    assert!(before.is_empty(), "{USER} already owns {before:?}");

    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .args(["--clear-groups", "--"])
        .arg(&bin)
        .arg("launch")
        .arg(&manifest)
        .arg("--upstream-ca")
        .arg(bed.dir.path().join("upstream-ca.pem"))
        .current_dir(home.path())
        // A login's environment: no XDG variables, so the defaults apply
        // (state in ~/.local/state, the run directory under it).
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home.path())
        .env("USER", USER)
        .env("BOTTLE_VMTEST_TOKEN", TOKEN)
        .env("BOTTLE_IMAGE_DIR", tools.path().join("image"))
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let run = Launching::spawn(cmd).finish(LIMIT).await;
    for check in DEMO_CHECKS
        .iter()
        .chain(&["ws_agent_owns", "ws_agent_writes"])
    {
        run.assert_ok(check);
    }
    let owner = |p: &Path| std::fs::metadata(p).map(|m| (m.uid(), m.gid())).unwrap();
    assert_eq!(
        owner(&ws.join("agent.txt")),
        (uid, gid),
        "agent.txt on the host"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("mine.txt")).unwrap(),
        "the user's\nmore\n"
    );
    assert_eq!(run.code, Some(42), "{}", run.output);

    let state = home.path().join(".local/state/bot-bottle");
    let mode = |p: &Path| std::fs::metadata(p).map(|m| (m.uid(), m.mode() & 0o777));
    assert_eq!(mode(&state).unwrap(), (uid, 0o700), "state dir");
    assert_eq!(mode(&state.join("ca.key")).unwrap(), (uid, 0o600));
    let logs = bottle_e2e::vm::bottle_dirs(&state);
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(mode(&logs[0]).unwrap(), (uid, 0o700));
    for f in ["audit.jsonl", "dns-audit.jsonl"] {
        assert_eq!(mode(&logs[0].join(f)).unwrap(), (uid, 0o600), "{f}");
    }
    assert!(
        run.output
            .contains(&state.join("run").display().to_string()),
        "the run directory is not under the state directory:\n{}",
        run.output
    );
    let left: Vec<_> = std::fs::read_dir(state.join("run")).unwrap().collect();
    assert!(left.is_empty(), "run directory left behind: {left:?}");

    let after = owned_outside(uid, &roots, home.path());
    assert!(after.is_empty(), "files outside {USER}'s home: {after:?}");
}
