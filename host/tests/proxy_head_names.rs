//! A host secret in the parts of a request head the guest names freely:
//! a header's *name* (which reaches the upstream lowercased) and an
//! extension method. Refused like a secret in a header value, over
//! HTTP/1.1 and HTTP/2, and nothing reaches the upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_util;

use data_encoding::{HEXLOWER, HEXUPPER};
use proxy_util::{setup, LEAK};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_secret_in_a_header_name_or_the_method_is_refused() {
    let env = setup(true).await;
    let hex = HEXLOWER.encode(LEAK.as_bytes());
    // `leaky+Secret` is a 12-byte piece of the secret made only of
    // characters a header name may hold; its case is lost on the way.
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "hex header name",
            vec!["-H".into(), format!("x-{hex}: 1")],
            "secret:leak:",
        ),
        (
            "piece in a header name",
            vec!["-H".into(), "x-leaky+Secret: 1".into()],
            "secret-piece:leak:",
        ),
        (
            "hex method",
            vec!["-X".into(), HEXUPPER.encode(LEAK.as_bytes())],
            "secret:leak:",
        ),
    ];
    for version in ["--http1.1", "--http2"] {
        for (what, extra, rule) in &cases {
            let mut args: Vec<&str> = vec![version];
            args.extend(extra.iter().map(String::as_str));
            let r = env.curl(&env.https("open.test", "/names"), &args).await;
            assert_eq!(r.code, 403, "{what} {version}: {r:?}");
            let got = r.header("x-bottle-rule").unwrap_or_default();
            assert!(got.starts_with(rule), "{what} {version}: {got}");
        }
    }
    // A secret in the path: refused too, and its audit line has no path.
    let r = env
        .curl(&env.https("open.test", &format!("/names/{hex}")), &[])
        .await;
    assert_eq!(r.code, 403, "{r:?}");
    // Ordinary names and methods pass.
    let r = env
        .curl(
            &env.https("open.test", "/names"),
            &["-X", "PROPFIND", "-H", "x-request-id: 4f1c2a"],
        )
        .await;
    assert_eq!(r.code, 200, "{r:?}");
    // The audit log names the rules, never the value.
    let lines = env.audit_lines();
    let text = serde_json::to_string(&lines).unwrap().to_ascii_lowercase();
    assert!(!text.contains(&hex), "{text}");
    assert!(!text.contains("leaky+secret"), "{text}");
    let refused: Vec<_> = lines.iter().filter(|l| l["verdict"] == "deny").collect();
    assert_eq!(refused.len(), 7, "{lines:#?}");
    assert!(refused
        .iter()
        .all(|l| l["rule"].as_str().unwrap().starts_with("secret")));
    assert_eq!(refused.iter().filter(|l| l["method"] == "").count(), 2);
    assert_eq!(refused.iter().filter(|l| l["path"] == "").count(), 1);
    env.proxy.stop().await;
}

/// A secret in the method or path of a request refused by its route
/// (which checks method and path before the DLP runs, and whose reason
/// quotes them): its audit line leaves the field out too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_route_refusal_leaves_a_secret_out_of_the_audit_line() {
    let env = setup(true).await;
    let hex = HEXLOWER.encode(LEAK.as_bytes());
    let method = HEXUPPER.encode(LEAK.as_bytes());
    let r = env
        .curl(&env.https("api.test", "/v1/x"), &["-X", &method])
        .await;
    assert_eq!(r.code, 403, "{r:?}");
    let r = env
        .curl(&env.https("api.test", &format!("/other/{hex}")), &[])
        .await;
    assert_eq!(r.code, 403, "{r:?}");
    let lines = env.audit_lines();
    let text = serde_json::to_string(&lines).unwrap().to_ascii_lowercase();
    assert!(!text.contains(&hex), "{text}");
    let refused: Vec<_> = lines.iter().filter(|l| l["verdict"] == "deny").collect();
    assert_eq!(refused.len(), 2, "{lines:#?}");
    assert!(refused
        .iter()
        .all(|l| !l["rule"].as_str().unwrap().starts_with("secret")));
    assert_eq!(refused[0]["method"], "", "{lines:#?}");
    assert_eq!(refused[1]["path"], "", "{lines:#?}");
    env.proxy.stop().await;
}
