//! [`start_child`] against a stand-in for `bottle-host __krun-child` (a
//! shell script): libkrun cannot run on the development machine, so the
//! stand-in does what libkrun does with `console_log`, opening the path
//! it is given with `File::create` semantics and writing the console.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::*;
use crate::vmm::krun::tests_plan::sample;

/// The stand-in: checks that the spec names `/dev/fd/3`, then writes a
/// console that ends with a line a guest panic would leave.
const STAND_IN: &str = r#"#!/bin/sh
grep -q '"/dev/fd/3"' "$3" || exit 9
printf 'boot\n' > /dev/fd/3
head -c 3000000 /dev/zero | tr '\0' k >> /dev/fd/3
printf 'panic: the last line\n' >> /dev/fd/3
exit 0
"#;

#[tokio::test]
async fn the_console_reaches_its_log_through_the_pipe_to_its_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("stand-in");
    std::fs::write(&exe, STAND_IN).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.path().join("console.log");
    let mut spec = sample();
    spec.vsock_base = dir.path().join("vsock");
    spec.console_log = Some(log.clone());
    let mut vm = crate::vmm::start_written(|| async { start_child(spec.clone(), &exe) }).await;
    let exit = tokio::time::timeout(Duration::from_secs(20), vm.wait())
        .await
        .expect("the stand-in finished")
        .unwrap();
    assert!(
        matches!(&exit, VmExit::Exited(st) if st.success()),
        "{exit:?} (9: the spec did not name /dev/fd/3)"
    );
    // Gone at once, as `supervise` drops it: nothing still in the pipe
    // may be lost.
    drop(vm);
    let text = std::fs::read(&log).unwrap();
    assert_eq!(text.len(), 5 + 3_000_000 + 21);
    assert!(text.starts_with(b"boot\nkkk"));
    assert!(text.ends_with(b"kkkpanic: the last line\n"));
    let mode = std::fs::metadata(&log).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_bad_spec_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sample();
    s.vsock_base = dir.path().join("v");
    s.vcpus = 0;
    s.console_log = Some(dir.path().join("console.log"));
    let exe = std::path::Path::new("/nonexistent/bottle-host");
    let err = start_child(s.clone(), exe).unwrap_err();
    assert!(err.to_string().contains("vcpus"), "{err}");
    assert!(!spec_path(&s).exists());
    assert!(!dir.path().join("console.log").exists());
}
