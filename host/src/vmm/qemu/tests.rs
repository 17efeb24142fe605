use super::*;

fn spec() -> VmSpec {
    VmSpec {
        kernel: "/img/vmlinuz".into(),
        initramfs: Some("/img/initramfs.cpio".into()),
        cmdline: "bottle.host=vsock://2 bottle.modules=virtio,vsock".into(),
        memory_mib: 512,
        vcpus: 2,
        vsock_base: "/run/b/vsock".into(),
        guest_ports: vec![6001, 6002, 6003],
        ..Default::default()
    }
}

fn strings(a: &[OsString]) -> Vec<String> {
    a.iter().map(|s| s.to_string_lossy().into_owned()).collect()
}

fn value_of<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

#[test]
fn no_network_device_of_any_kind() {
    let a = strings(&qemu_args(&spec(), Accelerator::Tcg, None, TCG_TB_MIB).unwrap());
    assert!(a.contains(&"-nodefaults".to_string()), "{a:?}");
    assert_eq!(value_of(&a, "-nic"), vec!["none"]);
    assert!(value_of(&a, "-netdev").is_empty());
    let devices = value_of(&a, "-device");
    assert_eq!(devices, vec!["vhost-user-vsock-pci,chardev=vsock0"]);
    assert!(!a.iter().any(|s| s.contains("net")), "{a:?}");
}

#[test]
fn shared_memory_and_vsock_socket() {
    let a = strings(&qemu_args(&spec(), Accelerator::Tcg, None, TCG_TB_MIB).unwrap());
    assert_eq!(value_of(&a, "-machine"), vec![MACHINE]);
    assert!(MACHINE.starts_with("q35,memory-backend=mem,"), "{MACHINE}");
    assert_eq!(
        value_of(&a, "-object"),
        vec!["memory-backend-memfd,id=mem,size=512M,share=on"]
    );
    assert_eq!(value_of(&a, "-m"), vec!["512M"]);
    assert_eq!(value_of(&a, "-smp"), vec!["2"]);
    assert_eq!(
        value_of(&a, "-chardev"),
        vec!["socket,id=vsock0,path=/run/b/vsock.vhost"]
    );
    let d = strings(&daemon_args(&spec()));
    assert_eq!(value_of(&d, "--socket"), vec!["/run/b/vsock.vhost"]);
    assert_eq!(value_of(&d, "--uds-path"), vec!["/run/b/vsock"]);
    assert_eq!(value_of(&d, "--guest-cid"), vec!["3"]);
}

#[test]
fn kernel_initrd_cmdline_and_console() {
    let a = strings(&qemu_args(&spec(), Accelerator::Tcg, None, TCG_TB_MIB).unwrap());
    assert_eq!(value_of(&a, "-kernel"), vec!["/img/vmlinuz"]);
    assert_eq!(value_of(&a, "-initrd"), vec!["/img/initramfs.cpio"]);
    let append = value_of(&a, "-append");
    assert_eq!(append.len(), 1);
    assert!(append[0].starts_with("console=ttyS0 "), "{append:?}");
    assert!(append[0].contains("panic=-1"));
    assert!(append[0].ends_with("bottle.host=vsock://2 bottle.modules=virtio,vsock"));
    assert!(a.contains(&"-no-reboot".to_string()));
    assert_eq!(value_of(&a, "-serial"), vec!["stdio"]);
    // A console log of the manifest's own is still the caller's to write
    // (capped), never QEMU's: the guest could fill it without end.
    let mut s = spec();
    s.console_log = Some("/tmp/console.log".into());
    let a = strings(&qemu_args(&s, Accelerator::Tcg, None, TCG_TB_MIB).unwrap());
    assert_eq!(value_of(&a, "-serial"), vec!["stdio"]);
}

#[test]
fn accelerator_flags() {
    let tcg = strings(&qemu_args(&spec(), Accelerator::Tcg, None, TCG_TB_MIB).unwrap());
    assert_eq!(value_of(&tcg, "-accel"), vec!["tcg,tb-size=32"]);
    assert!(value_of(&tcg, "-cpu").is_empty());
    let small = strings(&qemu_args(&spec(), Accelerator::Tcg, None, 16).unwrap());
    assert_eq!(value_of(&small, "-accel"), vec!["tcg,tb-size=16"]);
    let kvm = strings(&qemu_args(&spec(), Accelerator::Kvm, None, 16).unwrap());
    assert_eq!(value_of(&kvm, "-accel"), vec!["kvm"]);
    assert_eq!(value_of(&kvm, "-cpu"), vec!["host"]);
}

#[test]
fn tcg_cache_size_from_the_environment() {
    assert_eq!(tcg_tb_mib(None).unwrap(), TCG_TB_MIB);
    assert_eq!(tcg_tb_mib(Some("16")).unwrap(), 16);
    assert_eq!(tcg_tb_mib(Some(" 8 ")).unwrap(), 8);
    assert_eq!(tcg_tb_mib(Some("1024")).unwrap(), 1024);
    for bad in ["", "7", "1025", "16M", "-1", "lots"] {
        let e = tcg_tb_mib(Some(bad)).unwrap_err().to_string();
        assert!(
            e.contains("BOTTLE_TCG_TB_MIB") && e.contains("8 to 1024"),
            "{bad:?}: {e}"
        );
    }
}

#[test]
fn chipset_devices_a_bottle_never_uses_are_off() {
    let a = strings(&qemu_args(&spec(), Accelerator::Kvm, None, TCG_TB_MIB).unwrap());
    let machine = value_of(&a, "-machine");
    for off in [
        "sata=off",
        "smbus=off",
        "i8042=off",
        "vmport=off",
        "smm=off",
    ] {
        assert!(
            machine[0].split(',').any(|p| p == off),
            "{off}: {machine:?}"
        );
    }
}

#[test]
fn bad_specs_are_refused() {
    let mut s = spec();
    s.initramfs = None;
    assert!(qemu_args(&s, Accelerator::Tcg, None, TCG_TB_MIB)
        .unwrap_err()
        .to_string()
        .contains("initramfs"));
    let mut s = spec();
    s.memory_mib = 16;
    assert!(qemu_args(&s, Accelerator::Tcg, None, TCG_TB_MIB)
        .unwrap_err()
        .to_string()
        .contains("too small"));
}

#[test]
fn kvm_detection_reasons() {
    let t = tempfile::tempdir().unwrap();
    let dev = t.path().join("kvm");
    let modules = t.path().join("module");
    std::fs::create_dir_all(&modules).unwrap();
    let e = kvm_usable(&dev, &modules).unwrap_err();
    assert!(e.contains("kvm"), "{e}");
    std::fs::write(&dev, b"").unwrap();
    let e = kvm_usable(&dev, &modules).unwrap_err();
    assert!(e.contains("no kvm_intel or kvm_amd"), "{e}");
    std::fs::create_dir_all(modules.join("kvm_pvm")).unwrap();
    let e = kvm_usable(&dev, &modules).unwrap_err();
    assert!(e.contains("PVM"), "{e}");
    std::fs::create_dir_all(modules.join("kvm_intel")).unwrap();
    assert!(kvm_usable(&dev, &modules).is_ok());
}

#[test]
fn firmware_when_given() {
    let a = strings(
        &qemu_args(
            &spec(),
            Accelerator::Tcg,
            Some(Path::new("/q/qboot.rom")),
            TCG_TB_MIB,
        )
        .unwrap(),
    );
    assert_eq!(value_of(&a, "-bios"), vec!["/q/qboot.rom"]);
    let a = strings(&qemu_args(&spec(), Accelerator::Tcg, None, TCG_TB_MIB).unwrap());
    assert!(value_of(&a, "-bios").is_empty());
}

#[test]
fn each_share_is_a_vhost_user_fs_device_on_its_own_socket() {
    let mut s = spec();
    for (tag, dir) in [("root", "/cache/r"), ("ws0", "/home/u/repo")] {
        s.shares.push(crate::vmm::virtiofs::FsShare {
            tag: tag.into(),
            dir: dir.into(),
            ..Default::default()
        });
    }
    let a = strings(&qemu_args(&s, Accelerator::Tcg, None, TCG_TB_MIB).unwrap());
    let chardevs = value_of(&a, "-chardev");
    assert!(
        chardevs.contains(&"socket,id=fs0,path=/run/b/vsock.fs0"),
        "{chardevs:?}"
    );
    assert!(
        chardevs.contains(&"socket,id=fs1,path=/run/b/vsock.fs1"),
        "{chardevs:?}"
    );
    let devices = value_of(&a, "-device");
    assert!(
        devices.contains(&"vhost-user-fs-pci,chardev=fs0,tag=root"),
        "{devices:?}"
    );
    assert!(
        devices.contains(&"vhost-user-fs-pci,chardev=fs1,tag=ws0"),
        "{devices:?}"
    );
    // Still no network device, and the memory stays shared.
    assert_eq!(value_of(&a, "-nic"), ["none"]);
    s.shares[1].tag = "bad,tag=x".into();
    assert!(qemu_args(&s, Accelerator::Tcg, None, TCG_TB_MIB).is_err());
}

#[test]
fn disks_are_read_only_virtio_blk_in_order() {
    let mut s = spec();
    s.disks = vec!["/state/root.ext4".into(), "/odd,name.img".into()];
    let a = strings(&qemu_args(&s, Accelerator::Tcg, None, TCG_TB_MIB).unwrap());
    assert_eq!(
        value_of(&a, "-drive"),
        vec![
            "file=/state/root.ext4,if=none,id=disk0,format=raw,readonly=on",
            "file=/odd,,name.img,if=none,id=disk1,format=raw,readonly=on",
        ]
    );
    let devices = value_of(&a, "-device");
    assert!(
        devices.contains(&"virtio-blk-pci,drive=disk0"),
        "{devices:?}"
    );
    assert!(
        devices.contains(&"virtio-blk-pci,drive=disk1"),
        "{devices:?}"
    );
}

/// A daemon that writes without end and then exits before its socket
/// appears: the error carries the start of its output, capped, and comes
/// at once (the log's pipe ends with the daemon, nothing else holds it).
#[tokio::test]
async fn a_daemon_that_floods_its_log_and_exits_is_reported_capped_and_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("vsock.daemon.log");
    let mut cmd = command(Path::new("sh"));
    cmd.arg("-c")
        .arg("echo starting; head -c 4000000 /dev/zero | tr '\\0' e >&2; exit 1");
    let start = std::time::Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        spawn_daemon(
            &mut cmd,
            "fake-daemon",
            &dir.path().join("never.sock"),
            &log,
        ),
    )
    .await
    .expect("spawn_daemon returned")
    .unwrap_err();
    let elapsed = start.elapsed();
    let VmmError::EarlyExit { output, .. } = err else {
        panic!("{err:?}");
    };
    assert!(output.starts_with("starting\neee"), "{:?}", &output[..20]);
    assert!(output.ends_with("the rest is not kept]\n"));
    let limit = super::super::daemon_log::DAEMON_LOG_LIMIT as usize;
    assert!(output.len() > limit && output.len() < limit + 200);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), output);
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
}

/// QEMU's standard error reaches `RUN/vsock.qemu.log` through the capped
/// pipe, whole up to the cap, by the time `wait` reports QEMU gone. QEMU
/// and the vsock daemon are stand-ins (shell scripts).
#[tokio::test]
async fn qemu_errors_reach_its_log_capped_by_the_time_it_is_reported_gone() {
    let dir = tempfile::tempdir().unwrap();
    let script = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        p
    };
    // The daemon's --socket is its fourth argument.
    let daemon = script("vsock-daemon", ": > \"$4\"; exec sleep 30");
    let qemu = script(
        "qemu",
        "echo 'qemu: cannot start' >&2; head -c 3000000 /dev/zero | tr '\\0' q >&2; exit 1",
    );
    let q = Qemu {
        qemu,
        daemon,
        fs_daemon: None,
        accel: Accelerator::Tcg,
        kvm_note: None,
        bios: None,
        tcg_tb_mib: TCG_TB_MIB,
    };
    let mut s = spec();
    s.vsock_base = dir.path().join("vsock");
    let mut vm = super::super::start_written(|| q.start(&s)).await;
    let exit = tokio::time::timeout(Duration::from_secs(20), vm.wait())
        .await
        .expect("wait returned")
        .unwrap();
    assert!(
        matches!(&exit, VmExit::Exited(st) if st.code() == Some(1)),
        "{exit:?}"
    );
    drop(vm);
    let log = std::fs::read_to_string(dir.path().join("vsock.qemu.log")).unwrap();
    assert!(
        log.starts_with("qemu: cannot start\nqqq"),
        "{:?}",
        &log[..30]
    );
    let notice = "\n[bot-bottle: vsock.qemu.log is full (1 MiB); the rest is not kept]\n";
    assert!(log.ends_with(notice));
    assert_eq!(
        log.len() as u64,
        super::super::daemon_log::DAEMON_LOG_LIMIT + notice.len() as u64
    );
}
