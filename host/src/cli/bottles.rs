//! The verbs for running bottles: `ps`, `stop`, `kill`, `logs`, `audit`.
//! Each talks to the bottle's own `launch` over its control socket
//! (`launch/lifecycle/`) or reads the bottle's log directory.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::launch::lifecycle::{self, Info, Request};

/// How often `-f` looks for more.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Most bytes of a log read at once: `logs` streams, however large.
const READ_CHUNK: usize = 64 * 1024;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

/// `bottle-host ps [--json]`.
pub fn ps(state: Option<&Path>, json: bool) -> Result<i32> {
    let state = super::state_dir(state)?;
    let rt = runtime()?;
    let infos: Vec<Info> = rt.block_on(lifecycle::ps_all(&state));
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&infos)?)?;
        return Ok(0);
    }
    writeln!(
        out,
        "{:<20} {:<10} {:<12} {:>8} {:>8} {:>10} {:>10}  IMAGE",
        "NAME", "BACKEND", "AGENT", "RESTARTS", "UPTIME", "DNS", "PROXY"
    )?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    for i in &infos {
        let (dns, proxy) = counters(i);
        writeln!(
            out,
            "{:<20} {:<10} {:<12} {:>8} {:>8} {:>10} {:>10}  {}",
            i.name,
            i.backend.split_whitespace().next().unwrap_or(""),
            i.agent_state,
            i.restarts,
            uptime(now.saturating_sub(i.started_unix_ms)),
            dns,
            proxy,
            i.image
        )?;
    }
    Ok(0)
}

/// The guest's DNS queries and proxied connections, as `bottle-guest
/// status` counts them.
fn counters(i: &Info) -> (String, String) {
    let Some(g) = &i.guest else {
        return ("-".into(), "-".into());
    };
    let dns = ["queries_udp", "queries_tcp"]
        .iter()
        .filter_map(|k| g["dns"][k].as_u64())
        // The guest's numbers: added without overflowing.
        .fold(0u64, u64::saturating_add);
    let proxy = g["egress"]["connections"].as_u64();
    (
        dns.to_string(),
        proxy.map_or_else(|| "-".into(), |n| n.to_string()),
    )
}

fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `bottle-host stop [--time S] NAME…` and `bottle-host kill NAME…`:
/// ask, then wait until each bottle is gone.
pub fn stop(state: Option<&Path>, names: &[String], grace: Option<u64>) -> Result<i32> {
    let state = super::state_dir(state)?;
    let rt = runtime()?;
    let mut code = 0;
    for name in names {
        let (req, wait) = match grace {
            Some(s) => (
                Request::Stop {
                    grace_ms: s.saturating_mul(1000),
                },
                Duration::from_secs(s.saturating_add(30)),
            ),
            None => (Request::Kill, Duration::from_secs(30)),
        };
        let r = rt.block_on(async {
            lifecycle::request(&state, name, &req).await?;
            let sock = lifecycle::socket_path(&state, name);
            let t0 = Instant::now();
            while sock.exists() {
                if t0.elapsed() > wait {
                    bail!("bottle {name:?} did not stop within {wait:?}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(())
        });
        match r {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("bottle-host: {e:#}");
                code = 1;
            }
        }
    }
    Ok(code)
}

/// The log directory of bottle `name`: the running one's, else the most
/// recent bottle of that name that ran.
fn log_dir(state: &Path, name: &str) -> Result<(PathBuf, bool)> {
    lifecycle::check_name(name)?;
    let rt = runtime()?;
    if let Ok(i) = rt.block_on(lifecycle::request(state, name, &Request::Ps)) {
        return Ok((i.logs, true));
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(state.join("bottles"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .find(|d| std::fs::read_to_string(d.join("name")).is_ok_and(|n| n.trim() == name))
        .map(|d| (d, false))
        .with_context(|| format!("no bottle named {name:?} has run here"))
}

fn running(state: &Path, name: &str) -> bool {
    lifecycle::socket_path(state, name).exists()
}

/// Print `files` (what exists of them) and, with `follow`, what is added
/// until the bottle ends: `each` gets the file's index and its bytes, in
/// chunks of at most [`READ_CHUNK`].
fn tail(
    state: &Path,
    name: &str,
    files: &[PathBuf],
    follow: bool,
    each: &mut dyn FnMut(usize, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut pos = vec![0u64; files.len()];
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        // Whether it still runs is read first: what it wrote before ending
        // is then printed before we stop.
        let alive = follow && running(state, name);
        for (i, (f, p)) in files.iter().zip(pos.iter_mut()).enumerate() {
            let Ok(mut file) = std::fs::File::open(f) else {
                continue;
            };
            file.seek(SeekFrom::Start(*p))?;
            loop {
                let n = match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                };
                *p += n as u64;
                each(i, &buf[..n])?;
            }
        }
        if !alive {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// `bottle-host logs [-f] [--console] NAME`.
pub fn logs(state: Option<&Path>, name: &str, follow: bool, console: bool) -> Result<i32> {
    let state = super::state_dir(state)?;
    let (dir, _) = log_dir(&state, name)?;
    let file = dir.join(if console { "console.log" } else { "agent.log" });
    let mut out = std::io::stdout().lock();
    tail(&state, name, &[file], follow, &mut |_, b| {
        out.write_all(b)?;
        out.flush()?;
        Ok(())
    })?;
    Ok(0)
}

/// `bottle-host audit [-f] [--json] NAME`: the DNS and proxy decisions.
pub fn audit(state: Option<&Path>, name: &str, follow: bool, json: bool) -> Result<i32> {
    let state = super::state_dir(state)?;
    let (dir, _) = log_dir(&state, name)?;
    let files = [dir.join("dns-audit.jsonl"), dir.join("audit.jsonl")];
    let mut out = std::io::stdout().lock();
    audit_lines(&state, name, &files, follow, json, &mut out)?;
    Ok(0)
}

/// The lines of the audit logs `files` to `out`, as JSON or as a table.
/// Each file has its own partial line: one still being written (a torn
/// last line) is held back until its end comes, never glued to another
/// file's line.
fn audit_lines(
    state: &Path,
    name: &str,
    files: &[PathBuf],
    follow: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    if !json {
        writeln!(
            out,
            "{:<24} {:<5} {:<9} {:<50} RULE",
            "TIME", "KIND", "VERDICT", "WHAT"
        )?;
    }
    let mut partial = vec![Vec::new(); files.len()];
    tail(state, name, files, follow, &mut |i, b| {
        let partial = &mut partial[i];
        partial.extend_from_slice(b);
        while let Some(nl) = partial.iter().position(|&c| c == b'\n') {
            let line: Vec<u8> = partial.drain(..=nl).collect();
            if json {
                out.write_all(&line)?;
            } else if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) {
                writeln!(out, "{}", audit_row(&v))?;
            }
        }
        out.flush()?;
        Ok(())
    })
}

/// One audit line as a table row: DNS lines have a `name`, proxy lines a
/// `host`.
fn audit_row(v: &serde_json::Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let (kind, what) = if v.get("host").is_some() {
        (
            "proxy",
            format!(
                "{} {}{} → {}",
                s("method"),
                s("host"),
                s("path"),
                v["status"]
            ),
        )
    } else {
        ("dns", format!("{} {}", s("name"), s("type")))
    };
    let mut what = what;
    if what.chars().count() > 50 {
        what = what.chars().take(49).collect::<String>() + "…";
    }
    format!(
        "{:<24} {:<5} {:<9} {:<50} {}",
        s("time"),
        kind,
        s("verdict"),
        what,
        s("rule")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counters are the guest's to set: huge ones do not overflow
    /// (a panic in debug builds).
    #[test]
    fn guest_counters_do_not_overflow() {
        let info = Info {
            guest: Some(serde_json::json!({
                "dns": {"queries_udp": u64::MAX, "queries_tcp": 1},
                "egress": {"connections": 7}
            })),
            ..Info::default()
        };
        assert_eq!(counters(&info), (u64::MAX.to_string(), "7".to_string()));
    }

    #[test]
    fn audit_rows_name_the_kind() {
        let dns: serde_json::Value = serde_json::from_str(
            r#"{"time":"2026-12-01T00:00:00Z","name":"evil.example.com","type":"A","verdict":"nxdomain","rule":"not-allowlisted"}"#,
        )
        .unwrap();
        let r = audit_row(&dns);
        assert!(
            r.contains("dns") && r.contains("evil.example.com A") && r.contains("not-allowlisted"),
            "{r}"
        );
        let px: serde_json::Value = serde_json::from_str(
            r#"{"time":"t","method":"GET","host":"api.x","path":"/v1","verdict":"deny","rule":"github-token","status":403}"#,
        )
        .unwrap();
        let r = audit_row(&px);
        assert!(
            r.contains("proxy") && r.contains("GET api.x/v1 → 403"),
            "{r}"
        );
    }

    /// A DNS log ending mid-line (a line being written) is followed by
    /// the proxy's log: each file has its own partial line, so the proxy's
    /// first line is neither lost nor glued to the torn one.
    #[test]
    fn a_torn_line_in_one_audit_log_leaves_the_other_alone() {
        let t = tempfile::tempdir().unwrap();
        let dns = t.path().join("dns-audit.jsonl");
        let proxy = t.path().join("audit.jsonl");
        let t1 = r#"{"time":"t1","name":"a.example.com","type":"A","verdict":"allow","rule":"r"}"#;
        let t3 = r#"{"time":"t3","method":"GET","host":"api.x","path":"/v1","verdict":"deny","rule":"github-token","status":403}"#;
        std::fs::write(&dns, format!("{t1}\n{{\"time\":\"t2\",\"name\":\"b.exam")).unwrap();
        std::fs::write(&proxy, format!("{t3}\n")).unwrap();
        let files = [dns, proxy];
        let mut out = Vec::new();
        audit_lines(t.path(), "x", &files, false, true, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), format!("{t1}\n{t3}\n"));
        let mut out = Vec::new();
        audit_lines(t.path(), "x", &files, false, false, &mut out).unwrap();
        let table = String::from_utf8(out).unwrap();
        let rows: Vec<&str> = table.lines().skip(1).collect();
        assert_eq!(rows.len(), 2, "{table}");
        assert!(
            rows[0].starts_with("t1") && rows[0].contains("dns"),
            "{table}"
        );
        assert!(
            rows[1].starts_with("t3")
                && rows[1].contains("deny")
                && rows[1].contains("github-token"),
            "{table}"
        );
    }

    /// `logs` (`--console` too) streams a log in bounded pieces instead of
    /// reading the whole file into memory.
    #[test]
    fn logs_are_read_in_bounded_chunks() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("console.log");
        let data: Vec<u8> = (0..(4 * READ_CHUNK + 123)).map(|i| i as u8).collect();
        std::fs::write(&log, &data).unwrap();
        let mut got = Vec::new();
        let mut largest = 0;
        tail(t.path(), "x", &[log], false, &mut |i, b| {
            assert_eq!(i, 0);
            largest = largest.max(b.len());
            got.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert!(largest <= READ_CHUNK, "read {largest} bytes at once");
        assert_eq!(got, data);
    }

    #[test]
    fn uptime_reads_like_docker() {
        assert_eq!(uptime(5_000), "5s");
        assert_eq!(uptime(125_000), "2m05s");
        assert_eq!(uptime(7_260_000), "2h01m");
    }
}
