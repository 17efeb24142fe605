//! A host secret (or a credential) in a name never goes upstream: not in
//! a guest query, not in the proxy's own lookups; the refusal is audited
//! without the name. Also: a lookup whose caller goes away leaves nothing
//! in flight.

use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::support::{addrs, manifest, parse, query, FakeUpstream};
use crate::dns::policy::NameScan;
use crate::dns::{Audit, Handler};
use crate::manifest::Secret;
use crate::proxy::dlp::Dlp;

/// A host secret shaped like many API tokens (40 hex characters).
const SECRET: &str = "3f9a1c7e5b2d8f0a4c6e1b3d5f7a9c0e2b4d6f8a";

/// The secret cut into labels of 15 characters or fewer (short enough that
/// the label-shape checks do not judge them) under `*.example.com`.
fn secret_name() -> String {
    format!(
        "{}.{}.{}.x.example.com",
        &SECRET[..15],
        &SECRET[15..30],
        &SECRET[30..]
    )
}

fn scan() -> NameScan {
    let dlp = Dlp::new(&[Secret {
        name: "probe".into(),
        value: SECRET.into(),
    }])
    .unwrap();
    NameScan(Arc::new(move |n: &str| dlp.scan_name(n).is_some()))
}

fn handler(up: Arc<FakeUpstream>, audit: Audit) -> Handler {
    Handler::new(&manifest(""), up, audit).scan_names(scan())
}

#[tokio::test]
async fn a_secret_cut_into_labels_never_goes_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let up = FakeUpstream::with(vec![(
        "www.example.com",
        RecordType::A,
        addrs("www.example.com", 300, &["93.184.216.34"]),
    )]);
    let h = handler(up.clone(), Audit::to_file(&path).unwrap());
    // Whole, cut in labels, and one 12-byte piece in a label.
    let piece = format!("{}.example.com", &SECRET[3..17]);
    for name in [secret_name(), piece] {
        let ans = parse(
            &h.handle(&query(7, &format!("{name}."), RecordType::A, false))
                .await,
        );
        assert_eq!(ans.response_code(), ResponseCode::NXDomain, "{name}");
        // The proxy's lookups go through the same filter.
        let r = crate::launch::lookup::resolve(&h, &name).await;
        assert!(r.is_err(), "{name}: {r:?}");
    }
    assert_eq!(up.calls(), 0, "a name holding the secret went upstream");
    // Names without it still resolve.
    let ans = parse(
        &h.handle(&query(8, "www.example.com.", RecordType::A, false))
            .await,
    );
    assert_eq!(ans.answers().len(), 1);
    h.flush();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains(&SECRET[3..15]),
        "the audit log holds the secret: {text}"
    );
    let refused = text
        .lines()
        .filter(|l| l.contains("secret-in-name"))
        .count();
    assert!(refused >= 2, "{text}");
}

#[tokio::test]
async fn a_lookup_whose_caller_goes_away_leaves_nothing_in_flight() {
    let m = manifest("[dns.limits]\nwindow_secs = 1\n");
    let up = Arc::new(FakeUpstream {
        delay: Duration::from_millis(200),
        ..Default::default()
    });
    let h = Handler::new(&m, up, Audit::tracing_only());
    for n in 0..100 {
        let q = query(1, &format!("w{n}.example.com."), RecordType::A, false);
        // Cancelled before the upstream answers (a proxy lookup whose
        // request the guest reset).
        let r = tokio::time::timeout(Duration::from_millis(1), h.handle(&q)).await;
        assert!(r.is_err(), "answered within 1 ms");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.in_flight(), 0, "cancelled lookups left their entries");
}
