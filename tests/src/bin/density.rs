//! `density`: what a bottle costs the host (run by `bench/density.sh`, as
//! root, with the guest image built). Launches `N` bottles (default 8) one
//! after another from one user, each as soon as the previous agent runs,
//! and records each one's launch-to-agent time; then measures every
//! bottle's host memory beyond guest RAM (PSS of `bottle-host`, QEMU
//! without its guest-RAM mapping, and the vsock daemon), idle and at the
//! peak of a DNS + HTTPS load the agents make; then lets them exit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bottle_e2e::vm::{vm_unavailable, Launching, Testbed, CHECK_SH};

const LIMIT: Duration = Duration::from_secs(300);

fn agent(k: usize, port: u16, rounds: usize) -> String {
    format!(
        r#"{CHECK_SH}
site=https://api.bottle.test:{port}
wait_gate() {{ until [ "$(curl -s --max-time 200 -o /dev/null -w '%{{http_code}}' $site/gate$1-{k})" = 200 ]; do sleep 2; done; }}
echo "READY {k}"
wait_gate 1
i=0
while [ $i -lt {rounds} ]; do
  getent hosts n$i-{k}.tunnel.bottle.test >/dev/null
  curl -s --max-time 30 -o /dev/null $site/load-{k}-$i
  i=$((i+1))
done
echo "LOADED {k}"
wait_gate 2
exit 0
"#
    )
}

/// PSS in KiB of `pid`: (beyond guest RAM, guest RAM). Guest RAM is
/// QEMU's `memfd` backend mapping.
fn pss(pid: u32) -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return (0, 0);
    };
    let (mut other, mut guest) = (0, 0);
    let mut in_guest = false;
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            in_guest = line.contains("memfd:");
        } else if let Some(v) = line.strip_prefix("Pss:") {
            let kb: u64 = v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
            if in_guest {
                guest += kb;
            } else {
                other += kb;
            }
        }
    }
    (other, guest)
}

/// One bottle's host memory: (overhead KiB, guest RAM KiB), by process.
fn bottle_memory(pid: u32) -> (u64, u64, BTreeMap<String, u64>) {
    let mut by = BTreeMap::new();
    let (mut other, mut guest) = (0, 0);
    for p in bottle_e2e::hostside::tree(pid) {
        let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        let (o, g) = pss(p);
        other += o;
        guest += g;
        *by.entry(comm.trim().to_string()).or_default() += o;
    }
    (other, guest, by)
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Some(why) = vm_unavailable() {
        eprintln!("density: cannot run: {why}");
        std::process::exit(2);
    }
    let n: usize = std::env::var("BOTTLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let memory: u32 = std::env::var("MEMORY_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let bed = Testbed::start().await;
    let port = bed.web.addr.port();
    let mut bottles: Vec<Launching> = Vec::new();
    let mut launch_ms = Vec::new();
    for k in 0..n {
        let m = bed.manifest(&agent(k, port, rounds), "");
        let own = bed.dir.path().join(format!("bottle-{k}.toml"));
        let text = std::fs::read_to_string(&m)
            .expect("manifest")
            .replace("memory_mib = 512", &format!("memory_mib = {memory}"));
        std::fs::write(&own, text).expect("manifest");
        let t = Instant::now();
        let mut l = bed.launch(&own);
        l.wait_for(&format!("READY {k}"), LIMIT).await;
        let wall = t.elapsed().as_secs_f64() * 1000.0;
        let timing = l
            .seen
            .iter()
            .find_map(|s| s.split("launch to agent ").nth(1))
            .and_then(|s| s.trim_end_matches(" ms)").parse::<f64>().ok())
            .unwrap_or(wall);
        println!(
            "launch k={} launch_to_agent_ms={timing:.0} wall_to_ready_ms={wall:.0}",
            k + 1
        );
        launch_ms.push(timing);
        bottles.push(l);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle: Vec<_> = bottles.iter().map(|b| bottle_memory(b.pid())).collect();
    bed.web.open_gate_level(1);
    let mut peak = vec![0u64; n];
    let mut done = vec![false; n];
    let deadline = Instant::now() + LIMIT;
    while done.iter().any(|d| !d) && Instant::now() < deadline {
        for (k, b) in bottles.iter_mut().enumerate() {
            peak[k] = peak[k].max(bottle_memory(b.pid()).0);
            if !done[k] {
                b.drain();
                done[k] = b.seen.iter().any(|l| l.contains(&format!("LOADED {k}")));
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bed.web.open_gate_level(2);
    let mut codes = Vec::new();
    for b in bottles {
        codes.push(b.finish(LIMIT).await.code);
    }

    println!("\nbottle  overhead_idle_MiB  overhead_peak_MiB  guest_ram_MiB  by_process_idle_MiB");
    for k in 0..n {
        let (o, g, by) = &idle[k];
        let parts: Vec<String> = by
            .iter()
            .map(|(c, v)| format!("{c}={:.1}", mib(*v)))
            .collect();
        println!(
            "{:>6}  {:>17.1}  {:>17.1}  {:>13.1}  {}",
            k + 1,
            mib(*o),
            mib(peak[k]),
            mib(*g),
            parts.join(" ")
        );
    }
    let mean = |v: &[u64]| mib(v.iter().sum::<u64>() / v.len().max(1) as u64);
    let idle_o: Vec<u64> = idle.iter().map(|i| i.0).collect();
    println!(
        "\nsummary bottles={n} memory_mib={memory} overhead_idle_mean_MiB={:.1} overhead_peak_max_MiB={:.1} \
         launch_first_ms={:.0} launch_last_ms={:.0} last_over_first={:.2} all_loaded={} exit_codes={codes:?}",
        mean(&idle_o),
        mib(peak.iter().copied().max().unwrap_or(0)),
        launch_ms.first().copied().unwrap_or(0.0),
        launch_ms.last().copied().unwrap_or(0.0),
        launch_ms.last().copied().unwrap_or(0.0) / launch_ms.first().copied().unwrap_or(1.0),
        done.iter().all(|d| *d),
    );
}
