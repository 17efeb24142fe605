//! A writable workspace shared by a daemon running as root
//! (docs/workspaces.md, "Special files"): `virtiofsd` started with
//! exactly `daemon_args`, driven without a VM by
//! `fixtures/vfs_drive.py` (a tiny vhost-user frontend and FUSE client).
//! The guest may not make device nodes or set `security.capability` or
//! `trusted.*`; ordinary files, FIFOs and `user.*` attributes still work.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bottle_host::vmm::virtiofs::{daemon_args, FsShare, IdMap, FS_DAEMON};

/// Wait for `child` at most `limit`; kill it past that.
fn wait_or_kill(child: &mut Child, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

fn found(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_root_daemon_refuses_device_nodes_and_file_capabilities() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root (the daemon's capabilities are what is tested)");
        return;
    }
    if !found(FS_DAEMON) || !found("python3") {
        eprintln!("skipped: needs {FS_DAEMON} (images/virtiofsd.sh) and python3");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let sock = tmp.path().join("s");
    let share = FsShare {
        tag: "ws0".into(),
        dir: ws.clone(),
        readonly: false,
        owner: Some(IdMap::default()), // agent root, host root
    };
    let mut daemon = Command::new(FS_DAEMON)
        .args(daemon_args(&share, &sock, true))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vfs_drive.py");
    let cap_setuid = "0100000280000000000000000000000000000000";
    let mut client = Command::new("python3")
        .arg(&driver)
        .arg(&sock)
        .args(["mknod", "sda", "060666", "8", "0"])
        .args(["mknod", "mem", "020666", "1", "1"])
        .args(["mknod", "fifo", "010644", "0", "0"])
        .args(["create", "f", "0755"])
        .args(["setxattr", "f", "security.capability", cap_setuid])
        .args(["setxattr", "f", "trusted.x", "41"])
        .args(["setxattr", "f", "user.x", "41"])
        .args(["getxattr", "f", "user.x"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let done = wait_or_kill(&mut client, Duration::from_secs(30));
    let out = client.wait_with_output().unwrap();
    let _ = daemon.kill();
    wait_or_kill(&mut daemon, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        done && out.status.success(),
        "driver: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = |prefix: &str| -> i32 {
        let line = text
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(result("INIT"), 0, "{text}");
    const EPERM: i32 = -1;
    assert_eq!(result("MKNOD sda"), EPERM, "{text}");
    assert_eq!(result("MKNOD mem"), EPERM, "{text}");
    assert_eq!(result("SETXATTR f security.capability"), EPERM, "{text}");
    assert_eq!(result("SETXATTR f trusted.x"), EPERM, "{text}");
    // Ordinary use still works.
    assert_eq!(result("MKNOD fifo"), 0, "{text}");
    assert_eq!(result("CREATE f"), 0, "{text}");
    assert_eq!(result("SETXATTR f user.x"), 0, "{text}");
    assert_eq!(result("GETXATTR f user.x"), 0, "{text}");
    // And the host agrees.
    assert!(!ws.join("sda").exists() && !ws.join("mem").exists());
    assert!(xattr_absent(&ws.join("f"), "security.capability"));
}

/// The host's view, through python3 (no `unsafe` here).
fn xattr_absent(p: &Path, name: &str) -> bool {
    let code = "import os, sys\ntry:\n os.getxattr(sys.argv[1], sys.argv[2])\nexcept OSError:\n sys.exit(0)\nsys.exit(1)";
    let mut c = Command::new("python3")
        .args(["-c", code])
        .arg(p)
        .arg(name)
        .spawn()
        .unwrap();
    assert!(wait_or_kill(&mut c, Duration::from_secs(10)));
    c.wait().unwrap().success()
}
