//! The `http_scan` checks: DLP over request bytes, whole and split.

use std::sync::{Arc, OnceLock};

use bottle_host::manifest::Secret;
use bottle_host::proxy::dlp::{Dlp, StreamScanner};

fn dlp() -> &'static Arc<Dlp> {
    static D: OnceLock<Arc<Dlp>> = OnceLock::new();
    D.get_or_init(|| {
        let secret = |name: &str, value: &str| Secret {
            name: name.into(),
            value: value.into(),
        };
        Dlp::new(&[
            secret("demo", "hunter2-very-secret-value"),
            secret("short", "s3cr3t!x"),
        ])
        .expect("the fuzz secrets compile")
    })
}

/// Bytes 0–1 pick the split point; the rest is scanned whole, then in two
/// chunks through a [`StreamScanner`]; the verdicts must agree.
pub fn check_split_scan(data: &[u8]) {
    let Some((head, body)) = (data.len() >= 2).then(|| data.split_at(2)) else {
        return;
    };
    let at = usize::from(u16::from_be_bytes([head[0], head[1]])) % (body.len() + 1);
    let d = dlp();
    let whole = d.scan(body, "body");
    let mut s = StreamScanner::new(Arc::clone(d));
    let split = s.push(&body[..at]).or_else(|| s.push(&body[at..]));
    // No miss: whatever the whole scan finds, the split scan finds too.
    // The other way round is not checked yet: a `\b` rule can fire at a
    // chunk edge where the whole text continues with a word character
    // (`x|AKIAIOSFODNN7EXAMPLE`), a refusal the whole scan would not make;
    // see docs/security.md.
    if whole.is_some() {
        assert!(
            split.is_some(),
            "split at {at} of {} missed {whole:?}",
            body.len()
        );
    }
    if split.is_none() {
        assert_eq!(s.scanned(), body.len() as u64, "bytes not counted");
    }
    // The URL scan must not panic on anything.
    let _ = d.scan_target(&String::from_utf8_lossy(body));
}
