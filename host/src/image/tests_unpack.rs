//! Layer application: whiteouts, opaque directories, links, fifos,
//! devices, modes, owners, xattrs, mtimes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use tar::EntryType;

use super::testimg::{Layer, MTIME};
use super::unpack::{Stats, Unpacker};

fn unpack(root: &Path, layers: Vec<Vec<u8>>) -> Stats {
    let mut u = Unpacker::new(root).unwrap();
    for (i, l) in layers.iter().enumerate() {
        u.apply_layer(&format!("layer{i}"), l.as_slice()).unwrap();
    }
    u.finish().unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn whiteouts_and_opaque_directories() {
    let t = tempfile::tempdir().unwrap();
    let l1 = Layer::new()
        .dir("a", 0o755)
        .file("a/keep", "k", 0o644)
        .file("a/gone", "g", 0o644)
        .dir("d", 0o755)
        .file("d/old", "o", 0o644)
        .file("d/sub/old2", "o", 0o644)
        .file("e/deep/x", "x", 0o644)
        .tar();
    let l2 = Layer::new()
        .file("a/.wh.gone", "", 0o644)
        .file("d/early", "e", 0o644)
        .file("d/.wh..wh..opq", "", 0o644)
        .file("d/new", "n", 0o644)
        .file("d/sub/new2", "n", 0o644)
        .file(".wh.e", "", 0o644)
        .file(".wh.never-existed", "", 0o644)
        .tar();
    unpack(t.path(), vec![l1, l2]);
    assert_eq!(names(t.path()), ["a", "d"]);
    assert_eq!(names(&t.path().join("a")), ["keep"]);
    assert_eq!(names(&t.path().join("d")), ["early", "new", "sub"]);
    assert_eq!(names(&t.path().join("d/sub")), ["new2"]);
}

#[test]
fn opaque_directory_keeps_this_layers_subdirectories_only() {
    let t = tempfile::tempdir().unwrap();
    let l1 = Layer::new()
        .file("d/s/low", "", 0o644)
        .file("d/t/low", "", 0o644)
        .tar();
    let l2 = Layer::new()
        .dir("d/s", 0o755)
        .file("d/.wh..wh..opq", "", 0o644)
        .tar();
    unpack(t.path(), vec![l1, l2]);
    assert_eq!(names(&t.path().join("d")), ["s"]);
    assert!(names(&t.path().join("d/s")).is_empty());
}

#[test]
fn opaque_marker_after_this_layers_entries_in_a_lower_subdirectory() {
    let t = tempfile::tempdir().unwrap();
    let l1 = Layer::new()
        .file("d/sub/old", "", 0o644)
        .file("d/gone", "", 0o644)
        .tar();
    let l2 = Layer::new()
        .file("d/sub/new", "", 0o644)
        .file("d/.wh..wh..opq", "", 0o644)
        .tar();
    unpack(t.path(), vec![l1, l2]);
    assert_eq!(names(&t.path().join("d")), ["sub"]);
    assert_eq!(names(&t.path().join("d/sub")), ["new"]);
}

#[test]
fn links_fifos_devices() {
    let t = tempfile::tempdir().unwrap();
    let l = Layer::new()
        .file("f", "data", 0o644)
        .hardlink("h", "f")
        .hardlink("./sub/h2", "/f")
        .symlink("s", "/etc/passwd")
        .symlink("rel", "../../..")
        .fifo("p")
        .chardev("dev/null")
        .tar();
    let stats = unpack(t.path(), vec![l]);
    let r = t.path();
    let ino = std::fs::metadata(r.join("f")).unwrap().ino();
    assert_eq!(std::fs::metadata(r.join("h")).unwrap().ino(), ino);
    assert_eq!(std::fs::metadata(r.join("sub/h2")).unwrap().ino(), ino);
    assert_eq!(
        std::fs::read_link(r.join("s")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        std::fs::read_link(r.join("rel")).unwrap(),
        Path::new("../../..")
    );
    let p = std::fs::symlink_metadata(r.join("p")).unwrap();
    assert!(p.file_type().is_fifo());
    assert_eq!(p.permissions().mode() & 0o7777, 0o640);
    assert!(!r.join("dev/null").exists());
    assert_eq!(stats.devices_skipped, 1);
    assert_eq!(stats.bytes, 4);
}

#[test]
fn modes_setuid_and_read_only_directories() {
    let t = tempfile::tempdir().unwrap();
    let l1 = Layer::new()
        .dir("ro", 0o555)
        .file("ro/f", "x", 0o444)
        .file("suid", "x", 0o4755)
        .file("sgid", "x", 0o2711)
        .dir("tmp", 0o1777)
        .tar();
    let l2 = Layer::new().file("ro/g", "y", 0o600).tar();
    unpack(t.path(), vec![l1, l2]);
    let mode = |p: &str| {
        std::fs::symlink_metadata(t.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("ro"), 0o555);
    assert_eq!(mode("ro/f"), 0o444);
    assert_eq!(mode("ro/g"), 0o600);
    assert_eq!(mode("suid"), 0o4755);
    assert_eq!(mode("sgid"), 0o2711);
    assert_eq!(mode("tmp"), 0o1777);
    let mtime = std::fs::metadata(t.path().join("ro")).unwrap().mtime();
    assert_eq!(mtime, MTIME as i64);
    assert_eq!(
        std::fs::metadata(t.path().join("suid")).unwrap().mtime(),
        MTIME as i64
    );
    // The cache must be removable by its (unprivileged) owner too.
    super::unpack::remove_tree(&t.path().join("ro")).unwrap();
}

#[test]
fn replacing_files_and_directories_across_layers() {
    let t = tempfile::tempdir().unwrap();
    let l1 = Layer::new()
        .file("x", "file", 0o644)
        .file("y/inner", "i", 0o644)
        .tar();
    let l2 = Layer::new()
        .dir("x", 0o755)
        .file("x/now-a-dir", "d", 0o644)
        .file("y", "now a file", 0o644)
        .tar();
    unpack(t.path(), vec![l1, l2]);
    assert_eq!(
        std::fs::read_to_string(t.path().join("x/now-a-dir")).unwrap(),
        "d"
    );
    assert_eq!(
        std::fs::read_to_string(t.path().join("y")).unwrap(),
        "now a file"
    );
}

#[test]
fn owners_when_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: owners are only set when unpacking as root");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let l = Layer::new()
        .raw(
            "d",
            EntryType::Directory,
            0o750,
            (1234, 5678),
            None,
            b"",
            &[],
        )
        .owned("d/f", "x", 0o4750, 1000, 1001)
        .raw(
            "d/s",
            EntryType::Symlink,
            0o777,
            (42, 43),
            Some("f"),
            b"",
            &[],
        )
        .tar();
    unpack(t.path(), vec![l]);
    let own = |p: &str| {
        let m = std::fs::symlink_metadata(t.path().join(p)).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(own("d"), (1234, 5678));
    assert_eq!(own("d/f"), (1000, 1001));
    assert_eq!(own("d/s"), (42, 43));
    // chown clears setuid: it is set again after.
    let m = std::fs::metadata(t.path().join("d/f")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o4750);
}

#[test]
fn xattrs_from_pax_records() {
    let t = tempfile::tempdir().unwrap();
    let l = Layer::new()
        .raw(
            "f",
            EntryType::Regular,
            0o644,
            (0, 0),
            None,
            b"x",
            &[("SCHILY.xattr.user.bottle", b"yes".as_slice())],
        )
        .tar();
    let stats = unpack(t.path(), vec![l]);
    if stats.xattrs_skipped > 0 {
        eprintln!("skipped: the temp filesystem does not take user xattrs");
        return;
    }
    let path = std::ffi::CString::new(t.path().join("f").as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = [0u8; 16];
    // SAFETY: `path` and `buf` are valid for the call.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"user.bottle".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert_eq!(n, 3);
    assert_eq!(&buf[..3], b"yes");
}
