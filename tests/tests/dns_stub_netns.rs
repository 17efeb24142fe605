//! The real `bottle-guest dns-stub` in a guest-like network namespace, with
//! real clients (`dig`, `getent`, Python), relaying to an in-process
//! stand-in for the host that forwards everything to the test upstream
//! (no policy). This checks the guest half of the DNS path and the test
//! harness on any machine; `dns_e2e.rs` does the same with the real host.

use std::sync::Arc;
use std::time::Duration;

use bottle_e2e::dig::dig;
use bottle_e2e::load::Load;
use bottle_e2e::netns::Netns;
use bottle_e2e::upstream::{Upstream, ALLOWED_IP, WILD_IP};
use bottle_e2e::{bins, netns_unavailable};
use bottle_shared::io::{accept_hello, read_message, write_message};
use bottle_shared::message::{DnsRequest, DnsResponse, Role};
use bottle_shared::transport::Listener;
use bottle_shared::{Address, Channel};
use tokio::task::{JoinHandle, JoinSet};

/// Serve the host's DNS channel on `addr`, answering from `up`. Aborting
/// the task drops the listener and every connection.
async fn relay(addr: &Address, up: Arc<Upstream>) -> JoinHandle<()> {
    let listener = Listener::bind(addr).await.expect("bind relay");
    tokio::spawn(async move {
        let mut conns = JoinSet::new();
        while let Ok(mut s) = listener.accept().await {
            let up = up.clone();
            conns.spawn(async move {
                if accept_hello(&mut s, Role::Host, Channel::Dns, "relay")
                    .await
                    .is_err()
                {
                    return;
                }
                let max = Channel::Dns.max_frame();
                while let Ok(Some(DnsRequest::Query { id, wire, .. })) =
                    read_message::<_, DnsRequest>(&mut s, max).await
                {
                    let Some(wire) = up.answer(&wire) else {
                        continue;
                    };
                    if write_message(&mut s, &DnsResponse::Answer { id, wire }, max)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_stub_serves_real_clients_in_a_namespace() {
    if let Some(why) = netns_unavailable() {
        println!("skipped: {why}");
        return;
    }
    let _serial = bottle_e2e::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let addr = Address::Unix(dir.path().join("host.sock_6002"));
    let up = Arc::new(Upstream::start().await);
    let host = relay(&addr, up.clone()).await;
    let ns = Arc::new(Netns::start(&bins::guest(), &addr.to_string()).await);

    // dig over UDP and TCP.
    for tcp in [false, true] {
        let d = dig(&ns, "allowed.test", "A", tcp, &[]).await;
        assert_eq!(
            (d.status.as_str(), d.answers.clone()),
            ("NOERROR", vec![ALLOWED_IP.to_string()]),
            "tcp={tcp}: {d:?}"
        );
    }
    // An unknown name: NXDOMAIN, fast.
    let d = dig(&ns, "unknown.example", "A", false, &[]).await;
    assert_eq!(d.status, "NXDOMAIN");
    assert!(d.elapsed < Duration::from_secs(1), "{d:?}");
    // A big answer: truncated over UDP, dig retries over TCP and gets it all.
    let d = dig(&ns, "big.wild.test", "A", false, &["+noedns"]).await;
    assert!(d.retried_tcp, "{d:?}");
    assert_eq!(d.answers.len(), 60, "{d:?}");

    // The system resolver (glibc, via the bind-mounted resolv.conf).
    let r = ns
        .run(
            &["getent", "hosts", "www.wild.test"],
            Duration::from_secs(10),
        )
        .await;
    assert!(r.ok() && r.stdout().starts_with(WILD_IP), "{r:?}");
    let r = ns
        .run(
            &["getent", "hosts", "unknown.example"],
            Duration::from_secs(10),
        )
        .await;
    assert!(!r.ok() && r.elapsed < Duration::from_secs(1), "{r:?}");
    let py =
        "import socket; print(socket.getaddrinfo('allowed.test', 443, socket.AF_INET)[0][4][0])";
    let r = ns
        .run(&["python3", "-c", py], Duration::from_secs(10))
        .await;
    assert_eq!(r.stdout().trim(), ALLOWED_IP, "{r:?}");

    // The host dies under load, stays away a moment, and comes back.
    let load = Load::start(ns.clone(), "allowed.test", 6);
    tokio::time::sleep(Duration::from_millis(500)).await;
    host.abort();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _host = relay(&addr, up.clone()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let results = load.stop().await;
    let hung: Vec<_> = results
        .iter()
        .filter(|d| d.status == "TIMEOUT" || d.elapsed > Duration::from_millis(2500))
        .collect();
    assert!(hung.is_empty(), "clients hung: {hung:?}");
    assert!(
        results.iter().any(|d| d.status == "SERVFAIL"),
        "the outage was seen"
    );
    let last_ok = results.iter().rev().take(3).all(|d| d.status == "NOERROR");
    assert!(last_ok, "recovered after the restart");
    let d = dig(&ns, "allowed.test", "A", false, &[]).await;
    assert_eq!(d.answers, vec![ALLOWED_IP.to_string()]);
    assert!(up.seen("allowed.test") > 0);

    Arc::into_inner(ns).expect("load finished").stop().await;
}
