//! An audit log at its cap (`BOTTLE_AUDIT_MAX_BYTES`) fails closed like a
//! full disk: SERVFAIL, nothing more resolved upstream, no line dropped or
//! torn, and what was in the file before counts.

use hickory_proto::op::ResponseCode as R;
use hickory_proto::rr::RecordType as T;

use super::support::{addrs, manifest, parse, query, FakeUpstream};
use crate::dns::{Audit, Handler};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

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
