//! The `bottle-host proxy` process and its audit log: on a full disk and
//! at its cap (`BOTTLE_AUDIT_MAX_BYTES`) it fails closed and says why; a
//! bad cap stops it before it serves. The full-disk test needs root and
//! `unshare` (a tmpfs in a private mount namespace) and prints
//! `skipped: why` without them.

mod proxy_process_util;

use std::process::Stdio;

use proxy_process_util::{
    free_port, in_ns, manifest, ns_unavailable, proxy_args, request, spawn_ready, DENIED, LIMIT,
};
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_audit_log_refuses_and_says_why() {
    if let Some(why) = ns_unavailable() {
        println!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 443);
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let audit = logs.join("audit.jsonl");
    let port = free_port();
    let listen = format!("tcp://127.0.0.1:{port}");
    let args = proxy_args(&listen, &m, dir.path(), &audit).join("' '");
    let script = format!(
        "mount -t tmpfs -o size=64k tmpfs '{}' && exec '{}' '{args}'",
        logs.display(),
        env!("CARGO_BIN_EXE_bottle-host"),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &script]);
    let child = spawn_ready(cmd).await;
    let pid = child.id().unwrap();
    let mut s = BufReader::new(TcpStream::connect(("127.0.0.1", port)).await.unwrap());

    let (status, rule, _) = request(&mut s, DENIED).await.unwrap();
    assert_eq!((status, rule.as_str()), (403, "host-not-allowed"));

    let out = in_ns(pid, &format!("cat /dev/zero > '{}/fill'", logs.display())).await;
    assert!(!out.status.success(), "the tmpfs did not fill up");
    let mut first_fail = None;
    for i in 0..200 {
        let (status, rule, body) = request(&mut s, DENIED).await.unwrap();
        match first_fail {
            None if status == 503 => {
                assert_eq!(rule, "audit-log-unwritable");
                assert!(body.contains("No space left on device"), "{body}");
                first_fail = Some(i);
            }
            None => assert_eq!(status, 403),
            Some(_) => assert_eq!((status, rule.as_str()), (503, "audit-log-unwritable")),
        }
        if first_fail.is_some_and(|f| i > f + 10) {
            break;
        }
    }
    assert!(
        first_fail.is_some_and(|f| f < 100),
        "no 503: {first_fail:?}"
    );
    let out = in_ns(pid, &format!("rm '{}/fill'", logs.display())).await;
    assert!(out.status.success(), "{out:?}");
    let (status, rule, _) = request(&mut s, DENIED).await.unwrap();
    assert_eq!(
        (status, rule.as_str()),
        (403, "host-not-allowed"),
        "recovered"
    );
    let out = in_ns(pid, &format!("cat '{}'", audit.display())).await;
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("torn line {l:?}: {e}"));
    }
    drop(child);
}

/// The guest cannot fill the owner's disk through the audit log: at
/// `BOTTLE_AUDIT_MAX_BYTES` the proxy fails closed (503, saying why and
/// what to do), and the log holds only whole lines, none past the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_at_its_cap_refuses_and_says_why() {
    const CAP: u64 = 4096;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 443);
    let audit = dir.path().join("audit.jsonl");
    let port = free_port();
    let listen = format!("tcp://127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bottle-host"));
    cmd.args(proxy_args(&listen, &m, dir.path(), &audit))
        .env("BOTTLE_AUDIT_MAX_BYTES", CAP.to_string());
    let child = spawn_ready(cmd).await;
    let mut s = BufReader::new(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    let mut first_fail = None;
    for i in 0..200 {
        let (status, rule, body) = request(&mut s, DENIED).await.unwrap();
        match first_fail {
            None if status == 503 => {
                assert_eq!(rule, "audit-log-unwritable");
                assert!(body.contains("cap of 4096 bytes"), "{body}");
                assert!(body.contains("BOTTLE_AUDIT_MAX_BYTES"), "{body}");
                first_fail = Some(i);
            }
            None => assert_eq!((status, rule.as_str()), (403, "host-not-allowed")),
            Some(_) => assert_eq!((status, rule.as_str()), (503, "audit-log-unwritable")),
        }
        if first_fail.is_some_and(|f| i > f + 10) {
            break;
        }
    }
    assert!(first_fail.is_some_and(|f| f > 5), "no 503: {first_fail:?}");
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(text.len() as u64 <= CAP, "{} bytes", text.len());
    assert!(text.len() as u64 > CAP / 2, "{} bytes", text.len());
    for l in text.lines() {
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("torn line {l:?}: {e}"));
    }
    drop(child);
}

/// A cap that is not a number stops the proxy before it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_audit_cap_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 443);
    let audit = dir.path().join("audit.jsonl");
    let listen = format!("tcp://127.0.0.1:{}", free_port());
    let out = tokio::time::timeout(
        LIMIT,
        Command::new(env!("CARGO_BIN_EXE_bottle-host"))
            .args(proxy_args(&listen, &m, dir.path(), &audit))
            .env("BOTTLE_AUDIT_MAX_BYTES", "1G")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("exits in time")
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("BOTTLE_AUDIT_MAX_BYTES=\"1G\""), "{err}");
}
