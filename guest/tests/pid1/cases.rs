//! The scenarios.

use super::*;

fn no_restart() -> RestartPolicy {
    RestartPolicy {
        mode: RestartMode::No,
        ..Default::default()
    }
}

#[tokio::test]
async fn agent_runs_orphans_are_reaped_and_the_code_reaches_the_host() {
    skip_unless_able!();
    let sb = Sandbox::new();
    let listener = sb.listen().await;
    let t0 = Instant::now();
    let child = sb.start_init();
    let init = init_pid(child.id().unwrap());
    // Two orphans (their parent subshells exit at once), then exit 7.
    let cfg = config(
        "(sleep 0.2 &); (sleep 0.3 &); sleep 1.2; test -n \"$SSL_CERT_FILE\" || exit 99; exit 7",
        no_restart(),
        1000,
    );
    let mut s = handshake(&listener, cfg).await;
    let first: GuestMessage = next(&mut s).await;
    let GuestMessage::Process(ProcessEvent::Started { pid, attempt: 0 }) = first else {
        panic!("expected Started, got {first:?}");
    };
    println!(
        "dial to agent started (host side, incl. unshare): {:?}",
        t0.elapsed()
    );

    // While the agent sleeps, the orphans are gone and status answers.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let zombies = zombies_of(init);
    assert!(zombies.is_empty(), "zombies under the init: {zombies:?}");
    let st = status_json(&sb.path("status.sock")).await;
    println!("status: {st}");
    assert_eq!(st["processes"][0]["state"], "running");
    assert_eq!(st["processes"][0]["pid"], pid);
    assert_eq!(st["orphans_reaped"], 2);
    assert_eq!(st["host"]["state"], "connected");
    assert_eq!(st["host"]["peer_software"], "test-host");
    // The real services run: the DNS stub is up (its host channel is absent
    // in this test, so it only counts), and its counters are in the status.
    assert!(st["dns"].is_object(), "{st}");
    assert_eq!(st["dns"]["queries_udp"], 0, "{st}");
    assert_eq!(st["ca_installed"].as_array().unwrap().len(), 3, "{st}");
    let ms = st["agent_started_ms"].as_u64().unwrap();
    println!("init start to agent exec: {ms} ms");
    println!("init VmRSS while supervising: {} kB", vm_rss_kb(init));
    let text = status(&[], &sb.path("status.sock")).await;
    assert!(String::from_utf8_lossy(&text.stdout).contains("2 reaped"));

    let msgs = events(&until_exit(&mut s, Duration::from_secs(10)).await);
    assert_eq!(
        msgs,
        vec![
            GuestMessage::Process(ProcessEvent::Exited {
                pid,
                code: 7,
                signal: None
            }),
            GuestMessage::Exit { code: 7 },
        ]
    );
    assert_eq!(exit_status(child).await, 7);
    // The CA went into the sandbox rootfs, once.
    let bundle =
        std::fs::read_to_string(sb.path("root/etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert_eq!(bundle.matches("VGVzdENB").count(), 1);
    assert!(sb.path("root/etc/bot-bottle/ca.pem").exists());
    // The init owns resolv.conf: the stub on 127.0.0.1 is the only resolver.
    let resolv = std::fs::read_to_string(sb.path("root/etc/resolv.conf")).unwrap();
    assert!(resolv.contains("nameserver 127.0.0.1"), "{resolv}");
    assert_eq!(resolv.matches("nameserver").count(), 1, "{resolv}");
}

#[tokio::test]
async fn a_crashing_agent_is_restarted_with_backoff_then_given_up() {
    skip_unless_able!();
    let sb = Sandbox::new();
    let listener = sb.listen().await;
    let child = sb.start_init();
    let policy = RestartPolicy {
        mode: RestartMode::OnFailure,
        max_restarts: 2,
        backoff_initial_ms: 150,
        backoff_max_ms: 1000,
    };
    // Each run notes when it started, by the guest's own clock: arrival
    // times on this side carry the host's scheduling delays.
    let starts = sb.path("starts");
    let script = format!("date +%s%N >> {}; exit 3", starts.display());
    let mut s = handshake(&listener, config(&script, policy, 1000)).await;
    let got = until_exit(&mut s, Duration::from_secs(10)).await;
    let kinds: Vec<String> = got
        .iter()
        .map(|(_, m)| match m {
            GuestMessage::Process(ProcessEvent::Started { attempt, .. }) => {
                format!("start{attempt}")
            }
            GuestMessage::Process(ProcessEvent::Exited { code, .. }) => format!("exit{code}"),
            GuestMessage::Process(ProcessEvent::Restarting { attempt, delay_ms }) => {
                format!("restart{attempt}@{delay_ms}")
            }
            GuestMessage::Exit { code } => format!("EXIT{code}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "start0",
            "exit3",
            "restart1@150",
            "start1",
            "exit3",
            "restart2@300",
            "start2",
            "exit3",
            "EXIT3"
        ]
    );
    // The backoff really was waited out, between one run's start and the
    // next (which includes the run itself, so never less than the delay).
    let ns: Vec<u64> = std::fs::read_to_string(&starts)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(ns.len(), 3, "{ns:?}");
    for (i, delay) in [(0, 150), (1, 300)] {
        let waited = Duration::from_nanos(ns[i + 1] - ns[i]);
        assert!(
            waited >= Duration::from_millis(delay),
            "restart after {waited:?}, backoff {delay} ms"
        );
    }
    assert_eq!(exit_status(child).await, 3);
}

#[tokio::test]
async fn sigterm_to_pid1_stops_a_stubborn_agent_within_the_grace_period() {
    skip_unless_able!();
    let sb = Sandbox::new();
    let listener = sb.listen().await;
    let child = sb.start_init();
    let init = init_pid(child.id().unwrap());
    // Ignores SIGTERM (and so do its sleeps): only SIGKILL ends it.
    let policy = RestartPolicy {
        mode: RestartMode::Always,
        ..Default::default()
    };
    let agent = "trap '' TERM; while :; do sleep 0.05; done";
    let mut s = handshake(&listener, config(agent, policy, 600)).await;
    let first: GuestMessage = next(&mut s).await;
    assert!(
        matches!(first, GuestMessage::Process(ProcessEvent::Started { .. })),
        "{first:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    // SAFETY: kill(2) on the init we started.
    assert_eq!(unsafe { libc::kill(init as i32, libc::SIGTERM) }, 0);
    let msgs = events(&until_exit(&mut s, Duration::from_secs(5)).await);
    let took = t.elapsed();
    println!("SIGTERM to exit with 600 ms grace: {took:?}");
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    assert!(
        matches!(
            msgs.as_slice(),
            [
                GuestMessage::Process(ProcessEvent::Exited {
                    code: 137,
                    signal: Some(9),
                    ..
                }),
                GuestMessage::Exit { code: 137 }
            ]
        ),
        "{msgs:?}"
    );
    assert_eq!(exit_status(child).await, 137);
}

#[tokio::test]
async fn host_shutdown_stops_a_cooperative_agent_at_once() {
    skip_unless_able!();
    let sb = Sandbox::new();
    let listener = sb.listen().await;
    let child = sb.start_init();
    let mut s = handshake(&listener, config("sleep 30", no_restart(), 5000)).await;
    let first: GuestMessage = next(&mut s).await;
    assert!(
        matches!(first, GuestMessage::Process(ProcessEvent::Started { .. })),
        "{first:?}"
    );
    let t = Instant::now();
    send(&mut s, &HostMessage::Shutdown { grace_ms: 5000 }).await;
    let msgs = events(&until_exit(&mut s, Duration::from_secs(5)).await);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(
        msgs.last(),
        Some(&GuestMessage::Exit { code: 143 }),
        "{msgs:?}"
    );
    assert_eq!(exit_status(child).await, 143);
}

#[tokio::test]
async fn an_unreachable_host_stops_the_init_with_its_own_code() {
    skip_unless_able!();
    let sb = Sandbox::new();
    let t = Instant::now();
    let code = exit_status(sb.start_init()).await;
    println!("gave up on the host after {:?}", t.elapsed());
    assert_eq!(code, 200, "HOST_UNREACHABLE");
    assert!(t.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn a_refused_hello_stops_the_init_with_its_own_code() {
    skip_unless_able!();
    let sb = Sandbox::new();
    let listener = sb.listen().await;
    let child = sb.start_init();
    let mut s = accept(&listener).await;
    let _hello: bottle_shared::Hello = next(&mut s).await;
    let refuse = HelloReply::Refused {
        reason: "test host says no".into(),
    };
    send(&mut s, &refuse).await;
    assert_eq!(exit_status(child).await, 201, "HELLO_REFUSED");
}

#[tokio::test]
async fn the_agent_runs_unprivileged_in_its_own_session() {
    skip_unless_able!();
    let sb = Sandbox::new();
    let listener = sb.listen().await;
    let child = sb.start_init();
    // Each check exits with its own code, so a failure says which one.
    let script = r#"
        test "$(id -u)" = 65534 || exit 10
        test "$(id -g)" = 65534 || exit 11
        test "$(id -G)" = "65534 4242" || exit 12
        grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/self/status || exit 13
        grep -q '^CapEff:[[:space:]]*0*$' /proc/self/status || exit 14
        set -- $(cut -d' ' -f5,6 /proc/$$/stat)
        test "$1" = $$ && test "$2" = $$ || exit 15
        test "$HOME" = /nonexistent -a "$PWD" = / || exit 16
        test "$FOO" = bar -a "$USER" = nobody || exit 17
        test "$(cat /proc/sys/kernel/hostname)" = bottled || exit 18
        ip -o link show lo | grep -q ',UP' || exit 19
        exit 42
    "#;
    std::fs::write(
        sb.path("root/etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        sb.path("root/etc/group"),
        "nogroup:x:65534:\nextra:x:4242:nobody\n",
    )
    .unwrap();
    let mut cfg = config(script, no_restart(), 1000);
    cfg.agent.user = "nobody".into();
    cfg.agent.env = vec![("FOO".into(), "bar".into())];
    let mut s = handshake(&listener, cfg).await;
    let msgs = events(&until_exit(&mut s, Duration::from_secs(10)).await);
    assert_eq!(
        msgs.last(),
        Some(&GuestMessage::Exit { code: 42 }),
        "{msgs:?}"
    );
    assert_eq!(exit_status(child).await, 42);
}

#[tokio::test]
async fn sigterm_while_waiting_for_the_host_stops_at_once() {
    skip_unless_able!();
    let sb = Sandbox::new();
    let child = sb.start_init();
    let init = init_pid(child.id().unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    // SAFETY: kill(2) on the init we started.
    assert_eq!(unsafe { libc::kill(init as i32, libc::SIGTERM) }, 0);
    assert_eq!(exit_status(child).await, 143);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
}

/// Needs neither root nor namespaces: outside PID 1 the init only becomes a
/// subreaper and touches no mounts, hostname or network.
#[tokio::test]
async fn outside_pid1_the_init_is_a_subreaper_and_exits_with_the_code() {
    let sb = Sandbox::new();
    let listener = sb.listen().await;
    let child = Command::new(bin())
        .arg("init")
        .arg("--host")
        .arg(sb.base())
        .arg("--root")
        .arg(sb.path("root"))
        .arg("--status-socket")
        .arg(sb.path("status.sock"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let init = child.id().unwrap();
    let mut s = handshake(
        &listener,
        config("(sleep 0.1 &); sleep 0.4; exit 5", no_restart(), 1000),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        zombies_of(init).is_empty(),
        "zombies: {:?}",
        zombies_of(init)
    );
    assert_eq!(
        status_json(&sb.path("status.sock")).await["orphans_reaped"],
        1
    );
    let msgs = events(&until_exit(&mut s, Duration::from_secs(10)).await);
    assert_eq!(msgs.last(), Some(&GuestMessage::Exit { code: 5 }));
    assert_eq!(exit_status(child).await, 5);
}
