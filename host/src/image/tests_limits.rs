//! Unpacking limits (`unpack/limits.rs`): bytes written, entries, one
//! member's headers; sparse holes left as holes. Layers are generated
//! lazily (a header, then `io::repeat`): no test holds one in memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tar::{EntryType, Header};

use super::testimg::Layer;
use super::unpack::{Limits, Unpacker};

struct Root {
    _t: tempfile::TempDir,
    root: PathBuf,
}

fn root() -> Root {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir(&root).unwrap();
    Root { _t: t, root }
}

fn header(kind: EntryType, path: &str, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_path(path).unwrap();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    h
}

/// A member of `size` bytes of `fill` (padded), as a reader.
fn member(h: &Header, fill: u8) -> impl Read {
    let size = h.entry_size().unwrap();
    let pad = (512 - size % 512) % 512;
    io::Cursor::new(h.as_bytes().to_vec())
        .chain(io::repeat(fill).take(size))
        .chain(io::repeat(0).take(pad))
}

fn end() -> impl Read {
    io::repeat(0).take(1024)
}

/// Counts the bytes the unpacker took.
struct Counting<R>(R, Arc<AtomicU64>);

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn limits(max_bytes: u64, max_entries: u64) -> Limits {
    Limits {
        max_bytes,
        max_entries,
        ..Limits::default()
    }
}

/// A file bigger than the limit is refused before anything is written;
/// files adding up over it, across layers, are refused too.
#[test]
fn bytes_written_are_limited_per_image() {
    let r = root();
    let mut u = Unpacker::with_limits(&r.root, limits(3 << 20, 100)).unwrap();
    let big = member(&header(EntryType::Regular, "big", 256 << 20), b'a').chain(end());
    let err = u.apply_layer("l0", big).unwrap_err().to_string();
    assert!(err.contains("BOTTLE_IMAGE_MAX_BYTES"), "{err}");
    assert!(
        std::fs::metadata(r.root.join("big")).map_or(0, |m| m.len()) == 0,
        "bytes written"
    );
    let r = root();
    let mut u = Unpacker::with_limits(&r.root, limits(3 << 20, 100)).unwrap();
    let one = || member(&header(EntryType::Regular, "f", 1 << 20), b'a');
    let two = one()
        .chain(member(&header(EntryType::Regular, "g", 1 << 20), b'b'))
        .chain(end());
    u.apply_layer("l0", two).unwrap();
    let err = u
        .apply_layer(
            "l1",
            member(&header(EntryType::Regular, "h", 2 << 20), b'c').chain(end()),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than 3145728 bytes"), "{err}");
}

/// The data of entries that are skipped (a device with content) counts
/// too, and is read without touching the header budget.
#[test]
fn skipped_entries_data_is_counted_not_a_header() {
    let r = root();
    let mut u = Unpacker::with_limits(&r.root, limits(8 << 20, 100)).unwrap();
    let l = member(&header(EntryType::Char, "dev", 2 << 20), b'd')
        .chain(member(&header(EntryType::Regular, "f", 1024), b'a'))
        .chain(end());
    u.apply_layer("l0", l).unwrap();
    assert_eq!(std::fs::metadata(r.root.join("f")).unwrap().len(), 1024);
    let mut u = Unpacker::with_limits(&r.root, limits(1 << 20, 100)).unwrap();
    let l = member(&header(EntryType::Char, "dev", 2 << 20), b'd').chain(end());
    let err = u.apply_layer("l0", l).unwrap_err().to_string();
    assert!(err.contains("BOTTLE_IMAGE_MAX_BYTES"), "{err}");
}

#[test]
fn entries_are_limited_per_image() {
    let r = root();
    let mut u = Unpacker::with_limits(&r.root, limits(1 << 20, 4)).unwrap();
    let l = Layer::new().file("a", "a", 0o644).file("b", "b", 0o644);
    u.apply_layer("l0", l.tar().as_slice()).unwrap();
    let l = Layer::new()
        .file("c", "c", 0o644)
        .file("d", "d", 0o644)
        .file("e", "e", 0o644);
    let err = u
        .apply_layer("l1", l.tar().as_slice())
        .unwrap_err()
        .to_string();
    assert!(err.contains("BOTTLE_IMAGE_MAX_ENTRIES"), "{err}");
    assert!(!r.root.join("e").exists());
}

/// A PAX record, GNU long name or long link of 64 MiB: refused after
/// about MAX_HEADERS bytes, not read whole into memory.
#[test]
fn a_huge_pax_record_or_long_name_is_not_read_whole() {
    for kind in [
        EntryType::XHeader,
        EntryType::GNULongName,
        EntryType::GNULongLink,
    ] {
        let r = root();
        let mut u = Unpacker::with_limits(&r.root, Limits::default()).unwrap();
        let took = Arc::new(AtomicU64::new(0));
        let l = member(&header(kind, "././@LongLink", 64 << 20), b'a')
            .chain(member(&header(EntryType::Regular, "f", 1), b'a'))
            .chain(end());
        let err = u
            .apply_layer("l0", Counting(l, took.clone()))
            .unwrap_err()
            .to_string();
        let took = took.load(Ordering::Relaxed);
        assert!(err.contains("headers"), "{kind:?}: {err}");
        assert!(took <= 2 << 20, "{kind:?}: read {took} bytes of the record");
    }
}

/// A GNU sparse entry: one 512-byte chunk at the end of a 256 MiB file,
/// in a 2 KiB layer. The holes stay holes; the full size counts against
/// the limit.
#[test]
fn sparse_holes_are_holes_and_count_at_full_size() {
    let real: u64 = 256 << 20;
    let mut h = header(EntryType::GNUSparse, "sparse", 512);
    {
        let g = h.as_gnu_mut().unwrap();
        let oct = |v: u64| {
            let mut a = [0u8; 12];
            a.copy_from_slice(format!("{v:011o}\0").as_bytes());
            a
        };
        g.realsize = oct(real);
        g.sparse[0].offset = oct(real - 512);
        g.sparse[0].numbytes = oct(512);
    }
    h.set_cksum();
    let layer = || member(&h, b'x').chain(end());
    let r = root();
    let mut u = Unpacker::with_limits(&r.root, Limits::default()).unwrap();
    u.apply_layer("l0", layer()).unwrap();
    let m = std::fs::metadata(r.root.join("sparse")).unwrap();
    assert_eq!(m.len(), real);
    assert!(
        m.blocks() * 512 <= 1 << 20,
        "{} bytes on disk",
        m.blocks() * 512
    );
    let mut tail = Vec::new();
    std::fs::File::open(r.root.join("sparse"))
        .unwrap()
        .take(real)
        .read_to_end(&mut tail)
        .unwrap();
    assert!(tail[..(real - 512) as usize].iter().all(|&b| b == 0));
    assert!(tail[(real - 512) as usize..].iter().all(|&b| b == b'x'));
    let r = root();
    let mut u = Unpacker::with_limits(&r.root, limits(real - 1, 100)).unwrap();
    let err = u.apply_layer("l0", layer()).unwrap_err().to_string();
    assert!(err.contains("BOTTLE_IMAGE_MAX_BYTES"), "{err}");
}

#[test]
fn limits_from_the_environment() {
    let get = |bytes: Option<&str>, entries: Option<&str>| {
        Limits::from_lookup(|n| match n {
            "BOTTLE_IMAGE_MAX_BYTES" => bytes.map(String::from),
            "BOTTLE_IMAGE_MAX_ENTRIES" => entries.map(String::from),
            _ => None,
        })
    };
    assert_eq!(get(None, None).unwrap(), Limits::default());
    assert_eq!(get(Some("10"), Some("20")).unwrap(), limits(10, 20));
    for bad in ["0", "-1", "1G", ""] {
        let err = get(Some(bad), None).unwrap_err().to_string();
        assert!(err.contains("BOTTLE_IMAGE_MAX_BYTES"), "{err}");
    }
}

/// A layer of `n` directories, each `depth` components of 30 bytes deep
/// under a top directory of its own, built by `tar` on a thread as it is
/// read (GNU long names).
fn deep_dirs(n: usize, depth: usize) -> impl Read {
    let (rd, wr) = std::io::pipe().unwrap();
    std::thread::spawn(move || {
        let mut b = tar::Builder::new(wr);
        let comp = "c".repeat(30);
        for i in 0..n {
            let mut path = format!("top{i}");
            for _ in 1..depth {
                path.push('/');
                path.push_str(&comp);
            }
            let mut h = Header::new_gnu();
            h.set_entry_type(EntryType::Directory);
            h.set_size(0);
            h.set_mode(0o755);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            // A closed pipe (the unpacker refused the layer) ends this.
            if b.append_data(&mut h, &path, io::empty()).is_err() {
                return;
            }
        }
        let _ = b.finish();
    });
    rd
}

/// Paths deeper than MAX_DEPTH are refused; many deep directories, each
/// under a top directory of its own, hit the bookkeeping cap instead of
/// growing the unpacker's memory with the square of their depth.
#[test]
fn deep_paths_are_bounded() {
    use super::unpack::{MAX_DEPTH, PATH_COMPONENT_COST};
    let r = root();
    let mut u = Unpacker::new(&r.root).unwrap();
    let e = u
        .apply_layer("deep", deep_dirs(1, MAX_DEPTH + 1))
        .unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("deeper than"),
        "{}",
        &e[e.len().saturating_sub(300)..]
    );

    let r = root();
    let cap = 8 << 20;
    let lim = Limits {
        max_bookkeeping: cap,
        ..Limits::default()
    };
    // Each directory's ancestors: about depth^2 / 2 components.
    let per_dir = MAX_DEPTH * MAX_DEPTH / 2 * (30 + PATH_COMPONENT_COST);
    let n = 4 * cap / per_dir + 4;
    let mut u = Unpacker::with_limits(&r.root, lim).unwrap();
    let e = u.apply_layer("deep", deep_dirs(n, MAX_DEPTH)).unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("to keep track of"),
        "{}",
        &e[e.len().saturating_sub(300)..]
    );
}
