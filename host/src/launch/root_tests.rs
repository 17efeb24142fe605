use std::path::Path;

use super::*;

fn manifest(text: &str) -> Manifest {
    crate::manifest::parse(text, Path::new("/x/bottle.toml")).unwrap()
}

#[test]
fn manifest_values_override_the_image_config() {
    let config = ImageConfig {
        entrypoint: vec!["/usr/bin/node".into()],
        cmd: vec!["agent.js".into()],
        env: vec!["PATH=/usr/bin".into(), "A=image".into(), "bad".into()],
        working_dir: Some("/app".into()),
        user: Some("node".into()),
    };
    let m = manifest("[agent]\n");
    let a = agent_spec(&m, &config).unwrap();
    assert_eq!(a.command, ["/usr/bin/node", "agent.js"]);
    assert_eq!(a.user, "node");
    assert_eq!(a.workdir, "/app");
    assert_eq!(
        a.env,
        [
            ("PATH".into(), "/usr/bin".into()),
            ("A".into(), "image".into())
        ]
    );

    let m = manifest(
        "[agent]\ncommand = [\"sh\"]\nuser = \"1000:1000\"\nworkdir = \"/work\"\nenv = { A = \"manifest\" }\n",
    );
    let a = agent_spec(&m, &config).unwrap();
    assert_eq!(a.command, ["sh"]);
    assert_eq!(a.user, "1000:1000");
    assert_eq!(a.workdir, "/work");
    assert_eq!(
        a.env,
        [
            ("PATH".into(), "/usr/bin".into()),
            ("A".into(), "manifest".into())
        ]
    );
}

#[test]
fn no_command_anywhere_is_an_error_and_defaults_are_root_and_slash() {
    let m = manifest("[agent]\n");
    let e = agent_spec(&m, &ImageConfig::default()).unwrap_err();
    assert!(e.to_string().contains("no Entrypoint or Cmd"), "{e}");
    let only_cmd = ImageConfig {
        cmd: vec!["/bin/sh".into()],
        ..Default::default()
    };
    let a = agent_spec(&m, &only_cmd).unwrap();
    assert_eq!((a.user.as_str(), a.workdir.as_str()), ("root", "/"));
}

#[test]
fn agent_ids_from_numbers_and_passwd() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nagent:x:1000:1001::/home/agent:/bin/sh\n",
    )
    .unwrap();
    let r = Some(dir.path());
    assert_eq!(agent_ids("1000", None).unwrap(), (1000, 1000));
    assert_eq!(agent_ids("1000:5", None).unwrap(), (1000, 5));
    assert_eq!(agent_ids("root", None).unwrap(), (0, 0));
    assert_eq!(agent_ids("agent", r).unwrap(), (1000, 1001));
    assert_eq!(agent_ids("agent:7", r).unwrap(), (1000, 7));
    assert!(agent_ids("nobody", r).is_err());
    assert!(agent_ids("agent:x", r).is_err());
    // A passwd that is a symlink (e.g. to a host file) is not read.
    let evil = tempfile::tempdir().unwrap();
    std::fs::create_dir(evil.path().join("etc")).unwrap();
    std::os::unix::fs::symlink(
        dir.path().join("etc/passwd"),
        evil.path().join("etc/passwd"),
    )
    .unwrap();
    assert!(agent_ids("agent", Some(evil.path())).is_err());
}

/// The image's `/etc/passwd` as a FIFO (which the unpacker makes): refused
/// at once, not waited on for a writer (that hung `launch`).
#[test]
fn a_fifo_passwd_does_not_block() {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    let fifo = dir.path().join("etc/passwd");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let root = dir.path().to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(agent_ids("agent", Some(&root)).map_err(|e| e.to_string()));
    });
    let got = rx.recv_timeout(std::time::Duration::from_secs(5));
    // Release a blocked reader, if any (non-blocking: fails with no reader).
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo);
    let got = got.expect("agent_ids blocked on a FIFO /etc/passwd for 5 s");
    assert!(got.is_err(), "{got:?}");
}

/// A directory symlink on the way (`/etc` -> elsewhere), or a passwd over
/// the bound, is not read either.
#[test]
fn passwd_through_a_symlinked_dir_or_too_large_is_not_read() {
    let host = tempfile::tempdir().unwrap();
    std::fs::create_dir(host.path().join("etc")).unwrap();
    std::fs::write(
        host.path().join("etc/passwd"),
        "agent:x:1000:1000::/:/bin/sh\n",
    )
    .unwrap();
    let evil = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(host.path().join("etc"), evil.path().join("etc")).unwrap();
    assert!(agent_ids("agent", Some(evil.path())).is_err());
    assert_eq!(agent_ids("agent", Some(host.path())).unwrap(), (1000, 1000));
    let big = tempfile::tempdir().unwrap();
    std::fs::create_dir(big.path().join("etc")).unwrap();
    let mut text = "agent:x:1000:1000::/:/bin/sh\n".to_string();
    text.push_str(&"#".repeat((MAX_PASSWD + 1) as usize));
    std::fs::write(big.path().join("etc/passwd"), text).unwrap();
    assert!(agent_ids("agent", Some(big.path())).is_err());
}

#[test]
fn a_writable_workspace_shared_as_root_and_open_to_others_is_warned_about() {
    let p = Path::new("/srv/repo");
    let w = open_root_workspace(p, true, Some(0o40755)).expect("0755 as root warns");
    assert!(w.contains("/srv/repo") && w.contains("755"), "{w}");
    assert!(open_root_workspace(p, true, Some(0o40770)).is_some());
    // Private, read-only, not root, or not there: nothing to say.
    assert!(open_root_workspace(p, true, Some(0o40700)).is_none());
    assert!(open_root_workspace(p, false, Some(0o40777)).is_none());
    assert!(open_root_workspace(p, true, None).is_none());
}
