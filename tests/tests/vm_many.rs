//! Many bottles on one machine (issue 15): eight `bottle-host launch`es at
//! once by the same user, in real VMs with small memory. Each gets its own
//! run directory, sockets, DNS filter and proxy state; each bottle's audit
//! logs hold only its own decisions; stopping one leaves the others
//! running; every other one exits with its own code.

use std::time::{Duration, Instant};

use bottle_e2e::vm::{alive, banner, bottle_dirs, vm_unavailable, Launching, Testbed, CHECK_SH};

const N: usize = 8;
/// Eight TCG boots at once on a 2-core machine: generous.
const LIMIT: Duration = Duration::from_secs(420);

/// Agent `k`: one lookup and one request of its own, then wait for the
/// test's gate (the testbed holds `/gate` until it opens), then exit with
/// its own code.
fn agent(k: usize, port: u16) -> String {
    format!(
        r#"{CHECK_SH}
site=https://api.bottle.test:{port}
check own_request sh -c "curl -sS --max-time 60 -o /dev/null -w '%{{http_code}}' $site/bottle-{k} | grep -x 200"
check own_lookup getent hosts name-{k}.tunnel.bottle.test
echo "READY {k}"
i=0
until [ "$(curl -s --max-time 200 -o /dev/null -w '%{{http_code}}' $site/gate-{k})" = 200 ]; do
  i=$((i+1)); [ $i -gt 5 ] && exit 99
  sleep 1
done
exit {code}
"#,
        code = 10 + k
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_bottles_at_once_keep_to_themselves() {
    if let Some(why) = vm_unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let _serial = bottle_e2e::serial().await;
    let bed = Testbed::start().await;
    let port = bed.web.addr.port();
    let t0 = Instant::now();
    let mut bottles: Vec<Launching> = Vec::new();
    for k in 0..N {
        // One manifest file per bottle (the testbed writes bottle.toml).
        let m = bed.manifest(&agent(k, port), "");
        let own = bed.dir.path().join(format!("bottle-{k}.toml"));
        let text = std::fs::read_to_string(&m)
            .unwrap()
            .replace("memory_mib = 512", "memory_mib = 256");
        std::fs::write(&own, text).unwrap();
        bottles.push(bed.launch(&own));
    }
    let mut ready_at = Vec::new();
    for (k, b) in bottles.iter_mut().enumerate() {
        b.wait_for(&format!("READY {k}"), LIMIT).await;
        ready_at.push(t0.elapsed());
    }
    eprintln!("all {N} agents ready after {:?}", t0.elapsed());

    let run_dirs: Vec<String> = bottles
        .iter()
        .map(|b| banner(&b.seen, "run dir").expect("run dir in the banner"))
        .collect();
    let mut distinct = run_dirs.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), N, "{run_dirs:?}");

    // Stop bottle 0 as Ctrl-C would; the others keep running.
    let first = bottles.remove(0);
    let pid = first.pid();
    bottle_e2e::sys::signal(pid, libc::SIGTERM);
    let stopped = first.finish(Duration::from_secs(60)).await;
    assert_eq!(stopped.code, Some(143), "{}", stopped.output);
    for b in &bottles {
        assert!(alive(b.pid()), "a bottle died with bottle 0");
    }
    assert!(!std::path::Path::new(&run_dirs[0]).exists());

    bed.web.open_gate();
    for (i, b) in bottles.into_iter().enumerate() {
        let k = i + 1;
        let run = b.finish(LIMIT).await;
        run.assert_ok("own_request");
        run.assert_ok("own_lookup");
        assert_eq!(run.code, Some(10 + k as i32), "bottle {k}:\n{}", run.output);
        assert!(
            !std::path::Path::new(&run_dirs[k]).exists(),
            "run dir {k} left"
        );
    }

    // Each bottle's logs hold its own decisions only.
    let dirs = bottle_dirs(&bed.dir.path().join("state"));
    assert_eq!(dirs.len(), N, "{dirs:?}");
    let mut owners = Vec::new();
    for d in &dirs {
        let proxy = std::fs::read_to_string(d.join("audit.jsonl")).unwrap_or_default();
        let dns = std::fs::read_to_string(d.join("dns-audit.jsonl")).unwrap_or_default();
        let mine: Vec<usize> = (0..N)
            .filter(|k| proxy.contains(&format!("/bottle-{k}\"")))
            .collect();
        assert_eq!(mine.len(), 1, "{}: {mine:?}\n{proxy}", d.display());
        let k = mine[0];
        for j in (0..N).filter(|&j| j != k) {
            assert!(!proxy.contains(&format!("/gate-{j}\"")), "{}", d.display());
            assert!(!dns.contains(&format!("name-{j}.")), "{}", d.display());
        }
        assert!(
            dns.contains(&format!("name-{k}.")),
            "{}:\n{dns}",
            d.display()
        );
        owners.push(k);
    }
    owners.sort();
    assert_eq!(owners, (0..N).collect::<Vec<_>>());
    eprintln!(
        "ready after (s): {:?}",
        ready_at
            .iter()
            .map(Duration::as_secs_f32)
            .collect::<Vec<_>>()
    );
}
