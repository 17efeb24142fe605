//! A bottle whose root is a directory shared over virtio-fs (issue 12):
//! the guest's overlay over it, the move into it as PID 1, and every
//! guard of the demo agent (DNS filter, proxy, injection, DLP, status)
//! working inside it; plus `[[mounts]]` workspaces, writable and
//! read-only, with the host's copy of the image never changing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bottle_e2e::vm::{demo_agent, vm_unavailable, Testbed, CHECK_SH, DEMO_CHECKS};

const LIMIT: Duration = Duration::from_secs(240);

/// Why this cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    if let Some(why) = vm_unavailable() {
        return Some(why);
    }
    let img = bottle_e2e::vm::image_dir();
    if !img.join("initramfs-boot.cpio").is_file() || !img.join("rootfs").is_dir() {
        return Some(format!(
            "{} has no initramfs-boot.cpio or rootfs/ (bash images/build.sh)",
            img.display()
        ));
    }
    if !bottle_e2e::bins::on_path("virtiofsd") {
        return Some("virtiofsd is not installed (bash images/virtiofsd.sh)".into());
    }
    None
}

/// Every file under `root` with its size and mode, sorted (a cheap
/// fingerprint: the test checks the image directory did not change).
fn listing(root: &Path) -> Vec<String> {
    let out = std::process::Command::new("find")
        .arg(root)
        .args(["-printf", "%P %s %m %U\n"])
        .output()
        .expect("find");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// The workspace and image checks the agent runs before the demo's.
const WORKSPACE_SH: &str = r#"
check image_root sh -c 'mount | grep -q "^overlay on / type overlay" && [ -x /demo/agent.sh ]'
check image_writable sh -c 'echo new > /etc/written-in-guest && cat /etc/written-in-guest'
check guest_bin sh -c 'command -v bottle-guest && bottle-guest status | grep -q "protocol 3"'
check ws_read sh -c 'grep -q from-the-host /work/in.txt'
check ws_write sh -c 'echo from-the-guest > /work/out.txt && mkdir -p /work/sub/dir && ls -ln /work'
check ws_owner sh -c '[ "$(stat -c %u /work/in.txt)" = 0 ]'
check ro_read sh -c 'grep -q reference /ref/readme.txt'
check ro_refused sh -c '! touch /ref/x 2>/dev/null && ! rm /ref/readme.txt 2>/dev/null'
check ro_flag sh -c 'grep " /ref " /proc/mounts | grep -q "ro,"'
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_directory_root_keeps_every_guard_and_mounts_workspaces() {
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let _serial = bottle_e2e::serial().await;
    let bed = Testbed::start().await;
    let root: PathBuf = bottle_e2e::vm::image_dir().join("rootfs");
    let before = listing(&root);
    let ws = bed.dir.path().join("ws");
    let refdir = bed.dir.path().join("ref");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::create_dir_all(&refdir).unwrap();
    std::fs::write(ws.join("in.txt"), "from-the-host\n").unwrap();
    std::fs::write(refdir.join("readme.txt"), "reference\n").unwrap();

    let script = format!(
        "{CHECK_SH}{WORKSPACE_SH}{}",
        demo_agent(bed.web.addr.port())
    );
    let extra = format!(
        "\n[[mounts]]\nhost = \"{}\"\nguest = \"/work\"\n\n[[mounts]]\nhost = \"{}\"\nguest = \"/ref\"\nreadonly = true\n",
        ws.display(),
        refdir.display()
    );
    let manifest = bed.manifest(&script, &extra);
    let text = std::fs::read_to_string(&manifest).unwrap().replacen(
        "memory_mib = 512\n",
        &format!("memory_mib = 512\nimage = \"rootfs:{}\"\n", root.display()),
        1,
    );
    std::fs::write(&manifest, text).unwrap();

    let run = bed.launch(&manifest).finish(LIMIT).await;
    for check in [
        "image_root",
        "image_writable",
        "guest_bin",
        "ws_read",
        "ws_write",
        "ws_owner",
        "ro_read",
        "ro_refused",
        "ro_flag",
    ]
    .iter()
    .chain(DEMO_CHECKS)
    {
        run.assert_ok(check);
    }
    assert_eq!(run.code, Some(42), "{}", run.output);
    assert!(
        run.output.contains("bottle: mount       "),
        "the banner names the mounts:\n{}",
        run.output
    );

    // The guest's writes landed in the workspace, as the host user...
    use std::os::unix::fs::MetadataExt;
    let out = std::fs::metadata(ws.join("out.txt")).expect("out.txt on the host");
    // SAFETY: geteuid has no preconditions and cannot fail.
    assert_eq!(out.uid(), unsafe { libc::geteuid() });
    assert!(ws.join("sub/dir").is_dir());
    // ...and nowhere else: the image directory and the read-only share are
    // unchanged.
    assert_eq!(listing(&root), before, "the image directory changed");
    assert!(!root.join("etc/written-in-guest").exists());
    let ro: Vec<_> = std::fs::read_dir(&refdir).unwrap().flatten().collect();
    assert_eq!(ro.len(), 1, "{ro:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_missing_workspace_is_a_clear_error_before_boot() {
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let bed = Testbed::start().await;
    let extra = "\n[[mounts]]\nhost = \"no-such-dir\"\nguest = \"/work\"\n";
    let manifest = bed.manifest("exit 0", extra);
    let run = bed.launch(&manifest).finish(Duration::from_secs(30)).await;
    assert_eq!(run.code, Some(2), "a manifest error: {}", run.output);
    assert!(
        run.output.contains("mounts[0].host") && run.output.contains("no-such-dir"),
        "{}",
        run.output
    );
    assert!(
        !run.output.contains("VM boot"),
        "nothing booted:\n{}",
        run.output
    );
}

/// An OCI image layout made from `root` with umoci: the agent's command,
/// user, directory and environment come from its config.
fn oci_layout(dir: &Path, root: &Path) -> Result<String, String> {
    let run = |args: &[&str]| -> Result<(), String> {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .map_err(|e| format!("{}: {e}", args[0]))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    let layout = dir.join("oci");
    let bundle = dir.join("bundle");
    let image = format!("{}:agent", layout.display());
    run(&["umoci", "init", "--layout", &layout.to_string_lossy()])?;
    run(&["umoci", "new", "--image", &image])?;
    run(&[
        "umoci",
        "unpack",
        "--image",
        &image,
        &bundle.to_string_lossy(),
    ])?;
    run(&[
        "cp",
        "-a",
        &format!("{}/.", root.display()),
        &bundle.join("rootfs").to_string_lossy(),
    ])?;
    std::fs::create_dir_all(bundle.join("rootfs/home/agent")).map_err(|e| e.to_string())?;
    std::os::unix::fs::chown(bundle.join("rootfs/home/agent"), Some(1000), Some(1000))
        .map_err(|e| e.to_string())?;
    run(&[
        "umoci",
        "repack",
        "--image",
        &image,
        &bundle.to_string_lossy(),
    ])?;
    run(&[
        "umoci", "config", "--image", &image,
        "--config.user", "agent",
        "--config.workingdir", "/home/agent",
        "--config.env", "FROM_IMAGE=yes",
        "--config.env", "PATH=/usr/local/bin:/usr/bin:/bin:/sbin",
        "--config.entrypoint", "/bin/sh",
        "--config.cmd", "-c",
        "--config.cmd", "echo CHECK config $([ \"$FROM_IMAGE:$(id -u):$(pwd):$MANIFEST\" = yes:1000:/home/agent:set ] && echo ok || echo FAIL $FROM_IMAGE $(id -u) $(pwd)); touch /home/agent/mine && echo CHECK home ok; exit 9",
    ])?;
    Ok(format!("oci:{image}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_oci_image_config_is_the_agent_and_is_cached_by_digest() {
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    if !bottle_e2e::bins::on_path("umoci") {
        eprintln!("skipped: umoci is not installed (apt-get install umoci)");
        return;
    }
    let _serial = bottle_e2e::serial().await;
    let bed = Testbed::start().await;
    let src = match oci_layout(bed.dir.path(), &bottle_e2e::vm::image_dir().join("rootfs")) {
        Ok(s) => s,
        Err(e) => panic!("making the OCI layout: {e}"),
    };
    // No [agent] command: the image's Entrypoint + Cmd; the manifest's env
    // is added to the image's.
    let manifest = bed.dir.path().join("oci.toml");
    std::fs::write(
        &manifest,
        format!(
            "[vm]\nbackend = \"qemu\"\nimage = \"{src}\"\n\n[agent]\nenv = {{ MANIFEST = \"set\" }}\n"
        ),
    )
    .unwrap();
    let first = bed.launch(&manifest).finish(LIMIT).await;
    first.assert_ok("config");
    first.assert_ok("home");
    assert_eq!(first.code, Some(9), "{}", first.output);
    assert!(
        first.output.contains("layer 1/"),
        "the first launch unpacks:\n{}",
        first.output
    );
    let second = bed.launch(&manifest).finish(LIMIT).await;
    second.assert_ok("config");
    assert_eq!(second.code, Some(9), "{}", second.output);
    assert!(
        !second.output.contains("layer 1/"),
        "the second launch uses the cache:\n{}",
        second.output
    );

    let state = bed.dir.path().join("state");
    let ls = std::process::Command::new(bottle_e2e::bins::host())
        .args(["image", "ls", "--json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&ls.stdout).expect("image ls --json");
    let images = list.as_array().expect("a list");
    assert_eq!(images.len(), 1, "{list}");
    let digest = images[0]["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert!(
        first.output.contains(&digest),
        "the banner names the digest"
    );
    // The agent's writes went to its overlay, not the cache.
    let cached = state.join("images/sha256").join(&digest["sha256:".len()..]);
    assert!(
        cached.join("rootfs/home/agent").is_dir(),
        "{}",
        cached.display()
    );
    assert!(!cached.join("rootfs/home/agent/mine").exists());
    let rm = std::process::Command::new(bottle_e2e::bins::host())
        .args(["image", "rm", &digest[..19], "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    assert!(!cached.exists());
}

/// An image with no shell and nothing else: the init still mounts,
/// writes /etc/resolv.conf, installs the CA, runs its services and binds
/// itself in; the agent is `bottle-guest status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_an_image_without_a_shell_still_gets_every_service() {
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let _serial = bottle_e2e::serial().await;
    let bed = Testbed::start().await;
    let root = bed.dir.path().join("empty-root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0::/:/nonexistent\n").unwrap();
    let manifest = bed.dir.path().join("noshell.toml");
    std::fs::write(
        &manifest,
        format!(
            "[vm]\nbackend = \"qemu\"\nimage = \"rootfs:{}\"\n\n[agent]\ncommand = [\"/usr/local/bin/bottle-guest\", \"status\"]\n",
            root.display()
        ),
    )
    .unwrap();
    let run = bed.launch(&manifest).finish(LIMIT).await;
    assert_eq!(run.code, Some(0), "{}", run.output);
    for want in ["connected", "dns", "ca "] {
        assert!(run.output.contains(want), "no {want:?} in:\n{}", run.output);
    }
    // Nothing was written into the host's directory.
    let names: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["etc"], "{names:?}");
    assert_eq!(std::fs::read_dir(root.join("etc")).unwrap().count(), 1);
}
