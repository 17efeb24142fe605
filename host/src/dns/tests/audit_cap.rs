//! An audit log at its cap (`BOTTLE_AUDIT_MAX_BYTES`) fails closed like a
//! full disk: SERVFAIL, nothing more resolved upstream, no line dropped or
//! torn, and what was in the file before counts.

use hickory_proto::op::ResponseCode as R;
use hickory_proto::rr::RecordType as T;

use super::support::{addrs, manifest, parse, query, rt, FakeUpstream};
use crate::dns::{Audit, Handler};

#[test]
fn a_log_at_its_cap_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dns-audit.jsonl");
    let up = FakeUpstream::with(vec![(
        "www.example.com",
        T::A,
        addrs("www.example.com", 300, &["93.184.216.34"]),
    )]);
    let m = manifest("");
    // One answered query, with no cap.
    let h = Handler::new(
        &m,
        up.clone(),
        Audit::to_file_capped(&path, u64::MAX).unwrap(),
    );
    let a = parse(&rt().block_on(h.handle(&query(1, "www.example.com.", T::A, false))));
    assert_eq!(a.response_code(), R::NoError);
    drop(h);
    let one = std::fs::metadata(&path).unwrap().len();
    assert!(one > 0);

    // Opened again with room for less than a second line: the line already
    // there counts, so the next answer cannot be audited and is not given.
    let h = Handler::new(
        &m,
        up.clone(),
        Audit::to_file_capped(&path, one + 10).unwrap(),
    );
    rt().block_on(async {
        for id in 2..6 {
            let a = parse(&h.handle(&query(id, "www.example.com.", T::A, false)).await);
            assert_eq!((a.id(), a.response_code()), (id, R::ServFail));
            assert!(a.answers().is_empty(), "an unaudited answer");
        }
    });
    // The fresh handler asked upstream once; after its line failed,
    // nothing more was resolved.
    assert_eq!(up.calls(), 2);
    drop(h);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), one);
}

/// Denials are buffered, not written through: near the cap, every one
/// given out still gets its line (those that would not fit are refused
/// before they are answered), instead of the buffer being refused whole
/// and its answered lines lost.
#[test]
fn every_denial_given_out_near_the_cap_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dns-audit.jsonl");
    let up = FakeUpstream::with(vec![]);
    let m = manifest("");
    let ask = |h: &Handler, n: u16| {
        rt().block_on(async {
            let mut given = 0;
            for id in 1..=n {
                let a = parse(&h.handle(&query(id, "denied.test.", T::A, false)).await);
                match a.response_code() {
                    R::NXDomain => given += 1,
                    R::ServFail => {}
                    other => panic!("{other:?}"),
                }
            }
            given
        })
    };
    let h = Handler::new(
        &m,
        up.clone(),
        Audit::to_file_capped(&path, u64::MAX).unwrap(),
    );
    assert_eq!(ask(&h, 1), 1);
    drop(h);
    let one = std::fs::metadata(&path).unwrap().len();
    std::fs::remove_file(&path).unwrap();

    // Room for three and a half lines.
    let cap = 3 * one + one / 2;
    let h = Handler::new(&m, up.clone(), Audit::to_file_capped(&path, cap).unwrap());
    let given = ask(&h, 10);
    drop(h);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(given, 3);
    assert_eq!(text.lines().count(), given);
    assert!(text.len() as u64 <= cap);
    assert_eq!(up.calls(), 0);
}
