//! `[vm] image` strings: a table of what each parses to, and of the exact
//! errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use super::source::{ImageSource, RegistryRef};

fn reg(registry: &str, repository: &str, tag: Option<&str>, digest: Option<&str>) -> ImageSource {
    ImageSource::Registry(RegistryRef {
        registry: registry.into(),
        repository: repository.into(),
        tag: tag.map(Into::into),
        digest: digest.map(Into::into),
    })
}

#[test]
fn transports() {
    let base = Path::new("/m");
    let p = |s: &str| PathBuf::from(s);
    let d = format!("sha256:{}", "a".repeat(64));
    let by_digest = format!("docker://quay.io/a/b@{d}");
    let table: Vec<(&str, ImageSource)> = vec![
        (
            "oci:img",
            ImageSource::Oci {
                path: p("/m/img"),
                tag: None,
            },
        ),
        (
            "oci:/abs/img:v1",
            ImageSource::Oci {
                path: p("/abs/img"),
                tag: Some("v1".into()),
            },
        ),
        (
            "oci-archive:a.tar:t",
            ImageSource::OciArchive {
                path: p("/m/a.tar"),
                tag: Some("t".into()),
            },
        ),
        (
            "docker-archive:d.tar",
            ImageSource::DockerArchive {
                path: p("/m/d.tar"),
                reference: None,
            },
        ),
        (
            "docker-archive:d.tar:example/app:1",
            ImageSource::DockerArchive {
                path: p("/m/d.tar"),
                reference: Some("example/app:1".into()),
            },
        ),
        ("rootfs:../tree", ImageSource::Rootfs(p("/m/../tree"))),
        (
            "initramfs:/boot/i.cpio",
            ImageSource::Initramfs(p("/boot/i.cpio")),
        ),
        (
            "docker://debian",
            reg("docker.io", "library/debian", Some("latest"), None),
        ),
        (
            "docker://debian:12",
            reg("docker.io", "library/debian", Some("12"), None),
        ),
        (
            "docker://ghcr.io/a/b:v2",
            reg("ghcr.io", "a/b", Some("v2"), None),
        ),
        (
            "docker://127.0.0.1:5000/x",
            reg("127.0.0.1:5000", "x", Some("latest"), None),
        ),
        (
            "docker://localhost/x/y:t",
            reg("localhost", "x/y", Some("t"), None),
        ),
        (&by_digest, reg("quay.io", "a/b", None, Some(&d))),
        ("user/app:1", reg("docker.io", "user/app", Some("1"), None)),
        (
            "debian:12",
            reg("docker.io", "library/debian", Some("12"), None),
        ),
    ];
    for (s, want) in table {
        assert_eq!(ImageSource::parse(s, base).unwrap(), want, "{s}");
    }
}

#[test]
fn display_round_trips() {
    for s in [
        "oci:/a:t",
        "oci-archive:/a.tar",
        "docker-archive:/d.tar:x:1",
        "rootfs:/r",
        "docker://ghcr.io/a/b:1",
    ] {
        assert_eq!(
            ImageSource::parse(s, Path::new("/")).unwrap().to_string(),
            s
        );
    }
}

#[test]
fn errors() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("notes.txt"), "hello").unwrap();
    let table = [
        ("", "image \"\": empty; expected oci:PATH[:TAG]"),
        ("oci:", "image \"oci:\": no path"),
        ("oci:x:", "image \"oci:x:\": empty reference after the path"),
        ("rootfs:", "image \"rootfs:\": no path"),
        (
            "docker:debian",
            "a registry reference is docker://REGISTRY/NAME[:TAG]",
        ),
        ("docker://Debian", "bad repository name"),
        (
            "docker://a/b:t@sha256:12",
            "the digest is not sha256:<64 hex>",
        ),
        ("docker://a/b:", "bad tag"),
        ("./missing", "missing does not exist; expected"),
        ("notes.txt", "is not an initramfs (cpio) or image tar"),
    ];
    for (s, want) in table {
        let e = ImageSource::parse(s, t.path()).unwrap_err().to_string();
        assert!(e.contains(want), "{s}: {e:?} lacks {want:?}");
    }
}

#[test]
fn bare_paths_by_content() {
    let t = tempfile::tempdir().unwrap();
    let b = t.path();
    std::fs::create_dir(b.join("tree")).unwrap();
    std::fs::create_dir(b.join("layout")).unwrap();
    std::fs::write(b.join("layout/oci-layout"), "{}").unwrap();
    std::fs::write(b.join("i.cpio"), b"070701000000").unwrap();
    std::fs::write(b.join("lz4.cpio"), b"\x02\x21\x4c\x18\0\0\0\0").unwrap();
    assert_eq!(
        ImageSource::parse("tree", b).unwrap(),
        ImageSource::Rootfs(b.join("tree"))
    );
    assert_eq!(
        ImageSource::parse("layout", b).unwrap(),
        ImageSource::Oci {
            path: b.join("layout"),
            tag: None
        }
    );
    assert_eq!(
        ImageSource::parse("i.cpio", b).unwrap(),
        ImageSource::Initramfs(b.join("i.cpio"))
    );
    assert_eq!(
        ImageSource::parse("lz4.cpio", b).unwrap(),
        ImageSource::Initramfs(b.join("lz4.cpio"))
    );
    let mut tb = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(1);
    h.set_cksum();
    tb.append_data(&mut h, "other", b"x".as_slice()).unwrap();
    std::fs::write(b.join("plain.tar"), tb.into_inner().unwrap()).unwrap();
    let e = ImageSource::parse("plain.tar", b).unwrap_err().to_string();
    assert!(e.contains("neither manifest.json"), "{e}");
}

#[test]
fn tilde_is_the_home_directory() {
    let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
        return;
    };
    let b = Path::new("/manifests");
    assert_eq!(
        ImageSource::parse("oci:~/images/agent/oci:latest", b).unwrap(),
        ImageSource::Oci {
            path: home.join("images/agent/oci"),
            tag: Some("latest".into())
        }
    );
    assert_eq!(
        ImageSource::parse("rootfs:~/r", b).unwrap(),
        ImageSource::Rootfs(home.join("r"))
    );
    // Only a leading "~/" is special.
    assert_eq!(
        ImageSource::parse("rootfs:a~/r", b).unwrap(),
        ImageSource::Rootfs(b.join("a~/r"))
    );
}
