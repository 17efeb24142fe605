//! The container image's root filesystem without a container engine
//! (issue 15, "In a container"): `deploy/container/rootfs.sh` assembles it
//! from this build (the script the `Containerfile` runs), and
//! `deploy/container/sandbox.sh` runs its `bottle-entrypoint` as an
//! ordinary user in user, mount, PID and network namespaces, root
//! read-only, uid 10001 with no capabilities. The demo agent's checks
//! pass against the testbed inside the same network namespace, the agent's
//! exit code comes out, standard output holds only the audit logs as JSON
//! lines, and SIGTERM to the container's PID 1 stops the agent gracefully.

use std::time::Duration;

use bottle_e2e::container::{descendants, status_field, unavailable, Container};
use bottle_e2e::vm::{demo_agent, Launching, DEMO_CHECKS, TOKEN};

const LIMIT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_rootfs_runs_the_demo_unprivileged() {
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let _serial = bottle_e2e::serial().await;
    let c = Container::build();
    c.config_file(
        "bottle.toml",
        &Container::manifest(&demo_agent(bottle_e2e::container::WEB_PORT)),
    );
    let args = ["--upstream-ca", "/etc/bottle/upstream-ca.pem"];
    let mut run = Launching::spawn(c.command(&args));

    // While the agent runs: every process of the container, from its PID 1
    // down to QEMU, is the ordinary user with no capability at all.
    run.wait_for("CHECK only_lo", LIMIT).await;
    let procs = descendants(run.pid());
    let names: Vec<&str> = procs.iter().map(|(_, n)| n.as_str()).collect();
    for want in [
        "bottle-entrypoi",
        "bottle-host",
        "qemu-system-x86",
        "vhost-device-vs",
    ] {
        assert!(names.contains(&want), "no {want} among {names:?}");
    }
    let uid = bottle_e2e::sys::ensure_user(bottle_e2e::container::USER).0;
    for (pid, name) in procs.iter().filter(|(_, n)| {
        [
            "bottle-entrypoi",
            "bottle-host",
            "qemu-system-x86",
            "vhost-device-vs",
        ]
        .contains(&n.as_str())
    }) {
        let field = |f| status_field(*pid, f).unwrap_or_default();
        for cap in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
            assert_eq!(field(cap), "0000000000000000", "{name} {cap}");
        }
        assert_eq!(field("NoNewPrivs"), "1", "{name} NoNewPrivs");
        let real_uid = field("Uid");
        assert!(
            real_uid.split_whitespace().all(|u| u == uid.to_string()),
            "{name} runs as {real_uid}, not {uid}"
        );
        if name == "bottle-entrypoi" {
            // PID 1 of the container's PID namespace, as in a pod.
            assert!(
                field("NSpid").ends_with("\t1"),
                "{name} NSpid {}",
                field("NSpid")
            );
        }
    }

    let run = run.finish(LIMIT).await;
    for check in DEMO_CHECKS {
        run.assert_ok(check);
    }
    assert_eq!(run.code, Some(42), "{}", run.output);
    assert!(
        run.output.contains("/usr/share/bot-bottle/image/vmlinuz"),
        "not the container's image:\n{}",
        run.output
    );

    // Standard output: the audit logs only, one JSON object a line, both
    // the DNS filter's and the proxy's, the secret in neither.
    let out = std::fs::read_to_string(c.stdout_path()).unwrap();
    assert!(!out.contains(TOKEN), "the token reached the audit output");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let dns = |name: &str, verdict: &str| {
        lines
            .iter()
            .any(|v| v["name"] == name && v["verdict"] == verdict)
    };
    assert!(
        dns("evil.example.com.", "nxdomain"),
        "no DNS denial in:\n{out}"
    );
    assert!(
        lines.iter().any(|v| v["name"] == "api.bottle.test."),
        "no DNS line for the allowed name in:\n{out}"
    );
    let proxy = |host: &str, verdict: &str| {
        lines.iter().any(|v| {
            v.get("method").is_some()
                && v["verdict"] == verdict
                && v["host"].as_str().is_some_and(|h| h.starts_with(host))
        })
    };
    assert!(
        proxy("api.bottle.test", "allow"),
        "no allowed request in:\n{out}"
    );
    // A tunnel's host is `name:port`.
    assert!(
        proxy("example.com:443", "deny"),
        "no refused request in:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_sigterm_and_bad_manifest() {
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let _serial = bottle_e2e::serial().await;
    let c = Container::build();

    // A manifest error: exit 2 before anything starts, nothing on stdout.
    c.config_file("bad.toml", "[agent]\ncommand = []\n");
    let run = Launching::spawn(c.command(&["/etc/bottle/bad.toml"]))
        .finish(Duration::from_secs(60))
        .await;
    assert_eq!(run.code, Some(2), "{}", run.output);
    assert_eq!(std::fs::read_to_string(c.stdout_path()).unwrap(), "");

    // SIGTERM to the container's PID 1 (what the kubelet sends when a Job
    // is deleted or runs past its deadline) reaches the agent through
    // bottle-host; the agent's own exit code (143) comes out.
    c.config_file(
        "bottle.toml",
        &Container::manifest("echo AGENT-WAITING; sleep 600"),
    );
    let mut run = Launching::spawn(c.command(&["--upstream-ca", "/etc/bottle/upstream-ca.pem"]));
    run.wait_for("AGENT-WAITING", LIMIT).await;
    let pid1 = descendants(run.pid())
        .into_iter()
        .find(|(_, n)| n == "bottle-entrypoi")
        .expect("the entrypoint")
        .0;
    bottle_e2e::sys::signal(pid1, libc::SIGTERM);
    let run = run.finish(Duration::from_secs(60)).await;
    assert_eq!(run.code, Some(143), "{}", run.output);
}
