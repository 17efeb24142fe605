//! Faults around `bottle-host dns`, driven over its DNS channel (a Unix
//! socket) by a bare channel client:
//!
//! - SIGTERM mid-run: every answer a client got is in the audit log, the
//!   process exits cleanly, its socket file is gone, no process is left.
//! - The audit log on a full disk (a 64 KiB tmpfs in a private mount
//!   namespace): answers turn to SERVFAIL, nothing more goes upstream, and
//!   resolving resumes once the disk has room again.
//!
//! The kill-and-restart fault under load is in `dns_e2e.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bottle_e2e::channel::DnsChannel;
use bottle_e2e::proc::Proc;
use bottle_e2e::upstream::Upstream;
use bottle_e2e::{bins, netns_unavailable, sys};
use hickory_proto::op::ResponseCode;
use tokio::process::Command;

const LIMIT: Duration = Duration::from_secs(5);

fn manifest(dir: &Path, up: &Upstream) -> PathBuf {
    let m = dir.join("bottle.toml");
    std::fs::write(
        &m,
        format!(
            "[agent]\ncommand = [\"/bin/true\"]\n\n\
             [dns]\nupstreams = [\"{}\"]\nextra_names = [\"allowed.test\", \"*.wild.test\"]\n\n\
             [dns.limits]\nunique_names_per_window = 100000\n",
            up.addr
        ),
    )
    .unwrap();
    m
}

/// Every line of an audit log, each a whole JSON object.
fn audit_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_every_decision_and_leaves_nothing_behind() {
    let _serial = bottle_e2e::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let m = manifest(dir.path(), &up);
    let sock = dir.path().join("host.sock_6002");
    let listen = format!("unix://{}", sock.display());
    let audit = dir.path().join("dns-audit.jsonl");
    let mut cmd = Command::new(bins::host());
    cmd.arg("dns")
        .args(["--listen", &listen])
        .arg("--manifest")
        .arg(&m)
        .args(["--upstream", &up.addr.to_string()])
        .arg("--audit-log")
        .arg(&audit);
    let mut host = Proc::spawn("host", cmd, "dns: serving on", LIMIT).await;
    let pid = host.pid();

    // Four clients asking allowed, unique and denied names until the host
    // goes away; each counts the answers it got.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4u32 {
        let (listen, stop) = (listen.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut ch = DnsChannel::dial(&listen).await.expect("dial the host");
            let mut answered = 0u32;
            for i in 0u32.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let name = match i % 3 {
                    0 => "allowed.test.".to_string(),
                    1 => format!("c{c}n{i}.wild.test."),
                    _ => "denied.example.".to_string(),
                };
                match ch.ask(&name, LIMIT).await {
                    Ok(_) => answered += 1,
                    Err(_) => break,
                }
            }
            answered
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        sys::children(pid).is_empty(),
        "bottle-host dns has children"
    );
    sys::signal(pid, libc::SIGTERM);
    let status = tokio::time::timeout(LIMIT, host.child.wait())
        .await
        .expect("bottle-host dns exits within 5 s of SIGTERM")
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut answered = 0;
    for c in clients {
        answered += c.await.unwrap();
    }
    assert!(status.success(), "exit status {status}");
    assert!(answered > 30, "only {answered} answers before SIGTERM");
    let text = std::fs::read_to_string(&audit).unwrap();
    let lines = audit_lines(&text);
    assert!(
        lines.len() >= answered as usize,
        "{answered} answers but {} audit lines",
        lines.len()
    );
    assert!(!sys::exists(&sock), "socket file left behind");
    let dir_s = dir.path().display().to_string();
    let stray = sys::processes_mentioning(&dir_s);
    assert!(stray.is_empty(), "processes left: {stray:?}");
    println!("sigterm: {answered} answers, {} audit lines", lines.len());
}

/// Run `sh -c script` in the mount namespace of `pid` (killed after 30 s).
async fn in_ns(pid: u32, script: &str) -> std::process::Output {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "sh", "-c", script])
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .unwrap_or_else(|_| panic!("{script:?} still running after 30 s"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_audit_log_fails_closed_and_recovers() {
    if let Some(why) = netns_unavailable() {
        println!("skipped: {why}");
        return;
    }
    let _serial = bottle_e2e::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let m = manifest(dir.path(), &up);
    let sock = dir.path().join("host.sock_6002");
    let listen = format!("unix://{}", sock.display());
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let audit = logs.join("dns-audit.jsonl");
    let script = format!(
        "mount -t tmpfs -o size=64k tmpfs '{logs}' && exec '{host}' dns --listen '{listen}' \
         --manifest '{m}' --upstream {up} --audit-log '{audit}'",
        logs = logs.display(),
        host = bins::host().display(),
        m = m.display(),
        up = up.addr,
        audit = audit.display(),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &script]);
    let host = Proc::spawn("host", cmd, "dns: serving on", LIMIT).await;
    let pid = host.pid();
    let mut ch = DnsChannel::dial(&listen).await.unwrap();

    let a = ch.ask("allowed.test.", LIMIT).await.unwrap();
    assert_eq!(a.response_code(), ResponseCode::NoError);
    assert_eq!(a.answers().len(), 1, "{a:?}");

    // Fill the disk. The audit file's last page may still take a few
    // lines, so ask until the first SERVFAIL.
    let out = in_ns(pid, &format!("cat /dev/zero > '{}/fill'", logs.display())).await;
    assert!(!out.status.success(), "the tmpfs did not fill up");
    let mut first_fail = None;
    for i in 0..200 {
        let name = format!("n{i}.wild.test.");
        let a = ch.ask(&name, LIMIT).await.unwrap();
        match (first_fail, a.response_code()) {
            (None, ResponseCode::ServFail) => first_fail = Some(i),
            (None, rc) => assert_eq!(rc, ResponseCode::NoError, "{name}"),
            (Some(_), rc) => assert_eq!(rc, ResponseCode::ServFail, "{name}: not closed"),
        }
        if first_fail.is_some_and(|f| i > f + 20) {
            break;
        }
    }
    let f = first_fail.expect("no SERVFAIL with the audit disk full");
    assert!(f < 100, "the first failure came late ({f})");
    for i in f + 1..f + 20 {
        assert_eq!(
            up.seen(&format!("n{i}.wild.test")),
            0,
            "n{i} went upstream unaudited"
        );
    }
    // A cached name is not given out unaudited either.
    let a = ch.ask("allowed.test.", LIMIT).await.unwrap();
    assert_eq!(a.response_code(), ResponseCode::ServFail);
    assert!(a.answers().is_empty());

    // Room again: resolving resumes (the first query finds out).
    let out = in_ns(pid, &format!("rm '{}/fill'", logs.display())).await;
    assert!(out.status.success(), "{out:?}");
    let mut recovered = false;
    for _ in 0..3 {
        let a = ch.ask("allowed.test.", LIMIT).await.unwrap();
        if a.response_code() == ResponseCode::NoError && a.answers().len() == 1 {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "no answers once the disk had room");
    let out = in_ns(pid, &format!("cat '{}'", audit.display())).await;
    let lines = audit_lines(&String::from_utf8_lossy(&out.stdout));
    assert!(
        lines
            .iter()
            .any(|l| l["verdict"] == "servfail" && l["rule"] == "audit-log"),
        "the refusal after recovery is not audited"
    );
    host.kill().await;
}
