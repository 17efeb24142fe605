//! No host secret flows back into the bottle: an allowed upstream that
//! reflects the injected credential (in a header, in the body, over
//! HTTP/1.1 and HTTP/2) gets it redacted on the way back, and the
//! redaction is audited by rule name, never by value. Nor does a response
//! the proxy cannot see through (a transfer coding, many stacked codings),
//! and a compressed body cannot make the proxy hold a huge window. A
//! credential is never injected into a plain-HTTP request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_util;

use std::time::Duration;

use proxy_util::{setup, API_KEY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_credential_in_a_response_header_name_takes_the_header_away() {
    let env = setup(true).await;
    let hex: String = API_KEY.bytes().map(|b| format!("{b:02x}")).collect();
    for version in ["--http1.1", "--http2"] {
        let r = env
            .curl(
                &env.https("api.test", "/v1/probe/header-name"),
                &[version, "-H", "x-api-key: placeholder"],
            )
            .await;
        assert_eq!(r.code, 200, "{version}: {r:?}");
        assert!(!r.head.contains(&hex), "{version}: {}", r.head);
        assert_eq!(r.header("x-other").as_deref(), Some("kept"), "{version}");
    }
    let lines = env.audit_lines();
    assert!(
        lines.iter().any(|l| l["path"] == "/v1/probe/header-name"
            && l["redacted"][0] == "secret:api:hex in header (name)"),
        "{lines:#?}"
    );
    env.proxy.stop().await;
}

/// `Transfer-Encoding: gzip, chunked`: hyper takes the chunking off and
/// nothing else, so the body would pass compressed, unscanned (and curl
/// would not say: it asked for no transfer coding).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_response_under_a_transfer_coding_is_refused() {
    let env = setup(true).await;
    // Plain HTTP, so the upstream speaks HTTP/1.1 to the proxy (over
    // HTTP/2 there are no transfer codings).
    let url = format!("http://plain.test:{}/v1/probe/te-gzip", env.plain_port);
    let r = env.curl(&url, &["-H", "x-api-key: anything"]).await;
    assert_eq!(r.code, 502, "{r:?}");
    let body = String::from_utf8_lossy(&r.body);
    assert!(body.contains("transfer coding"), "{body}");
    // Stacked codings past the limit are refused the same way.
    let r = env
        .curl(
            &env.https("api.test", "/v1/probe/br-stack"),
            &["-H", "x-api-key: placeholder"],
        )
        .await;
    assert_eq!(r.code, 502, "{r:?}");
    assert!(String::from_utf8_lossy(&r.body).contains("3 content codings"));
    env.proxy.stop().await;
}

/// A credential reflected by an upstream that honours `Range` could be
/// read back in slices shorter than the redactor's smallest piece: on a
/// route that injects a credential the proxy does not pass `Range` on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ranges_go_upstream_only_on_routes_without_a_credential() {
    let env = setup(true).await;
    let stars = "*".repeat(API_KEY.len());
    for (a, b) in [(0, 10), (11, 21), (22, 32)] {
        let range = format!("range: bytes={a}-{b}");
        let r = env
            .curl(
                &env.https("api.test", "/v1/probe/range"),
                &["-H", "x-api-key: placeholder", "-H", &range],
            )
            .await;
        assert_eq!(r.code, 200, "{r:?}");
        assert_eq!(String::from_utf8_lossy(&r.body), stars);
    }
    let r = env
        .curl(
            &env.https("open.test", "/x"),
            &["-H", "range: bytes=0-10", "-H", "if-range: \"e\""],
        )
        .await;
    assert_eq!(r.header("x-seen-range").as_deref(), Some("bytes=0-10"));
    env.proxy.stop().await;
}

/// A route's credential goes upstream only over TLS: a plain-HTTP request
/// on such a route (a proxy request, or plain HTTP inside a CONNECT
/// tunnel) is refused before anything is dialled, so the credential never
/// crosses the network in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_credential_is_never_injected_over_plain_http() {
    let env = setup(true).await;
    let url = format!("http://api.test:{}/v1/plain", env.tls_port);
    for tunnel in [false, true] {
        let mut args = vec!["-H", "x-api-key: placeholder"];
        if tunnel {
            args.push("--proxytunnel");
        }
        let r = env.curl(&url, &args).await;
        assert_eq!(r.code, 403, "tunnel {tunnel}: {r:?}");
        let body = String::from_utf8_lossy(&r.body);
        assert!(body.contains("inject-needs-tls"), "tunnel {tunnel}: {body}");
        assert!(!body.contains(API_KEY));
    }
    let lines = env.audit_lines();
    let refused = lines
        .iter()
        .filter(|l| l["path"] == "/v1/plain" && l["rule"] == "inject-needs-tls")
        .count();
    assert_eq!(refused, 2, "{lines:#?}");
    env.proxy.stop().await;
}

fn rss_mib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb = s.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap();
    kb.trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .unwrap()
        / 1024
}

/// A few KiB of zstd asking for a 128 MiB window, the body then stalled
/// and the guest holding the connection: the window is refused (8 MiB at
/// most, RFC 9659), so four such responses do not make the proxy hold
/// half a GiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_zstd_window_past_8_mib_is_refused() {
    let env = setup(true).await;
    let host = format!("api.test:{}", env.tls_port);
    let before = rss_mib();
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = env.tunnel(&host, "api.test").await.unwrap();
        let req = format!(
            "GET /v1/probe/zstd-window HTTP/1.1\r\nHost: {host}\r\nx-api-key: placeholder\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut got)).await;
        let got_len = got.len();
        assert!(
            matches!(read, Ok(Ok(_)) | Ok(Err(_))),
            "the response neither ended nor failed ({got_len} bytes so far)"
        );
        assert!(
            got_len < 64 * 1024,
            "{got_len} bytes of the window came through"
        );
        held.push(s);
    }
    let grew = rss_mib().saturating_sub(before);
    assert!(
        grew < 64,
        "RSS grew {grew} MiB for 4 stalled zstd responses"
    );
    drop(held);
    env.proxy.stop().await;
}

/// Bytes read from `s` within `wait`, until at least `want`.
async fn read_some<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    want: usize,
    wait: Duration,
) -> usize {
    let mut total = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + wait;
    while total < want {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => break,
        }
    }
    total
}

/// Bodies decoded with a large window (zstd up to 8 MiB, brotli up to
/// 16 MiB) take turns: at most MAX_LARGE_WINDOW_DECODES at once, however
/// many responses the guest holds open; the next one starts when one ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_window_bodies_take_turns() {
    const TURNS: usize = bottle_host::proxy::redact_http::MAX_LARGE_WINDOW_DECODES;
    let env = setup(true).await;
    let host = format!("api.test:{}", env.tls_port);
    let open = || async {
        let mut s = env.tunnel(&host, "api.test").await.unwrap();
        let req = format!(
            "GET /v1/probe/zstd-8mib HTTP/1.1\r\nHost: {host}\r\nx-api-key: placeholder\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        s
    };
    let mut held = Vec::new();
    for i in 0..TURNS {
        let mut s = open().await;
        let n = read_some(&mut s, 64 * 1024, Duration::from_secs(20)).await;
        assert!(n >= 64 * 1024, "response {i} of {TURNS}: only {n} bytes");
        held.push(s);
    }
    let mut next = open().await;
    let n = read_some(&mut next, 64 * 1024, Duration::from_millis(1500)).await;
    assert!(
        n < 1024,
        "a body past the limit was decoded at once ({n} bytes)"
    );
    drop(held.pop());
    let n = read_some(&mut next, 64 * 1024, Duration::from_secs(20)).await;
    assert!(
        n >= 64 * 1024,
        "its turn did not come when one ended ({n} bytes)"
    );
    drop(held);
    env.proxy.stop().await;
}
