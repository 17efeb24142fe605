//! Hostile layers: each is refused (or, for a leading `/`, confined), and
//! nothing is written outside the root: the sentinel directory beside it
//! and the host's `/etc` stay as they were.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::testimg::{blob, config, digest, docker_archive_listing, Comp, Layer, Layout};
use super::unpack::Unpacker;
use super::{prepare, ImageError, ImageSource, NoProgress};

struct Sandbox {
    _t: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
}

fn sandbox() -> Sandbox {
    let t = tempfile::tempdir().unwrap();
    let base = t.path().to_path_buf();
    let root = base.join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(base.join("sentinel")).unwrap();
    std::fs::write(base.join("sentinel/keep"), "x").unwrap();
    Sandbox { _t: t, base, root }
}

fn apply(sb: &Sandbox, layers: Vec<Vec<u8>>) -> Result<(), ImageError> {
    let mut u = Unpacker::new(&sb.root)?;
    for (i, l) in layers.iter().enumerate() {
        u.apply_layer(&format!("layer{i}"), l.as_slice())?;
    }
    u.finish().map(|_| ())
}

/// Nothing beside the root changed, nothing reached the host's /etc.
fn untouched(sb: &Sandbox) {
    let mut names: Vec<String> = std::fs::read_dir(&sb.base)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["root", "sentinel"]);
    let s: Vec<_> = std::fs::read_dir(sb.base.join("sentinel"))
        .unwrap()
        .collect();
    assert_eq!(s.len(), 1, "sentinel gained entries");
    assert_eq!(
        std::fs::read_to_string(sb.base.join("sentinel/keep")).unwrap(),
        "x"
    );
    for p in ["/etc/bbesc", "/bbesc", "/etc/passwd-bbesc"] {
        assert!(!Path::new(p).exists(), "{p} written");
    }
}

fn refused(sb: &Sandbox, layers: Vec<Vec<u8>>, why: &str) {
    let e = apply(sb, layers).expect_err("must be refused");
    let msg = e.to_string();
    assert!(matches!(e, ImageError::UnsafeEntry { .. }), "{msg}");
    assert!(msg.contains(why), "{msg:?} lacks {why:?}");
    untouched(sb);
}

#[test]
fn dotdot_refused() {
    let sb = sandbox();
    refused(
        &sb,
        vec![Layer::new().file("../escape", "x", 0o644).tar()],
        "`..`",
    );
    refused(
        &sb,
        vec![Layer::new().file("a/../../x", "x", 0o644).tar()],
        "`..`",
    );
    refused(
        &sb,
        vec![Layer::new().file("./../sentinel/keep", "y", 0o644).tar()],
        "`..`",
    );
    // A PAX `path` / `linkpath` record overrides the header's name.
    let pax = Layer::new().raw(
        "harmless",
        EntryType::Regular,
        0o644,
        (0, 0),
        None,
        b"x",
        &[("path", b"../sentinel/pax".as_slice())],
    );
    refused(&sb, vec![pax.tar()], "`..`");
    let pax = Layer::new().file("f", "x", 0o644).raw(
        "h",
        EntryType::Link,
        0o644,
        (0, 0),
        Some("f"),
        b"",
        &[("linkpath", b"../sentinel/keep".as_slice())],
    );
    refused(&sb, vec![pax.tar()], "hard link target");
}

#[test]
fn absolute_path_is_stripped_into_the_root() {
    let sb = sandbox();
    apply(&sb, vec![Layer::new().file("/abs/path", "x", 0o644).tar()]).unwrap();
    assert_eq!(
        std::fs::read_to_string(sb.root.join("abs/path")).unwrap(),
        "x"
    );
    assert!(!Path::new("/abs/path").exists());
    untouched(&sb);
}

#[test]
fn symlink_to_slash_then_through_it() {
    let sb = sandbox();
    let l = Layer::new()
        .symlink("link", "/")
        .file("link/etc/bbesc", "x", 0o644);
    refused(&sb, vec![l.tar()], "symlink");
}

#[test]
fn symlink_to_dotdot_then_through_it() {
    let sb = sandbox();
    let l = Layer::new()
        .symlink("link", "..")
        .file("link/bbesc", "x", 0o644);
    refused(&sb, vec![l.tar()], "symlink");
}

#[test]
fn symlink_in_one_layer_used_in_the_next() {
    let sb = sandbox();
    let l1 = Layer::new().symlink("link", "../sentinel").tar();
    let l2 = Layer::new().file("link/x", "x", 0o644).tar();
    refused(&sb, vec![l1, l2], "symlink");
    let l1 = Layer::new().dir("d", 0o755).symlink("d/link", "/etc").tar();
    let l2 = Layer::new().file("d/link/bbesc", "x", 0o644).tar();
    refused(&sb, vec![l1, l2], "symlink");
}

#[test]
fn hard_links_out_of_the_root_refused() {
    let sb = sandbox();
    refused(
        &sb,
        vec![Layer::new().hardlink("x", "../sentinel/keep").tar()],
        "`..`",
    );
    let before = std::fs::metadata("/etc/passwd").map(|m| m.nlink()).ok();
    refused(
        &sb,
        vec![Layer::new().hardlink("x", "/etc/passwd").tar()],
        "does not exist",
    );
    assert_eq!(
        std::fs::metadata("/etc/passwd").map(|m| m.nlink()).ok(),
        before
    );
    assert!(!sb.root.join("x").exists());
    let l = Layer::new()
        .symlink("link", "/etc")
        .hardlink("x", "link/passwd");
    refused(&sb, vec![l.tar()], "symlink");
    let l = Layer::new()
        .symlink("link", "../sentinel")
        .hardlink("x", "link/keep");
    refused(&sb, vec![l.tar()], "symlink");
}

#[test]
fn whiteout_tricks_refused() {
    let sb = sandbox();
    refused(
        &sb,
        vec![Layer::new().file(".wh.../x", "", 0o644).tar()],
        "whiteout",
    );
    refused(
        &sb,
        vec![Layer::new().file(".wh..", "", 0o644).tar()],
        "whiteout",
    );
    refused(
        &sb,
        vec![Layer::new().file("a/.wh...", "", 0o644).tar()],
        "whiteout",
    );
    refused(
        &sb,
        vec![Layer::new().file("../.wh.sentinel", "", 0o644).tar()],
        "`..`",
    );
    refused(
        &sb,
        vec![Layer::new().file(".wh.", "", 0o644).tar()],
        "whiteout",
    );
    // An opaque marker in a directory that is a symlink to outside.
    let l = Layer::new()
        .symlink("link", "../sentinel")
        .file("link/.wh..wh..opq", "", 0o644);
    refused(&sb, vec![l.tar()], "symlink");
    // A whiteout through a symlink.
    let l1 = Layer::new().symlink("link", "../sentinel").tar();
    let l2 = Layer::new().file("link/.wh.keep", "", 0o644).tar();
    refused(&sb, vec![l1, l2], "symlink");
}

#[test]
fn whiteout_of_a_symlink_removes_the_link_only() {
    let sb = sandbox();
    let l1 = Layer::new().symlink("link", "../sentinel").tar();
    let l2 = Layer::new().file(".wh.link", "", 0o644).tar();
    apply(&sb, vec![l1, l2]).unwrap();
    assert!(std::fs::symlink_metadata(sb.root.join("link")).is_err());
    untouched(&sb);
}

#[test]
fn entries_over_a_symlink_replace_it() {
    let sb = sandbox();
    let l1 = Layer::new()
        .symlink("f", "../sentinel/keep")
        .symlink("d", "../sentinel")
        .tar();
    let l2 = Layer::new()
        .file("f", "new", 0o644)
        .dir("d", 0o755)
        .file("d/x", "y", 0o644)
        .tar();
    apply(&sb, vec![l1, l2]).unwrap();
    assert_eq!(std::fs::read_to_string(sb.root.join("f")).unwrap(), "new");
    assert!(std::fs::symlink_metadata(sb.root.join("d"))
        .unwrap()
        .is_dir());
    untouched(&sb);
}

#[test]
fn too_long_paths_refused() {
    let sb = sandbox();
    let long = "a/".repeat(2500);
    refused(
        &sb,
        vec![Layer::new().file(&long, "x", 0o644).tar()],
        "too long",
    );
    let name = "n".repeat(300);
    refused(
        &sb,
        vec![Layer::new().file(&name, "x", 0o644).tar()],
        "too long",
    );
}

#[test]
fn a_file_where_a_directory_is_expected_refused() {
    let sb = sandbox();
    let l = Layer::new().file("f", "x", 0o644).file("f/x", "x", 0o644);
    refused(&sb, vec![l.tar()], "not a directory");
}

/// `docker save`'s `manifest.json` listing fewer layers than the config's
/// `rootfs.diff_ids`: refused, and nothing is cached under the image ID
/// (the config's digest) for the genuine archive to find.
#[test]
fn a_docker_archive_missing_layers_is_refused_and_not_cached() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let layers = vec![
        Layer::new().file("etc/base", "base", 0o644).tar(),
        Layer::new()
            .file("etc/.wh.base", "", 0o644)
            .file("etc/security-fix", "fixed", 0o644)
            .tar(),
    ];
    docker_archive_listing(&t.path().join("evil.tar"), "app:1", &layers, false, 1);
    docker_archive_listing(&t.path().join("real.tar"), "app:1", &layers, false, 2);
    let evil = ImageSource::parse("docker-archive:evil.tar", t.path()).unwrap();
    let err = prepare(&evil, &state, &NoProgress).unwrap_err().to_string();
    assert!(err.contains("lists 2 layers"), "{err}");
    let real = ImageSource::parse("docker-archive:real.tar", t.path()).unwrap();
    let p = prepare(&real, &state, &NoProgress).unwrap();
    assert!(p.root.join("etc/security-fix").exists());
    assert!(!p.root.join("etc/base").exists());
}

/// The same for an OCI manifest: its layers must match the config's
/// `diff_ids` in number.
#[test]
fn an_oci_manifest_with_a_layer_count_not_the_configs_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let l = Layout::new(&t.path().join("layout"));
    let layer = Layer::new().file("etc/base", "base", 0o644).tar();
    let ids = [digest(&layer), digest(b"missing")];
    let m = l.manifest(
        &config("amd64", serde_json::json!({}), &ids),
        &[blob(layer, Comp::None)],
    );
    let mut l = l;
    l.add(m, Some("x"), None);
    let src = ImageSource::parse("oci:layout:x", t.path()).unwrap();
    let err = prepare(&src, &t.path().join("state"), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("lists 2 layers"), "{err}");
}
