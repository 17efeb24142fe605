//! End-to-end tests of the egress proxy: a real HTTPS upstream on
//! 127.0.0.1, the proxy in front of it, and curl or a raw client.

mod proxy_util;

use std::io::Write;
use std::time::Duration;

use data_encoding::{BASE32, BASE64, BASE64URL, HEXLOWER, HEXUPPER};
use proxy_util::{file, read_head, setup, API_KEY, LEAK};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn allowed_requests_pass_with_bodies_intact_and_credentials_injected() {
    let env = setup(true).await;

    // GET, over HTTP/1.1 and HTTP/2, with the placeholder replaced.
    for version in ["--http1.1", "--http2"] {
        let r = env
            .curl(
                &env.https("api.test", "/v1/models?x=1"),
                &[version, "-H", "x-api-key: placeholder"],
            )
            .await;
        assert_eq!(r.code, 200, "{version}: {r:?}");
        // The upstream got the real key; its reflection of it did not
        // come back (redacted in place, same length).
        assert_eq!(
            r.header("x-api-key-injected").as_deref(),
            Some("yes"),
            "{version}"
        );
        assert_eq!(
            r.header("x-seen-api-key"),
            Some("*".repeat(API_KEY.len())),
            "{version}"
        );
        assert_eq!(r.header("x-seen-path").as_deref(), Some("/v1/models"));
        let want = if version == "--http2" { "2" } else { "1.1" };
        assert_eq!(r.version, want, "{version}");
    }

    // A ~5 MB POST, then the same chunked: echoed back byte for byte.
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8 + 1).collect();
    let path = file(&env, "big.bin", &big);
    let at = format!("@{}", path.display());
    for extra in [&[][..], &["-H", "Transfer-Encoding: chunked"][..]] {
        let mut args = vec!["--data-binary", at.as_str()];
        args.extend_from_slice(extra);
        let r = env.curl(&env.https("open.test", "/upload"), &args).await;
        assert_eq!(r.code, 200, "{r:?}");
        assert_eq!(r.header("x-seen-method").as_deref(), Some("POST"));
        assert!(r.body == big, "body differs ({} bytes back)", r.body.len());
    }

    // A route without inject passes the client's header through untouched.
    let r = env
        .curl(&env.https("open.test", "/"), &["-H", "x-api-key: mine"])
        .await;
    assert_eq!(r.header("x-seen-api-key").as_deref(), Some("mine"));

    // Plain HTTP proxy requests to an allowed host.
    let url = format!("http://plain.test:{}/hello", env.plain_port);
    let r = env.curl(&url, &[]).await;
    assert_eq!(r.code, 200, "{r:?}");
    assert_eq!(r.header("x-seen-path").as_deref(), Some("/hello"));

    let lines = env.audit_lines();
    assert!(lines
        .iter()
        .any(|l| l["method"] == "CONNECT" && l["verdict"] == "allow"));
    assert!(lines
        .iter()
        .any(|l| l["method"] == "POST" && l["status"] == 200 && l["bytes_up"] == 5_000_000));
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn allowlist_refusals() {
    let env = setup(true).await;
    let port = env.tls_port;

    // (url, extra args, expected CONNECT status, expected final status, rule)
    let table: Vec<(String, Vec<String>, u16, u16, &str)> = vec![
        (
            env.https("denied.test", "/"),
            vec![],
            403,
            403,
            "host-not-allowed",
        ),
        (
            format!("https://127.0.0.1:{port}/"),
            vec![],
            403,
            403,
            "ip-literal",
        ),
        (
            format!("https://api.test:{}/", port + 1),
            vec![],
            403,
            403,
            "port-not-allowed",
        ),
        (
            env.https("api.test", "/v2/other"),
            vec![],
            200,
            403,
            "path-not-allowed",
        ),
        (
            env.https("api.test", "/v1/x"),
            vec!["-X".into(), "DELETE".into()],
            200,
            403,
            "method-not-allowed",
        ),
        (
            env.https("api.test", "/v1/x"),
            vec![
                "--http1.1".into(),
                "-H".into(),
                format!("Host: other.test:{port}"),
            ],
            200,
            403,
            "host-mismatch",
        ),
        (
            format!("http://denied.test:{}/", env.plain_port),
            vec![],
            0,
            403,
            "host-not-allowed",
        ),
        (
            format!("http://127.0.0.1:{}/", env.plain_port),
            vec![],
            0,
            403,
            "ip-literal",
        ),
    ];
    for (url, extra, connect, code, rule) in table {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let started = std::time::Instant::now();
        let r = env.curl(&url, &extra).await;
        assert_eq!(r.connect, connect, "{url} {extra:?}: {r:?}");
        if connect == 403 {
            // Refused at CONNECT, quickly.
            assert!(started.elapsed() < Duration::from_secs(2), "{url}");
        } else {
            assert_eq!(r.code, code, "{url} {extra:?}: {r:?}");
            assert_eq!(r.header("x-bottle-rule").as_deref(), Some(rule), "{url}");
        }
        assert!(
            env.audit_lines().iter().any(|l| l["rule"] == rule),
            "{rule} not audited"
        );
    }

    // SNI different from the CONNECT host: refused inside the tunnel.
    let mut tls = env
        .tunnel(&format!("api.test:{port}"), "other.test")
        .await
        .unwrap();
    tls.write_all(format!("GET /v1/x HTTP/1.1\r\nHost: api.test:{port}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-bottle-rule: host-mismatch"),
        "{head}"
    );

    // Raw bytes that are neither TLS nor HTTP inside an allowed tunnel are
    // never tunnelled to the upstream.
    let mut s = tokio::net::TcpStream::connect(env.proxy.addr.unwrap())
        .await
        .unwrap();
    s.write_all(format!("CONNECT open.test:{port} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert!(read_head(&mut s).await.starts_with("HTTP/1.1 200"));
    s.write_all(b"SSH-2.0-raw-bytes\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "raw tunnel answered: {:?}", &buf[..n]);
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_are_refused_in_url_header_and_body_in_every_encoding() {
    let env = setup(true).await;
    let v = LEAK.as_bytes();
    let forms: Vec<(&str, String)> = vec![
        ("raw", LEAK.to_string()),
        ("base64", BASE64.encode(v)),
        (
            "base64 shifted",
            BASE64.encode(format!("u:{LEAK}").as_bytes()),
        ),
        (
            "base64 shifted 2",
            BASE64.encode(format!("ab{LEAK}").as_bytes()),
        ),
        ("base64url", BASE64URL.encode(v)),
        ("hex", HEXLOWER.encode(v)),
        ("HEX", HEXUPPER.encode(v)),
        ("base32", BASE32.encode(v)),
        (
            "url",
            v.iter().map(|b| format!("%{b:02X}")).collect::<String>(),
        ),
    ];
    for (name, enc) in &forms {
        let url_safe: String = enc
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'%' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let cases: Vec<(&str, String, Vec<String>)> = vec![
            (
                "url",
                env.https("open.test", &format!("/q?d={url_safe}")),
                vec![],
            ),
            (
                "header",
                env.https("open.test", "/"),
                vec!["-H".into(), format!("X-Data: {enc}")],
            ),
            (
                "body",
                env.https("open.test", "/"),
                vec!["--data-binary".into(), format!("prefix {enc} suffix")],
            ),
        ];
        for (place, url, extra) in cases {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            let r = env.curl(&url, &extra).await;
            assert_eq!(r.code, 403, "{name} in {place}: {r:?}");
            let rule = r.header("x-bottle-rule").unwrap_or_default();
            assert!(
                rule.starts_with("secret:leak:"),
                "{name} in {place}: {rule}"
            );
            let body = String::from_utf8_lossy(&r.body);
            assert!(!body.contains(LEAK), "the reply must not repeat the secret");
        }
    }

    // Built-in rule: an AWS key id in a header.
    let r = env
        .curl(
            &env.https("open.test", "/"),
            &["-H", "X-K: AKIAIOSFODNN7EXAMPLE"],
        )
        .await;
    assert_eq!(
        r.header("x-bottle-rule").as_deref(),
        Some("aws-access-key-id")
    );

    // Gzip body with the secret inside.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(format!("{{\"data\": \"{LEAK}\"}}").as_bytes())
        .unwrap();
    let path = file(&env, "secret.gz", &gz.finish().unwrap());
    let at = format!("@{}", path.display());
    let r = env
        .curl(
            &env.https("open.test", "/"),
            &["--data-binary", &at, "-H", "Content-Encoding: gzip"],
        )
        .await;
    assert_eq!(r.code, 403, "{r:?}");
    assert_eq!(
        r.header("x-bottle-rule").as_deref(),
        Some("secret:leak:raw")
    );

    // The secret split across two chunks of a chunked body.
    let port = env.tls_port;
    let mut tls = env
        .tunnel(&format!("open.test:{port}"), "open.test")
        .await
        .unwrap();
    let (a, b) = LEAK.split_at(LEAK.len() / 2);
    tls.write_all(
        format!(
            "POST /x HTTP/1.1\r\nHost: open.test:{port}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n",
            a.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    tls.write_all(format!("{:x}\r\n{b}\r\n0\r\n\r\n", b.len()).as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    // Each half is also a piece of the secret (dlp::fragments).
    assert!(
        head.contains("secret:leak:raw") || head.contains("secret-piece:leak:raw"),
        "{head}"
    );

    // The injected credential itself does not trip DLP.
    let r = env
        .curl(
            &env.https("api.test", "/v1/ok"),
            &["-H", "x-api-key: placeholder"],
        )
        .await;
    assert_eq!(r.code, 200, "{r:?}");
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_secret_deep_in_a_streamed_body_is_refused_and_audited() {
    let env = setup(true).await;
    // 5 MB: streamed upstream as it is scanned (body_stream.rs); the
    // secret sits 4 MB in.
    let mut big: Vec<u8> = (0..5_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    big[4_000_000..4_000_000 + LEAK.len()].copy_from_slice(LEAK.as_bytes());
    let path = file(&env, "big-secret.bin", &big);
    let at = format!("@{}", path.display());
    for version in ["--http1.1", "--http2"] {
        let r = env
            .curl(
                &env.https("open.test", "/upload"),
                &[version, "--data-binary", &at],
            )
            .await;
        assert_eq!(r.code, 403, "{version}: {r:?}");
        let rule = r.header("x-bottle-rule").unwrap_or_default();
        assert!(rule.starts_with("secret"), "{version}: {rule}");
    }
    let denied: Vec<_> = env
        .audit_lines()
        .into_iter()
        .filter(|l| l["method"] == "POST" && l["verdict"] == "deny" && l["status"] == 403)
        .collect();
    assert_eq!(denied.len(), 2, "{denied:?}");
    for l in &denied {
        let sent = l["bytes_up"].as_u64().unwrap();
        assert!(sent <= 4_000_000, "{sent} bytes went upstream");
    }
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loopback_upstream_refused_without_allow_private() {
    let env = setup(false).await;
    let r = env.curl(&env.https("open.test", "/"), &[]).await;
    assert_eq!(r.code, 403, "{r:?}");
    assert_eq!(
        r.header("x-bottle-rule").as_deref(),
        Some("upstream-address-refused")
    );
    let url = format!("http://plain.test:{}/", env.plain_port);
    let r = env.curl(&url, &[]).await;
    assert_eq!(
        r.header("x-bottle-rule").as_deref(),
        Some("upstream-address-refused")
    );
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_and_endless_headers_do_not_stop_the_proxy() {
    let env = setup(true).await;
    let addr = env.proxy.addr.unwrap();
    let mut garbage = tokio::net::TcpStream::connect(addr).await.unwrap();
    garbage
        .write_all(b"\x00\x01\x02 not http at all\r\n\r\n")
        .await
        .unwrap();
    let endless = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET http://plain.test/ HTTP/1.1\r\nX-Endless: ")
            .await
            .unwrap();
        let chunk = vec![b'a'; 16 * 1024];
        let mut sent = 0usize;
        // The proxy must cut this off (431/close) rather than buffer forever.
        while s.write_all(&chunk).await.is_ok() {
            sent += chunk.len();
            if sent > 64 << 20 {
                break;
            }
        }
        sent
    });
    for _ in 0..3 {
        let r = env.curl(&env.https("open.test", "/ok"), &[]).await;
        assert_eq!(r.code, 200, "{r:?}");
    }
    let sent = tokio::time::timeout(Duration::from_secs(30), endless)
        .await
        .expect("endless header cut off")
        .unwrap();
    assert!(sent < 64 << 20, "proxy accepted {sent} bytes of header");
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_log_failure_refuses_requests() {
    let env = setup(true).await;
    // Swap the audit file for /dev/full is not possible under a running
    // proxy, so start a second proxy whose audit log is /dev/full.
    drop(env);
    let env = proxy_util::setup_with_audit(std::path::Path::new("/dev/full")).await;
    let r = env.curl(&env.https("open.test", "/"), &[]).await;
    assert!(r.connect == 503 || r.code == 503, "{r:?}");
    let url = format!("http://plain.test:{}/", env.plain_port);
    let r = env.curl(&url, &[]).await;
    assert_eq!(r.code, 503, "{r:?}");
    assert_eq!(
        r.header("x-bottle-rule").as_deref(),
        Some("audit-log-unwritable")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guest_egress_channel_is_bridged_after_the_hello() {
    use bottle_shared::addr::Address;
    use bottle_shared::channel::Channel;
    use bottle_shared::io::dial_hello;
    use bottle_shared::message::Role;
    use bottle_shared::transport::connect;
    use std::os::unix::fs::PermissionsExt;

    let (env, addr) = proxy_util::setup_egress("egress.sock").await;
    // No TCP listener: the proxy is reached only through the socket, which
    // only this user may use.
    assert!(env.proxy.addr.is_none());
    let Address::Unix(path) = &addr else {
        unreachable!()
    };
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let mut s = connect(&addr).await.unwrap();
    dial_hello(&mut s, Role::Guest, Channel::Egress, "test-guest")
        .await
        .unwrap();
    let port = env.plain_port;
    s.write_all(
        format!(
            "GET http://plain.test:{port}/via-vsock HTTP/1.1\r\nHost: plain.test:{port}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-seen-path: /via-vsock"),
        "{head}"
    );

    // A peer that skips the hello is dropped without reaching the proxy.
    let mut raw = connect(&addr).await.unwrap();
    raw.write_all(b"GET http://plain.test/ HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), raw.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert!(!String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/"));
    env.proxy.stop().await;
}
