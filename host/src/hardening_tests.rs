use super::*;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_missing_state_dir_is_made_private_with_its_parents() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a/b/state");
    private_dir(&p).unwrap();
    assert_eq!(mode(&p), 0o700);
    assert_eq!(mode(&d.path().join("a")), 0o700);
}

#[test]
fn a_readable_state_dir_is_tightened() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("state");
    std::fs::create_dir(&p).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    private_dir(&p).unwrap();
    assert_eq!(mode(&p), 0o700);
}

#[test]
fn a_group_or_world_writable_state_dir_is_refused() {
    let d = tempfile::tempdir().unwrap();
    for (m, who) in [(0o777, "others"), (0o1777, "others"), (0o770, "its group")] {
        let p = d.path().join(format!("s{m:o}"));
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
        let e = private_dir(&p).unwrap_err();
        assert!(matches!(e, StateError::Loose { .. }), "{e}");
        assert!(e.to_string().contains(who), "{e}");
        // Nothing was changed.
        assert_eq!(mode(&p), m);
    }
}

#[test]
fn a_state_dir_owned_by_someone_else_is_refused() {
    if euid() != 0 {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("theirs");
    std::fs::create_dir(&p).unwrap();
    std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
    let e = private_dir(&p).unwrap_err();
    assert!(
        matches!(e, StateError::NotOwner { owner: 65534, .. }),
        "{e}"
    );
}

#[test]
fn a_file_is_not_a_state_dir() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("f");
    std::fs::write(&p, b"x").unwrap();
    assert!(matches!(
        private_dir(&p).unwrap_err(),
        StateError::NotDir { .. }
    ));
}

#[test]
fn log_files_are_created_private_and_old_ones_tightened() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("audit.jsonl");
    drop(open_private_append(&p).unwrap());
    assert_eq!(mode(&p), 0o600);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut f = open_private_append(&p).unwrap();
    std::io::Write::write_all(&mut f, b"line\n").unwrap();
    assert_eq!(mode(&p), 0o600);
    let q = d.path().join("qemu.log");
    std::fs::write(&q, b"old").unwrap();
    std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(create_private(&q).unwrap());
    assert_eq!(mode(&q), 0o600);
    assert_eq!(std::fs::read(&q).unwrap(), b"");
}

#[tokio::test]
async fn children_inherit_only_the_listed_variables() {
    let mut cmd = tokio::process::Command::new("env");
    scrub_env(&mut cmd, &["BOTTLE_EXTRA_KEPT"]);
    // The test's own environment has many more (CARGO_*, at least).
    assert!(std::env::vars().any(|(k, _)| k.starts_with("CARGO")));
    let out = cmd.output().await.unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for line in text.lines() {
        let name = line.split('=').next().unwrap();
        assert!(
            CHILD_ENV.contains(&name) || name == "BOTTLE_EXTRA_KEPT",
            "{name} reached the child"
        );
    }
    assert!(text.contains("PATH="), "{text}");
}

#[test]
fn a_child_marked_non_dumpable_says_so() {
    // In a forked child, so the test process itself stays dumpable.
    // SAFETY: the child only calls prctl and _exit, both async-signal-safe.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let before = is_dumpable();
        mark_non_dumpable();
        let code = if before && !is_dumpable() { 0 } else { 1 };
        // SAFETY: _exit ends the forked child without running the
        // parent's destructors or atexit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
}

#[test]
fn a_panic_report_never_holds_a_secret_value() {
    let secret = "panic-secret-Qx7Lm2Vn9".to_string();
    let got = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let g = std::sync::Arc::clone(&got);
    let s = vec![secret.clone()];
    let old = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        *g.lock().unwrap() = redact_panic(info, &s);
    }));
    let r = std::panic::catch_unwind(|| panic!("bad value {secret} in a header"));
    std::panic::set_hook(old);
    assert!(r.is_err());
    let text = got.lock().unwrap().clone();
    assert!(text.contains("bad value <redacted> in a header"), "{text}");
    assert!(text.contains("hardening_tests.rs"), "{text}");
    assert!(!text.contains("panic-secret"), "{text}");
}
