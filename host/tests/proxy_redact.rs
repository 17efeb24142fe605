//! No host secret flows back into the bottle: an allowed upstream that
//! reflects the injected credential (in a header, in the body, over
//! HTTP/1.1 and HTTP/2) gets it redacted on the way back, and the
//! redaction is audited by rule name, never by value.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_util;

use proxy_util::{setup, API_KEY};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reflected_credential_is_redacted_in_headers_and_body() {
    let env = setup(true).await;
    let stars = "*".repeat(API_KEY.len());
    for version in ["--http1.1", "--http2"] {
        let r = env
            .curl(
                &env.https("api.test", "/v1/reflect"),
                &[version, "-H", "x-api-key: placeholder"],
            )
            .await;
        assert_eq!(r.code, 200, "{version}: {r:?}");
        assert_eq!(r.header("x-api-key-injected").as_deref(), Some("yes"));
        let body = String::from_utf8(r.body.clone()).unwrap();
        assert!(!body.contains(API_KEY), "{version}: {body}");
        assert!(!r.head.contains(API_KEY), "{version}: {}", r.head);
        assert_eq!(
            body,
            format!("{{\"headers\": {{\"x-api-key\": \"{stars}\"}}}}\n"),
            "{version}"
        );
    }
    let lines = env.audit_lines();
    let text = serde_json::to_string(&lines).unwrap();
    assert!(!text.contains(API_KEY), "the audit log holds the value");
    // The request's own line names the head's redaction...
    assert!(
        lines.iter().any(|l| l["path"] == "/v1/reflect"
            && l["verdict"] == "allow"
            && l["redacted"][0] == "secret:api:raw in header x-seen-api-key"),
        "{lines:#?}"
    );
    // ...and the body's gets a line of its own.
    let body_lines: Vec<_> = lines
        .iter()
        .filter(|l| l["verdict"] == "redact" && l["path"] == "/v1/reflect")
        .collect();
    assert_eq!(body_lines.len(), 2, "{lines:#?}");
    for l in body_lines {
        assert_eq!(l["rule"], "secret:api:raw");
        assert_eq!(l["redacted"][0], "secret:api:raw in body");
    }
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn responses_without_secrets_are_untouched() {
    let env = setup(true).await;
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8 + 1).collect();
    let path = proxy_util::file(&env, "big.bin", &big);
    let at = format!("@{}", path.display());
    let r = env
        .curl(
            &env.https("open.test", "/upload"),
            &["--data-binary", at.as_str()],
        )
        .await;
    assert_eq!(r.code, 200, "{r:?}");
    assert!(r.body == big, "body changed ({} bytes back)", r.body.len());
    assert!(!env.audit_lines().iter().any(|l| l["verdict"] == "redact"));
    env.proxy.stop().await;
}
