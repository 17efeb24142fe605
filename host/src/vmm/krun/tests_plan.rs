//! Plan tests: a spec in, the exact calls (or the exact refusal) out.

use std::ffi::CString;
use std::path::PathBuf;

use super::*;

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// A spec like the one `launch` builds.
pub(crate) fn sample() -> VmSpec {
    VmSpec {
        kernel: PathBuf::from("/img/vmlinuz"),
        initramfs: Some(PathBuf::from("/img/initrd")),
        rootfs_dir: Some(PathBuf::from("/run/b/root")),
        cmdline: "bottle.log=debug bottle.hostname=box".into(),
        memory_mib: 512,
        vcpus: 2,
        vsock_base: PathBuf::from("/run/b/v"),
        guest_ports: vec![6001, 6002, 6003],
        console_log: Some(PathBuf::from("/run/b/console.log")),
        guest_exec: "/sbin/bottle-guest".into(),
        guest_args: vec!["init".into()],
        guest_env: vec![("HOME".into(), "/root".into())],
        shares: vec![],
        disks: vec![],
    }
}

#[test]
fn shares_are_refused_until_wired() {
    let mut spec = sample();
    spec.shares.push(Default::default());
    let e = plan(&spec).unwrap_err().to_string();
    assert!(e.contains("backend = \"qemu\""), "{e}");
    let mut spec = sample();
    spec.disks.push("/root.ext4".into());
    assert!(plan(&spec).is_err());
}

#[test]
fn bundled_plan_is_exact() {
    let want = vec![
        KrunCall::CreateCtx,
        KrunCall::SetLogLevel { level: 2 },
        KrunCall::SetVmConfig {
            vcpus: 2,
            ram_mib: 512,
        },
        KrunCall::SetRoot {
            path: c("/run/b/root"),
        },
        KrunCall::DisableImplicitVsock,
        KrunCall::AddVsock { tsi_features: 0 },
        KrunCall::AddVsockPort {
            port: 6001,
            path: c("/run/b/v_6001"),
        },
        KrunCall::AddVsockPort {
            port: 6002,
            path: c("/run/b/v_6002"),
        },
        KrunCall::AddVsockPort {
            port: 6003,
            path: c("/run/b/v_6003"),
        },
        KrunCall::SetConsoleOutput {
            path: c("/run/b/console.log"),
        },
        KrunCall::SetExec {
            exec: c("/sbin/bottle-guest"),
            argv: vec![c("init")],
            envp: vec![
                c("HOME=/root"),
                c("bottle.log=debug"),
                c("bottle.hostname=box"),
            ],
        },
        KrunCall::StartEnter,
    ];
    assert_eq!(plan(&sample()).unwrap(), want);
}

#[test]
fn external_kernel_plan() {
    let got = plan_with(&sample(), KernelMode::External(KernelFormat::Elf)).unwrap();
    assert_eq!(
        got[3],
        KrunCall::SetKernel {
            path: c("/img/vmlinuz"),
            format: 1,
            initramfs: Some(c("/img/initrd")),
            cmdline: c("bottle.log=debug bottle.hostname=box"),
        }
    );
    // The cmdline goes to the kernel, not into the environment.
    let Some(KrunCall::SetExec { envp, .. }) = got.iter().find(|k| k.name() == "krun_set_exec")
    else {
        panic!("no krun_set_exec in {got:?}");
    };
    assert_eq!(envp, &vec![c("HOME=/root")]);
    // An external kernel with an initramfs needs no root directory.
    let mut no_root = sample();
    no_root.rootfs_dir = None;
    let got = plan_with(&no_root, KernelMode::External(KernelFormat::Raw)).unwrap();
    assert!(got.iter().all(|k| k.name() != "krun_set_root"), "{got:?}");
}

#[test]
fn order_and_tsi_off_for_every_shape() {
    let mut shapes = vec![sample()];
    let mut s = sample();
    s.guest_ports.clear();
    s.console_log = None;
    s.guest_env.clear();
    s.guest_args.clear();
    s.cmdline.clear();
    shapes.push(s);
    for spec in &shapes {
        for mode in [KernelMode::Bundled, KernelMode::External(KernelFormat::Elf)] {
            let p = plan_with(spec, mode).unwrap();
            let names: Vec<_> = p.iter().map(KrunCall::name).collect();
            assert_eq!(names.first(), Some(&"krun_create_ctx"), "{names:?}");
            assert_eq!(names.last(), Some(&"krun_start_enter"), "{names:?}");
            assert_eq!(names.iter().filter(|n| **n == "krun_create_ctx").count(), 1);
            assert_eq!(
                names.iter().filter(|n| **n == "krun_start_enter").count(),
                1
            );
            // TSI: implicit vsock disabled, then one explicit vsock with no
            // hijacking, before any port is added.
            let dis = names
                .iter()
                .position(|n| *n == "krun_disable_implicit_vsock");
            let add = names.iter().position(|n| *n == "krun_add_vsock");
            assert!(dis.is_some() && add == dis.map(|d| d + 1), "{names:?}");
            assert!(p.contains(&KrunCall::AddVsock { tsi_features: 0 }));
            if let Some(first_port) = names.iter().position(|n| *n == "krun_add_vsock_port") {
                assert!(first_port > add.unwrap(), "{names:?}");
            }
            // Nothing that adds a network path.
            assert!(names
                .iter()
                .all(|n| !n.contains("net") && !n.contains("port_map")));
        }
    }
}

#[test]
fn empty_env_is_an_empty_array_not_null() {
    let mut s = sample();
    s.guest_env.clear();
    s.cmdline.clear();
    let p = plan(&s).unwrap();
    assert!(p.contains(&KrunCall::SetExec {
        exec: c("/sbin/bottle-guest"),
        argv: vec![c("init")],
        envp: vec![],
    }));
}

type Edit = fn(&mut VmSpec);

#[test]
fn refusals() {
    let cases: &[(&str, Edit, &str)] = &[
        (
            "nul in exec",
            |s| s.guest_exec = "/sbin/a\0b".into(),
            "guest_exec contains a NUL byte",
        ),
        (
            "nul in arg",
            |s| s.guest_args = vec!["a\0".into()],
            "guest_args[0] contains a NUL byte",
        ),
        (
            "nul in env value",
            |s| s.guest_env = vec![("K".into(), "v\0".into())],
            "guest_env K contains a NUL byte",
        ),
        (
            "nul in env key",
            |s| s.guest_env = vec![("K\0".into(), "v".into())],
            "contains a NUL byte",
        ),
        (
            "nul in root",
            |s| s.rootfs_dir = Some("/r\0".into()),
            "rootfs_dir contains a NUL byte",
        ),
        (
            "nul in vsock base",
            |s| s.vsock_base = "/v\0".into(),
            "vsock_base contains a NUL byte",
        ),
        (
            "nul in console",
            |s| s.console_log = Some("/c\0".into()),
            "console_log contains a NUL byte",
        ),
        (
            "nul in cmdline",
            |s| s.cmdline = "bottle.x=\0".into(),
            "cmdline contains a NUL byte",
        ),
        (
            "space in arg",
            |s| s.guest_args = vec!["a b".into()],
            "guest_args[0] contains whitespace",
        ),
        (
            "quote in env",
            |s| s.guest_env = vec![("K".into(), "\"x".into())],
            "guest_env K contains whitespace or a quote",
        ),
        (
            "tab in env",
            |s| s.guest_env = vec![("K".into(), "a\tb".into())],
            "contains whitespace",
        ),
        (
            "empty env key",
            |s| s.guest_env = vec![("".into(), "v".into())],
            "must be non-empty",
        ),
        (
            "= in env key",
            |s| s.guest_env = vec![("A=B".into(), "v".into())],
            "have no '='",
        ),
        (
            "relative exec",
            |s| s.guest_exec = "bottle-guest".into(),
            "must be an absolute path",
        ),
        ("zero vcpus", |s| s.vcpus = 0, "vcpus must be at least 1"),
        ("tiny memory", |s| s.memory_mib = 16, "memory_mib is 16"),
        (
            "port zero",
            |s| s.guest_ports = vec![0],
            "vsock port 0 is reserved",
        ),
        (
            "port any",
            |s| s.guest_ports = vec![u32::MAX],
            "is reserved",
        ),
        (
            "duplicate port",
            |s| s.guest_ports = vec![6001, 6001],
            "vsock port 6001 listed twice",
        ),
        ("no root", |s| s.rootfs_dir = None, "rootfs_dir is required"),
        (
            "undotted cmdline word",
            |s| s.cmdline = "bottle.x=1 quiet".into(),
            "\"quiet\"",
        ),
        (
            "long socket path",
            |s| s.vsock_base = PathBuf::from(format!("/{}", "d".repeat(100))),
            "Unix socket paths must be under 104",
        ),
        (
            "over budget",
            |s| s.guest_args = vec!["x".repeat(CMDLINE_BUDGET)],
            "of the kernel command line",
        ),
    ];
    for (name, edit, want) in cases {
        let mut s = sample();
        edit(&mut s);
        match plan(&s) {
            Ok(p) => panic!("{name}: accepted, plan {p:?}"),
            Err(e) => assert!(e.to_string().contains(want), "{name}: {e} lacks {want:?}"),
        }
    }
}

#[test]
fn spec_round_trips_through_json() {
    let s = sample();
    let json = serde_json::to_string(&s).unwrap();
    let back: VmSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    // Unknown fields are refused: a spec from a newer supervisor fails loudly.
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["surprise"] = serde_json::json!(1);
    assert!(serde_json::from_value::<VmSpec>(v).is_err());
}

#[test]
fn spawn_command_and_spec_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sample();
    s.vsock_base = dir.path().join("v");
    let path = spec_path(&s);
    assert_eq!(path, dir.path().join("v.krun.json"));
    write_spec(&s, &path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(read_spec(&path).unwrap(), s);
    assert!(
        !path.exists(),
        "the child deletes the spec after reading it"
    );

    let cmd = child_command(std::path::Path::new("/usr/bin/bottle-host"), &path);
    assert_eq!(cmd.get_program(), "/usr/bin/bottle-host");
    let args: Vec<_> = cmd.get_args().collect();
    assert_eq!(args, ["__krun-child", "--spec", path.to_str().unwrap()]);
}

#[test]
fn command_line_budget_boundary() {
    // "/sbin/bottle-guest" costs 18 + 3 bytes; one argument of n bytes, n + 3.
    let fit = CMDLINE_BUDGET - (18 + 3) - 3;
    let mut s = sample();
    s.guest_env.clear();
    s.cmdline.clear();
    s.guest_args = vec!["x".repeat(fit)];
    assert!(plan(&s).is_ok());
    s.guest_args = vec!["x".repeat(fit + 1)];
    let err = plan(&s).unwrap_err().to_string();
    assert!(
        err.contains(&format!("take {} bytes", CMDLINE_BUDGET + 1)),
        "{err}"
    );
}
