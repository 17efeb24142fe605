//! The whole DNS path with the real binaries: clients in a guest-like
//! network namespace → `bottle-guest dns-stub` on 127.0.0.1:53 → Unix
//! socket → `bottle-host dns` (the policy) → the test upstream on
//! 127.0.0.1.
//!
//! Needs root and `unshare` (else prints `skipped: why`), and a
//! `bottle-host` with the `dns` subcommand:
//! `bottle-host dns --listen unix:///DIR/host.sock_6002 --manifest M.toml
//! --upstream 127.0.0.1:PORT`, logging `dns: serving on ...` when ready.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bottle_e2e::dig::dig;
use bottle_e2e::load::Load;
use bottle_e2e::netns::Netns;
use bottle_e2e::proc::Proc;
use bottle_e2e::upstream::{Upstream, ALLOWED_IP, WILD_IP};
use bottle_e2e::{bins, netns_unavailable};
use tokio::process::Command;

/// Unique names allowed per registered domain per window, in the manifest.
const BUDGET: usize = 30;
/// "Fast": what a denied name may take at most.
const FAST: Duration = Duration::from_secs(1);

struct Rig {
    up: Arc<Upstream>,
    host: Option<Proc>,
    ns: Arc<Netns>,
    manifest: PathBuf,
    listen: String,
    _dir: tempfile::TempDir,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Rig {
    /// Upstream, manifest, host and namespace; `None` (after printing
    /// `skipped: why`) when the machine cannot run namespaces.
    async fn start() -> Option<Rig> {
        if let Some(why) = netns_unavailable() {
            println!("skipped: {why}");
            return None;
        }
        let serial = bottle_e2e::serial().await;
        let dir = tempfile::tempdir().unwrap();
        let up = Arc::new(Upstream::start().await);
        let manifest = dir.path().join("bottle.toml");
        std::fs::write(
            &manifest,
            format!(
                "[agent]\ncommand = [\"/bin/true\"]\n\n\
                 [dns]\nupstreams = [\"{up}\"]\nextra_names = [\"allowed.test\", \"*.wild.test\"]\n\n\
                 [dns.limits]\nunique_names_per_window = {BUDGET}\nwindow_secs = 60\n",
                up = up.addr
            ),
        )
        .unwrap();
        let listen = format!("unix://{}", dir.path().join("host.sock_6002").display());
        let host = start_host(&listen, &manifest, &up).await;
        let ns = Arc::new(Netns::start(&bins::guest(), &listen).await);
        Some(Rig {
            up,
            host: Some(host),
            ns,
            manifest,
            listen,
            _dir: dir,
            _serial: serial,
        })
    }

    async fn restart_host(&mut self) {
        self.host = Some(start_host(&self.listen, &self.manifest, &self.up).await);
    }

    async fn kill_host(&mut self) {
        if let Some(h) = self.host.take() {
            h.kill().await;
        }
    }
}

async fn start_host(listen: &str, manifest: &std::path::Path, up: &Upstream) -> Proc {
    let mut cmd = Command::new(bins::host());
    cmd.arg("dns")
        .args(["--listen", listen])
        .arg("--manifest")
        .arg(manifest)
        .args(["--upstream", &up.addr.to_string()]);
    Proc::spawn("host", cmd, "dns: serving on", Duration::from_secs(10)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_names_resolve_for_every_client() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let ns = &rig.ns;
    for tcp in [false, true] {
        let d = dig(ns, "allowed.test", "A", tcp, &[]).await;
        assert_eq!(d.status, "NOERROR", "tcp={tcp}: {d:?}");
        assert_eq!(d.answers, vec![ALLOWED_IP.to_string()], "tcp={tcp}");
    }
    let d = dig(ns, "www.wild.test", "A", false, &[]).await;
    assert_eq!(d.answers, vec![WILD_IP.to_string()], "{d:?}");
    // Over 512 bytes: truncated over UDP by the stub, whole over TCP.
    let d = dig(ns, "big.wild.test", "A", false, &["+noedns"]).await;
    assert!(d.retried_tcp, "{d:?}");
    assert_eq!(d.answers.len(), 60, "{d:?}");

    let r = ns
        .run(
            &["getent", "hosts", "allowed.test"],
            Duration::from_secs(10),
        )
        .await;
    assert!(r.ok() && r.stdout().starts_with(ALLOWED_IP), "{r:?}");
    let py =
        "import socket; print(socket.getaddrinfo('allowed.test', 443, socket.AF_INET)[0][4][0])";
    let r = ns
        .run(&["python3", "-c", py], Duration::from_secs(10))
        .await;
    assert_eq!(r.stdout().trim(), ALLOWED_IP, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_names_fail_fast_and_never_leave_the_host() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let ns = &rig.ns;
    for (name, tcp) in [
        ("denied.example", false),
        ("denied.example", true),
        ("allowed.test.evil.example", false),
        ("wild.test.example", false),
    ] {
        let d = dig(ns, name, "A", tcp, &[]).await;
        assert_eq!(d.status, "NXDOMAIN", "{name} tcp={tcp}: {d:?}");
        assert!(d.elapsed < FAST, "{name}: {d:?}");
    }
    let r = ns
        .run(
            &["getent", "hosts", "denied.example"],
            Duration::from_secs(10),
        )
        .await;
    assert!(!r.ok() && r.elapsed < FAST, "{r:?}");
    let py = "import socket\ntry:\n socket.getaddrinfo('denied.example', 443)\n print('resolved')\nexcept socket.gaierror as e:\n print('gaierror', e.errno)";
    let r = ns
        .run(&["python3", "-c", py], Duration::from_secs(10))
        .await;
    assert!(r.stdout().starts_with("gaierror"), "{r:?}");
    assert!(r.elapsed < FAST * 2, "python start-up included: {r:?}");
    for name in [
        "denied.example",
        "allowed.test.evil.example",
        "wild.test.example",
    ] {
        assert_eq!(rig.up.seen(name), 0, "{name} reached the upstream");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallowed_record_types_are_refused() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    for rtype in ["TXT", "NULL", "ANY", "AXFR"] {
        let tcp = rtype == "AXFR";
        let d = dig(&rig.ns, "allowed.test", rtype, tcp, &[]).await;
        assert!(
            d.status == "REFUSED" || (rtype == "AXFR" && d.answers.is_empty()),
            "{rtype}: {d:?}"
        );
        assert!(
            d.answers.iter().all(|a| !a.contains("v=upstream")),
            "{rtype}: {d:?}"
        );
        assert!(d.elapsed < FAST, "{rtype}: {d:?}");
    }
    // The allowed type of the same name still works.
    let d = dig(&rig.ns, "allowed.test", "A", false, &[]).await;
    assert_eq!(d.answers, vec![ALLOWED_IP.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exfil_looking_names_under_a_wildcard_are_blocked() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let hex = "6b65793d73757065727365637265747365637265740a";
    let base32 = "mfrggzdfmztwq2lknnwg23tpobyxe43uov3ho6dzpi";
    let long_plain = "a".repeat(60);
    for label in [hex, base32, &hex[..32], long_plain.as_str()] {
        let name = format!("{label}.wild.test");
        let d = dig(&rig.ns, &name, "A", false, &[]).await;
        assert_eq!(d.status, "NXDOMAIN", "{name}: {d:?}");
        assert!(d.elapsed < FAST, "{name}: {d:?}");
        assert_eq!(rig.up.seen(&name), 0, "{name} reached the upstream");
    }
    let d = dig(&rig.ns, "api.wild.test", "A", false, &[]).await;
    assert_eq!(
        d.answers,
        vec![WILD_IP.to_string()],
        "plain names still pass: {d:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_unique_subdomains_hits_the_budget() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let mut statuses = Vec::new();
    for i in 0..(2 * BUDGET) {
        let d = dig(&rig.ns, &format!("n{i}.wild.test"), "A", false, &[]).await;
        assert!(d.elapsed < FAST, "n{i}: {d:?}");
        statuses.push(d.status);
    }
    let ok = statuses.iter().filter(|s| *s == "NOERROR").count();
    assert!(
        (1..=BUDGET).contains(&ok),
        "{ok} of {} resolved: {statuses:?}",
        statuses.len()
    );
    assert!(
        statuses[statuses.len() - 5..]
            .iter()
            .all(|s| s == "NXDOMAIN"),
        "over the budget: {statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_killed_and_restarted_under_load_no_client_hangs() {
    let Some(mut rig) = Rig::start().await else {
        return;
    };
    let load = Load::start(rig.ns.clone(), "allowed.test", 6);
    // Two outages in a row: the stub must recover from each.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        rig.kill_host().await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        rig.restart_host().await;
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
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
    let d = dig(&rig.ns, "allowed.test", "A", false, &[]).await;
    assert_eq!(d.answers, vec![ALLOWED_IP.to_string()], "recovered: {d:?}");
    let r = rig
        .ns
        .run(
            &["getent", "hosts", "allowed.test"],
            Duration::from_secs(10),
        )
        .await;
    assert!(r.ok(), "{r:?}");
}
