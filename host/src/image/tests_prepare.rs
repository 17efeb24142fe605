//! `prepare` end to end: OCI layouts, archives, platforms, verification,
//! the cache, `list`/`remove`/`prune`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use serde_json::json;

use super::testimg::{self, blob, config, docker_archive, Comp, Layer, Layout};
use super::{prepare, ImageConfig, ImageError, ImageSource, NoProgress, PreparedImage};

struct Env {
    t: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            t: tempfile::tempdir().unwrap(),
        }
    }
    fn state(&self) -> PathBuf {
        self.t.path().join("state")
    }
    fn layout(&self) -> Layout {
        Layout::new(&self.t.path().join("layout"))
    }
    fn prepare(&self, s: &str) -> Result<PreparedImage, ImageError> {
        let src = ImageSource::parse(s, self.t.path())?;
        prepare(&src, &self.state(), &NoProgress)
    }
    /// Nothing cached and no temporary directory left.
    fn nothing_left(&self) {
        for d in ["images/sha256", "images/tmp"] {
            let n = std::fs::read_dir(self.state().join(d))
                .map(|r| r.count())
                .unwrap_or(0);
            assert_eq!(n, 0, "{d} is not empty");
        }
    }
}

fn base_layer() -> Vec<u8> {
    Layer::new()
        .file("etc/os-release", "test", 0o644)
        .file("bin/tool", "#!", 0o755)
        .tar()
}

#[test]
fn image_config_parsed_and_cached() {
    let e = Env::new();
    let l = e.layout();
    let cfg = json!({"Entrypoint": ["/bin/tool"], "Cmd": ["--x"], "Env": ["A=1", "PATH=/bin"],
                     "WorkingDir": "/work", "User": "1000:1000"});
    let ls = vec![blob(base_layer(), Comp::None)];
    let mut l = l;
    let m = l.manifest(&config("amd64", cfg, &[]), &ls);
    let digest = l.add(m, Some("v1"), None);
    let p = e.prepare("oci:layout:v1").unwrap();
    assert_eq!(p.digest, digest);
    assert_eq!(
        p.config,
        ImageConfig {
            entrypoint: vec!["/bin/tool".into()],
            cmd: vec!["--x".into()],
            env: vec!["A=1".into(), "PATH=/bin".into()],
            working_dir: Some("/work".into()),
            user: Some("1000:1000".into()),
        }
    );
    assert_eq!(
        std::fs::read_to_string(p.root.join("etc/os-release")).unwrap(),
        "test"
    );
    let hex = digest.trim_start_matches("sha256:");
    assert_eq!(
        p.root,
        e.state().join("images/sha256").join(hex).join("rootfs")
    );
    use std::os::unix::fs::PermissionsExt;
    for d in ["images", "images/sha256", "images/tmp"] {
        let m = std::fs::metadata(e.state().join(d))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(m & 0o777, 0o700, "{d}");
    }
    let listed = super::list(&e.state());
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].digest, digest);
    assert!(listed[0].source.starts_with("oci:"), "{}", listed[0].source);
    assert_eq!(listed[0].size_bytes, 6);
    // An ext4 disk made from the tree (`BOTTLE_ROOT_DELIVERY=ext4`) counts
    // as the blocks it takes.
    let disk = e.state().join("images/sha256").join(hex).join("root.ext4");
    std::fs::write(&disk, vec![7u8; 8192]).unwrap();
    let listed = super::list(&e.state());
    assert!(listed[0].size_bytes >= 6 + 8192, "{}", listed[0].size_bytes);
}

#[test]
fn cache_reused_without_reading_layers() {
    let e = Env::new();
    let mut l = e.layout();
    let tar = base_layer();
    let layer_digest = testimg::digest(&tar);
    l.simple(None, vec![tar]);
    let first = e.prepare("oci:layout").unwrap();
    std::fs::remove_file(l.blob_path(&layer_digest)).unwrap();
    let second = e.prepare("layout").unwrap();
    assert_eq!(first, second);
}

#[test]
fn tags_select_the_manifest() {
    let e = Env::new();
    let mut l = e.layout();
    let a = l.simple(
        Some("a"),
        vec![Layer::new().file("which", "a", 0o644).tar()],
    );
    let b = l.simple(
        Some("b"),
        vec![Layer::new().file("which", "b", 0o644).tar()],
    );
    let pb = e.prepare("oci:layout:b").unwrap();
    assert_eq!(pb.digest, b);
    assert_eq!(std::fs::read_to_string(pb.root.join("which")).unwrap(), "b");
    assert_eq!(e.prepare("oci:layout:a").unwrap().digest, a);
    let err = e.prepare("oci:layout").unwrap_err().to_string();
    assert!(err.contains("2 manifests") && err.contains("a, b"), "{err}");
    let err = e.prepare("oci:layout:c").unwrap_err().to_string();
    assert!(
        err.contains("no tag \"c\"") && err.contains("a, b"),
        "{err}"
    );
}

#[test]
fn index_picks_the_host_platform() {
    let e = Env::new();
    let mut l = e.layout();
    let amd = l.manifest(
        &config("amd64", json!({}), &[]),
        &[blob(
            Layer::new().file("arch", "amd64", 0o644).tar(),
            Comp::None,
        )],
    );
    let arm = l.manifest(
        &config("arm64", json!({}), &[]),
        &[blob(
            Layer::new().file("arch", "arm64", 0o644).tar(),
            Comp::None,
        )],
    );
    let with = |d: &serde_json::Value, a: &str| {
        let mut d = d.clone();
        d["platform"] = json!({"architecture": a, "os": "linux"});
        d
    };
    let idx = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                     "manifests": [with(&arm, "arm64"), with(&amd, "amd64")]});
    let idx = l.blob(
        &serde_json::to_vec(&idx).unwrap(),
        "application/vnd.oci.image.index.v1+json",
    );
    l.add(idx, Some("multi"), None);
    let only_arm = json!({"schemaVersion": 2, "manifests": [with(&arm, "arm64")]});
    let only_arm = l.blob(
        &serde_json::to_vec(&only_arm).unwrap(),
        "application/vnd.oci.image.index.v1+json",
    );
    l.add(only_arm, Some("arm"), None);
    l.add(arm.clone(), Some("armcfg"), None);
    if super::spec::host_arch() != "amd64" {
        eprintln!("skipped: the test images assume an amd64 host");
        return;
    }
    let p = e.prepare("oci:layout:multi").unwrap();
    assert_eq!(p.digest, amd["digest"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(p.root.join("arch")).unwrap(),
        "amd64"
    );
    let err = e.prepare("oci:layout:arm").unwrap_err().to_string();
    assert_eq!(err, "image is linux/arm64; this host runs linux/amd64");
    let err = e.prepare("oci:layout:armcfg").unwrap_err().to_string();
    assert_eq!(err, "image is linux/arm64; this host runs linux/amd64");
}

/// Rewrite the blob with `f`, keeping the descriptor.
fn tamper(l: &Layout, digest: &str, f: impl FnOnce(&mut Vec<u8>)) {
    let p = l.blob_path(digest);
    let mut b = std::fs::read(&p).unwrap();
    f(&mut b);
    std::fs::write(p, b).unwrap();
}

#[test]
fn a_damaged_layer_is_refused_and_nothing_is_kept() {
    let e = Env::new();
    let mut l = e.layout();
    let good = Layer::new().file("a", "aaaa", 0o644).tar();
    let bad = Layer::new().file("b", "bbbb", 0o644).tar();
    let bad_digest = testimg::digest(&bad);
    l.simple(None, vec![good, bad]);
    tamper(&l, &bad_digest, |b| b[600] ^= 1);
    let err = e.prepare("oci:layout").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImageError::Verify { .. }), "{msg}");
    assert!(msg.contains(&bad_digest), "{msg}");
    e.nothing_left();
}

#[test]
fn a_truncated_layer_is_refused() {
    let e = Env::new();
    let mut l = e.layout();
    let (gz, mt) = blob(base_layer(), Comp::Gzip);
    let d = testimg::digest(&gz);
    let m = l.manifest(&config("amd64", json!({}), &[]), &[(gz, mt)]);
    l.add(m, None, None);
    tamper(&l, &d, |b| b.truncate(b.len() / 2));
    let err = e.prepare("oci:layout").unwrap_err().to_string();
    assert!(err.contains(&d), "{err}");
    e.nothing_left();
}

#[test]
fn a_damaged_config_or_manifest_is_refused() {
    let e = Env::new();
    let mut l = e.layout();
    let d = l.simple(None, vec![base_layer()]);
    tamper(&l, &d, |b| b.push(b' '));
    let err = e.prepare("oci:layout").unwrap_err().to_string();
    assert!(err.contains(&d) && err.contains("bytes"), "{err}");
}

#[test]
fn unknown_layer_media_type_is_refused() {
    let e = Env::new();
    let mut l = e.layout();
    let m = l.manifest(
        &config("amd64", json!({}), &[]),
        &[(base_layer(), "application/x-squashfs".into())],
    );
    l.add(m, None, None);
    let err = e.prepare("oci:layout").unwrap_err().to_string();
    assert!(err.contains("application/x-squashfs"), "{err}");
    e.nothing_left();
}

#[test]
fn gzip_and_zstd_layers() {
    let e = Env::new();
    let mut l = e.layout();
    let layers = vec![
        blob(Layer::new().file("g", "gzip", 0o644).tar(), Comp::Gzip),
        blob(Layer::new().file("z", "zstd", 0o644).tar(), Comp::Zstd),
    ];
    let m = l.manifest(&config("amd64", json!({}), &[]), &layers);
    l.add(m, None, None);
    let p = e.prepare("oci:layout").unwrap();
    assert_eq!(std::fs::read_to_string(p.root.join("g")).unwrap(), "gzip");
    assert_eq!(std::fs::read_to_string(p.root.join("z")).unwrap(), "zstd");
}

#[test]
fn docker_archives_plain_and_gzipped() {
    let e = Env::new();
    let layers = vec![
        base_layer(),
        Layer::new().file("etc/.wh.os-release", "", 0o644).tar(),
    ];
    for (gzip, name) in [(false, "plain.tar"), (true, "gz.tar")] {
        docker_archive(&e.t.path().join(name), "example/app:1", &layers, gzip);
        let p = e
            .prepare(&format!("docker-archive:{name}:example/app:1"))
            .unwrap();
        assert_eq!(p.config.cmd, ["/bin/sh"]);
        assert!(p.root.join("bin/tool").exists());
        assert!(!p.root.join("etc/os-release").exists());
        // Bare path: recognised by content.
        assert_eq!(e.prepare(name).unwrap(), p);
    }
    let err = e
        .prepare("docker-archive:plain.tar:other:2")
        .unwrap_err()
        .to_string();
    assert!(err.contains("example/app:1"), "{err}");
}

#[test]
fn docker_archive_layer_not_matching_its_diff_id_is_refused() {
    let e = Env::new();
    let path = e.t.path().join("d.tar");
    docker_archive(&path, "x:1", &[base_layer()], false);
    let mut b = std::fs::read(&path).unwrap();
    // The layer's first file content ("test") sits after two headers.
    let at = b.windows(4).position(|w| w == b"test").unwrap();
    b[at] = b'T';
    std::fs::write(&path, b).unwrap();
    let err = e.prepare("docker-archive:d.tar").unwrap_err();
    assert!(matches!(err, ImageError::Verify { .. }), "{err}");
    e.nothing_left();
}

#[test]
fn oci_archives() {
    let e = Env::new();
    let mut l = e.layout();
    let d = l.simple(Some("t"), vec![base_layer()]);
    testimg::tar_dir(&l.dir, &e.t.path().join("oci.tar"));
    let p = e.prepare("oci-archive:oci.tar:t").unwrap();
    assert_eq!(p.digest, d);
    assert!(p.root.join("bin/tool").exists());
    assert_eq!(e.prepare("oci.tar").unwrap(), p);
}

#[test]
fn rootfs_initramfs_and_registry() {
    let e = Env::new();
    std::fs::create_dir(e.t.path().join("tree")).unwrap();
    let p = e.prepare("rootfs:tree").unwrap();
    let canon = std::fs::canonicalize(e.t.path().join("tree")).unwrap();
    assert_eq!(p.root, canon);
    assert_eq!(p.digest, format!("dir:{}", canon.display()));
    assert_eq!(p.config, ImageConfig::default());
    assert!(
        !e.state().join("images").exists(),
        "rootfs: must not touch the cache"
    );
    let err = e.prepare("initramfs:x.cpio").unwrap_err();
    assert!(matches!(err, ImageError::Unsupported(_)), "{err}");
    // Nothing listens on port 1: a clear error, nothing left behind.
    let err = e.prepare("docker://127.0.0.1:1/a/b:1").unwrap_err();
    assert!(matches!(err, ImageError::Registry { .. }), "{err}");
    assert!(
        err.to_string().starts_with("pulling 127.0.0.1:1/a/b:1: "),
        "{err}"
    );
    e.nothing_left();
}

#[test]
fn list_remove_prune() {
    let e = Env::new();
    let mut l = e.layout();
    let a = l.simple(Some("a"), vec![Layer::new().file("x", "a", 0o644).tar()]);
    let b = l.simple(
        Some("b"),
        vec![Layer::new().dir("ro", 0o555).file("ro/x", "b", 0o444).tar()],
    );
    let c = l.simple(Some("c"), vec![Layer::new().file("x", "c", 0o644).tar()]);
    for t in ["a", "b", "c"] {
        e.prepare(&format!("oci:layout:{t}")).unwrap();
    }
    assert_eq!(super::list(&e.state()).len(), 3);
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    assert_eq!(super::remove(&e.state(), &hex(&a)[..12]).unwrap(), a);
    assert!(super::remove(&e.state(), &hex(&a)).is_err());
    assert!(super::remove(&e.state(), "").is_err());
    assert!(super::remove(&e.state(), "../x").is_err());
    let removed = super::prune(&e.state(), std::slice::from_ref(&c)).unwrap();
    assert_eq!(removed, [b]);
    let left: Vec<String> = super::list(&e.state())
        .into_iter()
        .map(|i| i.digest)
        .collect();
    assert_eq!(left, [c]);
    e.nothing_left_but_one();
}

impl Env {
    fn nothing_left_but_one(&self) {
        assert_eq!(
            std::fs::read_dir(self.state().join("images/sha256"))
                .unwrap()
                .count(),
            1
        );
        assert_eq!(
            std::fs::read_dir(self.state().join("images/tmp"))
                .unwrap()
                .count(),
            0
        );
    }
}

#[test]
fn stale_tmp_is_cleaned() {
    let e = Env::new();
    let mut l = e.layout();
    l.simple(None, vec![base_layer()]);
    let tmp = e.state().join("images/tmp");
    std::fs::create_dir_all(tmp.join("old/rootfs")).unwrap();
    std::fs::create_dir_all(tmp.join("fresh")).unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::open(tmp.join("old"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    e.prepare("oci:layout").unwrap();
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|d| d.unwrap().file_name())
        .collect();
    assert_eq!(left, ["fresh"]);
}

#[test]
fn parallel_prepares_share_one_copy() {
    let e = Env::new();
    let mut l = e.layout();
    let d = l.simple(
        None,
        vec![
            base_layer(),
            Layer::new().file("big", &"x".repeat(1 << 20), 0o644).tar(),
        ],
    );
    let src = ImageSource::parse("oci:layout", e.t.path()).unwrap();
    let state = e.state();
    let got: Vec<PreparedImage> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| s.spawn(|| prepare(&src, &state, &NoProgress).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(got.iter().all(|p| p == &got[0] && p.digest == d));
    e.nothing_left_but_one();
}

/// A full disk: the error names the entry and the layer, and nothing is
/// left behind. Needs root (a small tmpfs is mounted).
#[test]
fn a_full_disk_is_reported_and_cleaned_up() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let e = Env::new();
    let mut l = e.layout();
    let big = Layer::new().file("big", &"x".repeat(2 << 20), 0o644).tar();
    let layer = testimg::digest(&big);
    l.simple(None, vec![big]);
    std::fs::create_dir(e.state()).unwrap();
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let m = nix::mount::mount(
        Some("tmpfs"),
        &e.state(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m,mode=0700"),
    );
    if let Err(err) = m {
        eprintln!("skipped: cannot mount a tmpfs here: {err}");
        return;
    }
    let _guard = Unmount(e.state());
    let err = e.prepare("oci:layout").unwrap_err().to_string();
    assert!(
        err.contains(&format!("\"big\" while unpacking {layer}")),
        "{err}"
    );
    assert!(err.contains("No space left"), "{err}");
    e.nothing_left();
}
