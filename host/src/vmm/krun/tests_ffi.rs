//! The FFI boundary: [`detect_from`] and [`execute`] against a fake libkrun
//! (`testdata/fake_libkrun.c`), compiled with `cc` into a temporary shared
//! library at test time and loaded through the real `dlopen` path. The fake
//! logs every call with its arguments as it received them.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::tests_plan::sample;
use super::*;

const FAKE_SRC: &str = include_str!("testdata/fake_libkrun.c");

/// A built fake library and the log it writes.
struct Fake {
    _dir: tempfile::TempDir,
    lib: PathBuf,
    log: PathBuf,
}

impl Fake {
    /// Build the fake. `fail_at` names the function that returns -EIO;
    /// `start_rc` is krun_start_enter's return value; `omit` lists the
    /// `NO_*` switches that leave functions out.
    fn build(fail_at: &str, start_rc: i32, omit: &[&str]) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls.log");
        let lib = dir.path().join("libkrun-fake.so");
        let src = dir.path().join("fake_libkrun.c");
        let cfg = dir.path().join("config.h");
        std::fs::write(&src, FAKE_SRC).unwrap();
        let mut h = format!(
            "#define LOG_PATH {:?}\n#define FAIL_AT {:?}\n#define START_RC ({start_rc})\n",
            log.to_str().unwrap(),
            fail_at
        );
        for o in omit {
            h.push_str(&format!("#define {o} 1\n"));
        }
        std::fs::write(&cfg, h).unwrap();
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-Wall", "-Werror", "-include"])
            .arg(&cfg)
            .arg("-o")
            .arg(&lib)
            .arg(&src)
            .output()
            .expect(
                "running cc (a C compiler is needed for this test; tests/setup.sh installs gcc)",
            );
        assert!(
            out.status.success(),
            "cc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Fake {
            _dir: dir,
            lib,
            log,
        }
    }

    fn load(&self) -> KrunLib {
        detect_from(std::slice::from_ref(&self.lib)).unwrap()
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn spec_in(dir: &Path) -> VmSpec {
    let mut s = sample();
    s.vsock_base = dir.join("v");
    s
}

#[test]
fn executor_makes_exactly_the_planned_calls() {
    let fake = Fake::build("none", -libc::EINVAL, &[]);
    let lib = fake.load();
    let spec = sample();
    let err = execute(&lib, &plan(&spec).unwrap()).unwrap_err();
    assert!(
        matches!(err, KrunError::Call { call: "krun_start_enter", errno } if errno == libc::EINVAL),
        "{err:?}"
    );
    assert_eq!(
        fake.calls(),
        [
            "krun_create_ctx",
            "krun_set_log_level level=2",
            "krun_set_vm_config ctx=7 vcpus=2 ram_mib=512",
            "krun_set_root ctx=7 path=/run/b/root",
            "krun_disable_implicit_vsock ctx=7",
            "krun_add_vsock ctx=7 tsi_features=0",
            "krun_add_vsock_port ctx=7 port=6001 path=/run/b/v_6001",
            "krun_add_vsock_port ctx=7 port=6002 path=/run/b/v_6002",
            "krun_add_vsock_port ctx=7 port=6003 path=/run/b/v_6003",
            "krun_set_console_output ctx=7 path=/run/b/console.log",
            "krun_set_exec ctx=7 exec=/sbin/bottle-guest argv=[init] \
             envp=[HOME=/root,bottle.log=debug,bottle.hostname=box]",
            "krun_start_enter ctx=7",
        ]
    );
}

#[test]
fn empty_lists_are_empty_arrays_and_external_kernel_passes_null_initramfs() {
    let fake = Fake::build("none", -libc::EINVAL, &[]);
    let lib = fake.load();
    let mut spec = sample();
    spec.guest_args.clear();
    spec.guest_env.clear();
    spec.initramfs = None;
    spec.rootfs_dir = None;
    spec.console_log = None;
    spec.guest_ports = vec![6001];
    execute(
        &lib,
        &plan_with(&spec, KernelMode::External(KernelFormat::ImageGz)).unwrap(),
    )
    .unwrap_err();
    assert_eq!(
        fake.calls(),
        [
            "krun_create_ctx",
            "krun_set_log_level level=2",
            "krun_set_vm_config ctx=7 vcpus=2 ram_mib=512",
            "krun_set_kernel ctx=7 path=/img/vmlinuz format=4 initramfs=NULL \
             cmdline=bottle.log=debug bottle.hostname=box",
            "krun_disable_implicit_vsock ctx=7",
            "krun_add_vsock ctx=7 tsi_features=0",
            "krun_add_vsock_port ctx=7 port=6001 path=/run/b/v_6001",
            "krun_set_exec ctx=7 exec=/sbin/bottle-guest argv=[] envp=[]",
            "krun_start_enter ctx=7",
        ]
    );
}

#[test]
fn a_failing_call_stops_the_plan_and_frees_the_context() {
    let fake = Fake::build("krun_add_vsock_port", -libc::EINVAL, &[]);
    let lib = fake.load();
    let err = execute(&lib, &plan(&sample()).unwrap()).unwrap_err();
    assert!(
        matches!(err, KrunError::Call { call: "krun_add_vsock_port", errno } if errno == libc::EIO),
        "{err:?}"
    );
    let calls = fake.calls();
    assert_eq!(
        &calls[calls.len() - 2..],
        [
            "krun_add_vsock_port ctx=7 port=6001 path=/run/b/v_6001",
            "krun_free_ctx ctx=7",
        ]
    );
    assert!(calls.iter().all(|c| !c.starts_with("krun_start_enter")));
}

#[test]
fn a_failing_create_ctx_makes_no_other_call() {
    let fake = Fake::build("krun_create_ctx", -libc::EINVAL, &[]);
    let err = execute(&fake.load(), &plan(&sample()).unwrap()).unwrap_err();
    assert!(
        err.to_string().starts_with("krun_create_ctx failed"),
        "{err}"
    );
    assert_eq!(fake.calls(), ["krun_create_ctx"]);
}

#[test]
fn start_enter_returning_success_is_still_an_error() {
    let fake = Fake::build("none", 0, &[]);
    let err = execute(&fake.load(), &plan(&sample()).unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            KrunError::Call {
                call: "krun_start_enter",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn malformed_plans_make_no_call() {
    let fake = Fake::build("none", -libc::EINVAL, &[]);
    let lib = fake.load();
    let mut p = plan(&sample()).unwrap();
    p.remove(0);
    assert!(matches!(execute(&lib, &p), Err(KrunError::Plan(_))));
    let mut p = plan(&sample()).unwrap();
    p.pop();
    assert!(matches!(execute(&lib, &p), Err(KrunError::Plan(_))));
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

#[test]
fn a_library_that_cannot_turn_tsi_off_is_refused() {
    let fake = Fake::build("none", -libc::EINVAL, &["NO_DISABLE_IMPLICIT_VSOCK"]);
    let err = detect_from(std::slice::from_ref(&fake.lib)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            KrunError::MissingSymbol {
                symbol: "krun_disable_implicit_vsock",
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("TSI") && msg.contains("backend = \"qemu\""),
        "{msg}"
    );
}

#[test]
fn optional_console_output_is_needed_only_when_asked_for() {
    let fake = Fake::build("none", -libc::EINVAL, &["NO_CONSOLE_OUTPUT"]);
    let lib = fake.load();
    assert!(!lib.has_console_output());
    let err = execute(&lib, &plan(&sample()).unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            KrunError::Unsupported {
                symbol: "krun_set_console_output",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(fake.calls().last().unwrap(), "krun_free_ctx ctx=7");

    let mut spec = sample();
    spec.console_log = None;
    let err = execute(&lib, &plan(&spec).unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            KrunError::Call {
                call: "krun_start_enter",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn absent_library_error_names_what_was_tried_and_what_to_do() {
    let names = [
        PathBuf::from("libkrun-absent-for-test.so.1"),
        PathBuf::from("/nonexistent/libkrun.so"),
    ];
    let msg = detect_from(&names).unwrap_err().to_string();
    for want in [
        "libkrun not found",
        "libkrun-absent-for-test.so.1, /nonexistent/libkrun.so",
        "install libkrun and libkrunfw",
        "BOTTLE_LIBKRUN",
        "backend = \"qemu\"",
    ] {
        assert!(msg.contains(want), "{msg:?} lacks {want:?}");
    }
}

#[test]
fn child_main_reaches_start_enter_through_the_spec_file() {
    let fake = Fake::build("none", -libc::EINVAL, &[]);
    let lib = fake.load();
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_in(dir.path());
    let path = spec_path(&spec);
    write_spec(&spec, &path).unwrap();
    let back = read_spec(&path).unwrap();
    let err = child_main_with(&lib, &back).unwrap_err();
    assert!(
        err.to_string().contains("krun_start_enter failed"),
        "{err:#}"
    );
    let want = format!(
        "krun_add_vsock_port ctx=7 port=6002 path={}_6002",
        spec.vsock_base.display()
    );
    assert!(fake.calls().contains(&want), "{:?}", fake.calls());
}
