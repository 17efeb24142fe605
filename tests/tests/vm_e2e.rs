//! `bottle-host launch` end to end in a real VM (QEMU; TCG here): the guest
//! runs bottle-guest as PID 1, and an agent script uses real tools
//! (`getent`, `curl`, Python) to check what may and may not leave.
//! Faults: the VM killed from outside, Ctrl-C, and launches that must fail
//! before anything starts.

use std::time::Duration;

use bottle_e2e::vm::{alive, children_of, vm_unavailable, Testbed, TOKEN};

/// Boot plus agent, generously: TCG on a loaded 2-core CI machine.
const LIMIT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_agent_reaches_only_what_is_allowed_and_its_exit_code_returns() {
    if let Some(why) = vm_unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let _serial = bottle_e2e::serial().await;
    let bed = Testbed::start().await;
    let script = bottle_e2e::vm::demo_agent(bed.web.addr.port());
    let manifest = bed.manifest(&script, "");
    let run = bed.launch(&manifest).finish(LIMIT).await;
    for check in bottle_e2e::vm::DEMO_CHECKS {
        run.assert_ok(check);
    }
    assert_eq!(run.code, Some(42), "launch must return the agent's code");
    assert!(run.output.contains("bottle: timing"), "{}", run.output);

    // The upstream got the real token; the agent only ever sent a placeholder.
    let seen = bed.web.seen();
    let hello = seen
        .iter()
        .find(|s| s.path == "/hello")
        .expect("upstream saw /hello");
    assert_eq!(
        hello.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(
        !seen.iter().any(|s| s.path.contains("ghp_")),
        "the DLP-blocked request reached the upstream"
    );
    // Denied and tunnelling names never left the host.
    assert_eq!(bed.dns.seen("evil.example.com"), 0);
    assert_eq!(
        bed.dns
            .seen("6a3f9c0d1e2b4a5968778695a4b3c2d1e0f9a8b7.tunnel.bottle.test"),
        0
    );
    assert!(bed.dns.seen("www.tunnel.bottle.test") >= 1);
    // Both audit logs recorded the decisions.
    assert!(
        bed.proxy_audit().contains("github-token"),
        "{}",
        bed.proxy_audit()
    );
    assert!(bed.dns_audit().contains("evil.example.com"));
}

/// A launch whose agent sleeps, once the agent runs; and its run directory.
async fn sleeping_agent(bed: &Testbed) -> (bottle_e2e::vm::Launching, String) {
    let manifest = bed.manifest("echo agent up; exec sleep 600", "");
    let mut l = bed.launch(&manifest);
    let line = l.wait_for("bottle: run dir", LIMIT).await;
    let run_dir = line.rsplit(' ').next().unwrap_or_default().to_string();
    l.wait_for("agent up", LIMIT).await;
    (l, run_dir)
}

/// The serial lock, a testbed and a launch whose agent sleeps; `None`
/// (after printing why) when this machine cannot run VMs.
async fn sleeping_bottle() -> Option<(
    tokio::sync::MutexGuard<'static, ()>,
    Testbed,
    bottle_e2e::vm::Launching,
    String,
)> {
    if let Some(why) = vm_unavailable() {
        eprintln!("skipped: {why}");
        return None;
    }
    let serial = bottle_e2e::serial().await;
    let bed = Testbed::start().await;
    let (l, run_dir) = sleeping_agent(&bed).await;
    Some((serial, bed, l, run_dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_killed_from_outside_is_reported_and_cleaned_up() {
    let Some((_serial, _bed, l, run_dir)) = sleeping_bottle().await else {
        return;
    };
    let kids = children_of(l.pid());
    let qemu = kids
        .iter()
        .find(|(_, c)| c.starts_with("qemu-system"))
        .unwrap_or_else(|| panic!("no qemu child: {kids:?}"))
        .0;
    let daemon = kids
        .iter()
        .find(|(_, c)| c.starts_with("vhost-device"))
        .unwrap_or_else(|| panic!("no daemon child: {kids:?}"))
        .0;
    // SAFETY: kill(2) on a pid we just read; a stale pid gets ESRCH.
    unsafe { libc::kill(qemu as i32, libc::SIGKILL) };
    let run = l.finish(Duration::from_secs(30)).await;
    assert_eq!(run.code, Some(125), "{}", run.output);
    assert!(
        run.output
            .contains("the VM stopped before the agent reported an exit"),
        "{}",
        run.output
    );
    assert!(!alive(qemu), "qemu still running");
    assert!(!alive(daemon), "vhost-device-vsock still running");
    assert!(
        !std::path::Path::new(&run_dir).exists(),
        "run dir {run_dir} (sockets) left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_interrupt_stops_the_agent_and_powers_off() {
    let Some((_serial, _bed, l, run_dir)) = sleeping_bottle().await else {
        return;
    };
    let kids: Vec<u32> = children_of(l.pid()).into_iter().map(|k| k.0).collect();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(l.pid() as i32, libc::SIGINT) };
    let run = l.finish(Duration::from_secs(60)).await;
    // sleep dies of the SIGTERM the guest forwards: 128 + 15.
    assert_eq!(run.code, Some(143), "{}", run.output);
    for k in kids {
        assert!(!alive(k), "child {k} still running");
    }
    assert!(!std::path::Path::new(&run_dir).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_agent_crash_loop_restarts_with_backoff_and_the_host_sees_each() {
    if let Some(why) = vm_unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let _serial = bottle_e2e::serial().await;
    let bed = Testbed::start().await;
    // Each run counts itself in guest /tmp (the same VM throughout), prints
    // the guest's uptime and fails; DNS still answers on every attempt.
    let script = r#"n=$(cat /tmp/attempt 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/attempt
up=$(cut -d' ' -f1 /proc/uptime)
if dnsq www.tunnel.bottle.test A >/dev/null 2>&1; then d=ok; else d=FAIL; fi
echo "CHECK attempt-$n $d uptime=$up"
exit 3"#;
    let manifest = bed.manifest_with_agent(
        script,
        "restart = \"on-failure\"\nmax_restarts = 3\nrestart_backoff_ms = 300",
        "",
    );
    let run = bed.launch(&manifest).finish(LIMIT).await;
    // 1 run + 3 restarts, then the last failure's code comes back.
    assert_eq!(run.code, Some(3), "{}", run.output);
    let uptime = |n: u32| -> f64 {
        let line = run.check(&format!("attempt-{n}"));
        assert!(line.contains(" ok "), "attempt {n}: {line}");
        line.rsplit("uptime=")
            .next()
            .and_then(|u| u.trim().parse().ok())
            .unwrap_or_else(|| panic!("no uptime in {line}"))
    };
    let times: Vec<f64> = (1..=4).map(uptime).collect();
    assert!(
        !run.output.contains("CHECK attempt-5"),
        "restarted past max_restarts:\n{}",
        run.output
    );
    // The host saw every restart, with the doubling delays...
    for (attempt, delay) in [(1, 300), (2, 600), (3, 1200)] {
        let want = format!("bottle: agent restarting (attempt {attempt}) in {delay} ms");
        assert!(run.output.contains(&want), "{want}:\n{}", run.output);
    }
    // ... and the guest kept them: each gap at least its delay.
    for (i, delay) in [0.3, 0.6, 1.2].iter().enumerate() {
        let gap = times[i + 1] - times[i];
        assert!(
            gap >= *delay - 0.02,
            "gap {i}: {gap:.2} s < {delay} s ({times:?})"
        );
    }
}

#[tokio::test]
async fn launch_refuses_bad_input_before_starting_anything() {
    let bed = Testbed::start().await;
    // A broken manifest.
    let bad = bed.dir.path().join("bad.toml");
    std::fs::write(&bad, "[agent]\ncommand = \"not a list\"\n").unwrap();
    let run = bed.launch(&bad).finish(Duration::from_secs(20)).await;
    assert_eq!(run.code, Some(2), "{}", run.output);
    assert!(run.output.contains("bad.toml:2"), "{}", run.output);
    assert!(!run.output.contains("bottle: backend"), "{}", run.output);
    // A missing image.
    let manifest = bed.manifest("true", "");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("[vm]\n", "[vm]\nkernel = \"/nonexistent/vmlinuz\"\n");
    std::fs::write(&manifest, text).unwrap();
    let run = bed.launch(&manifest).finish(Duration::from_secs(20)).await;
    assert_eq!(run.code, Some(2), "{}", run.output);
    assert!(
        run.output
            .contains("[vm] kernel /nonexistent/vmlinuz does not exist"),
        "{}",
        run.output
    );
    assert!(run.output.contains("images/build.sh"), "{}", run.output);
    assert!(!run.output.contains("bottle: backend"), "{}", run.output);
    // A secret that is not set.
    let manifest = bed.manifest("true", "");
    let run = {
        let mut cmd = tokio::process::Command::new(bottle_e2e::bins::host());
        cmd.arg("launch")
            .arg(&manifest)
            .env_remove("BOTTLE_VMTEST_TOKEN")
            .kill_on_drop(true);
        tokio::time::timeout(Duration::from_secs(20), cmd.output())
            .await
            .expect("a launch without its secret still running after 20 s")
            .unwrap()
    };
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains("BOTTLE_VMTEST_TOKEN"), "{err}");
}
