//! A bottle's lifecycle in real VMs: `launch --detach --name`, `ps` (and
//! its counters agreeing with `bottle-guest status`), `logs [-f]`,
//! `audit`, `stop` leaving nothing behind, `kill`, a name clash, a stale
//! socket after a SIGKILLed `bottle-host`, another uid kept out, and
//! clear errors for bottles that do not exist.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bottle_e2e::vm::{alive, children_of, image_dir, vm_unavailable};

/// Boot plus agent, generously: TCG on a loaded 2-core CI machine.
const LIMIT: Duration = Duration::from_secs(240);

/// A state directory, and the `bottle-host launch` processes started in
/// it, SIGKILLed on drop if a test fails half-way (their VMs die with them).
struct Bottles {
    dir: tempfile::TempDir,
    pids: Vec<u32>,
}

impl Drop for Bottles {
    fn drop(&mut self) {
        for &p in &self.pids {
            // SAFETY: kill(2) with integer arguments.
            unsafe { libc::kill(p as i32, libc::SIGKILL) };
        }
    }
}

impl Bottles {
    fn new() -> Bottles {
        Bottles {
            dir: tempfile::tempdir().unwrap(),
            pids: Vec::new(),
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn manifest(&self, file: &str, script: &str) -> PathBuf {
        let p = self.dir.path().join(file);
        let toml = format!(
            "[vm]\nbackend = \"qemu\"\nmemory_mib = 256\n\n[agent]\ncommand = [\"/bin/sh\", \"-c\", '''{script}''']\ngrace_period_ms = 1000\n"
        );
        std::fs::write(&p, toml).unwrap();
        p
    }

    /// `bottle-host VERB --state-dir STATE ARGS…`, to completion.
    fn host(&self, args: &[&str]) -> Output {
        // The state directory right after the verb: before any `--`.
        let mut c = Command::new(bottle_e2e::bins::host());
        c.args(&args[..1])
            .arg("--state-dir")
            .arg(self.state())
            .args(&args[1..])
            .env("BOTTLE_IMAGE_DIR", image_dir())
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        run_bounded(c, LIMIT)
    }

    /// `launch -d --name NAME MANIFEST`: its printed name, and its pid
    /// recorded for the cleanup.
    fn detach(&mut self, name: &str, manifest: &Path) -> Output {
        let out = self.host(&["launch", "-d", "--name", name, manifest.to_str().unwrap()]);
        if out.status.success() {
            if let Some(i) = self.ps().into_iter().find(|i| i["name"] == name) {
                self.pids.push(i["pid"].as_u64().unwrap() as u32);
            }
        }
        out
    }

    fn ps(&self) -> Vec<serde_json::Value> {
        let out = self.host(&["ps", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Poll `ps` until `f` holds for bottle `name`.
    fn wait_ps(
        &self,
        name: &str,
        what: &str,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            let all = self.ps();
            if let Some(i) = all.iter().find(|i| i["name"] == name) {
                if f(i) {
                    return i.clone();
                }
            }
            assert!(t0.elapsed() < LIMIT, "{name}: never {what}; ps: {all:?}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run `c` to completion, killed after `limit`.
fn run_bounded(mut c: Command, limit: Duration) -> Output {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("{c:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn gone_within(pid: u32, limit: Duration) -> bool {
    let t0 = Instant::now();
    while alive(pid) {
        if t0.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

#[test]
fn detached_bottles_are_listed_followed_audited_and_stopped_cleanly() {
    if let Some(why) = vm_unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut b = Bottles::new();
    // One DNS query (denied: nothing is allowlisted), the guest's own
    // status once that is counted, then a tick a second.
    let m = b.manifest(
        "ticker.toml",
        "getent hosts denied.example.com; echo \"STATUS $(/sbin/bottle-guest status --json | tr -d '\\n')\"; \
         echo to-stderr >&2; i=0; while true; do i=$((i+1)); echo tick-$i; sleep 1; done",
    );
    let out = b.detach("t1", &m);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "t1", "launch -d prints the name");

    // A second bottle of the same name is refused; the first runs on.
    let clash = b.host(&["launch", "-d", "--name", "t1", m.to_str().unwrap()]);
    assert!(!clash.status.success());
    assert!(
        text(&clash.stderr).contains("already running"),
        "{}",
        text(&clash.stderr)
    );

    // ps: running, and the guest's counters as bottle-guest status has them.
    let info = b.wait_ps("t1", "running", |i| i["agent_state"] == "running");
    assert_eq!(info["restarts"], 0);
    let logs = |args: &[&str]| text(&b.host(&[&["logs"], args].concat()).stdout);
    let t0 = Instant::now();
    let status_line = loop {
        if let Some(l) = logs(&["t1"]).lines().find(|l| l.starts_with("STATUS ")) {
            break l.to_string();
        }
        assert!(t0.elapsed() < LIMIT, "no STATUS line in the logs");
        std::thread::sleep(Duration::from_millis(500));
    };
    let guest: serde_json::Value = serde_json::from_str(&status_line["STATUS ".len()..]).unwrap();
    let info = b.wait_ps("t1", "showing counters", |i| i["guest"]["dns"].is_object());
    for k in ["queries_udp", "queries_tcp"] {
        assert_eq!(
            info["guest"]["dns"][k], guest["dns"][k],
            "{k}: ps {info} vs status {guest}"
        );
    }
    assert!(
        guest["dns"]["queries_udp"].as_u64().unwrap() >= 1,
        "{guest}"
    );
    let table = text(&b.host(&["ps"]).stdout);
    assert!(
        table.starts_with("NAME") && table.contains("t1") && table.contains("running"),
        "{table}"
    );

    // exec: as the agent (its CA variables), its own streams and code.
    let e = b.host(&[
        "exec",
        "t1",
        "--",
        "sh",
        "-c",
        "echo out:$SSL_CERT_FILE; echo err >&2; exit 4",
    ]);
    assert_eq!(e.status.code(), Some(4), "{}", text(&e.stderr));
    assert_eq!(text(&e.stdout), "out:/etc/ssl/certs/ca-certificates.crt\n");
    assert_eq!(text(&e.stderr), "err\n");
    let mut cat = Command::new(bottle_e2e::bins::host());
    cat.args(["exec", "t1", "--state-dir"])
        .arg(b.state())
        .args(["--", "sh", "-c", "wc -c"])
        .stdin(Stdio::from(std::fs::File::open(&m).unwrap()));
    let e = run_bounded(cat, LIMIT);
    let size = std::fs::metadata(&m).unwrap().len();
    assert_eq!(
        text(&e.stdout).trim(),
        size.to_string(),
        "{}",
        text(&e.stderr)
    );
    let e = b.host(&["exec", "t1", "--", "no-such-command"]);
    assert_eq!(e.status.code(), Some(127));
    assert!(text(&e.stderr).contains("not found"), "{}", text(&e.stderr));
    let e = b.host(&["exec", "nope", "--", "true"]);
    assert!(
        text(&e.stderr).contains("no running bottle named \"nope\""),
        "{}",
        text(&e.stderr)
    );

    // logs: stdout and stderr of the agent; audit: the DNS decision.
    let l = logs(&["t1"]);
    assert!(l.contains("tick-1") && l.contains("to-stderr"), "{l}");
    let audit = text(&b.host(&["audit", "t1"]).stdout);
    assert!(
        audit.contains("denied.example.com") && audit.contains("dns"),
        "{audit}"
    );
    let audit_json = text(&b.host(&["audit", "--json", "t1"]).stdout);
    assert!(audit_json
        .lines()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));

    // logs -f follows, and ends by itself when the bottle does.
    let mut follow = Command::new(bottle_e2e::bins::host());
    follow
        .args(["logs", "-f", "t1", "--state-dir"])
        .arg(b.state())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let follower = std::thread::spawn(move || run_bounded(follow, LIMIT));
    std::thread::sleep(Duration::from_secs(3));

    // stop: graceful, and nothing is left: process, VM, socket, run dir.
    let pid = info["pid"].as_u64().unwrap() as u32;
    let kids = children_of(pid);
    assert!(!kids.is_empty(), "no QEMU under the launch");
    let run_dirs = |state: &Path| {
        std::fs::read_dir(state.join("run"))
            .map(|r| r.count())
            .unwrap_or(0)
    };
    assert_eq!(run_dirs(&b.state()), 1);
    let stop = b.host(&["stop", "--time", "2", "t1"]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    assert!(
        gone_within(pid, Duration::from_secs(20)),
        "bottle-host still runs"
    );
    for (k, comm) in kids {
        assert!(
            gone_within(k, Duration::from_secs(10)),
            "{comm} ({k}) outlived the bottle"
        );
    }
    assert!(
        !b.state().join("names/t1.sock").exists(),
        "control socket left"
    );
    assert_eq!(run_dirs(&b.state()), 0, "run directory left");
    assert!(b.ps().is_empty());
    let followed = text(&follower.join().unwrap().stdout);
    let ticks = followed.matches("tick-").count();
    assert!(ticks >= 3, "logs -f printed {ticks} ticks:\n{followed}");
    // Logs stay readable after the end.
    assert!(logs(&["t1"]).contains("tick-1"));

    // Errors for a bottle that is not there.
    let e = b.host(&["stop", "t1"]);
    assert!(!e.status.success());
    assert!(
        text(&e.stderr).contains("no running bottle named \"t1\""),
        "{}",
        text(&e.stderr)
    );
    let e = b.host(&["logs", "nope"]);
    assert!(
        text(&e.stderr).contains("no bottle named \"nope\""),
        "{}",
        text(&e.stderr)
    );
    let e = b.host(&["launch", "-d", "--name", "../x", m.to_str().unwrap()]);
    assert!(
        text(&e.stderr).contains("bad bottle name"),
        "{}",
        text(&e.stderr)
    );
}

#[test]
fn a_killed_launch_leaves_a_stale_name_that_ps_cleans_and_kill_stops_at_once() {
    if let Some(why) = vm_unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut b = Bottles::new();
    let m = b.manifest("sleeper.toml", "sleep 600");
    assert!(b.detach("s1", &m).status.success());
    assert!(b.detach("s2", &m).status.success());
    let s1 = b.wait_ps("s1", "running", |i| i["agent_state"] == "running");
    b.wait_ps("s2", "running", |i| i["agent_state"] == "running");

    // Another user cannot talk to the control socket, even with the way
    // to it opened up.
    let sock = b.state().join("names/s1.sock");
    for d in [
        b.dir.path().to_path_buf(),
        b.state(),
        b.state().join("names"),
    ] {
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    }
    let mut other = Command::new("python3");
    other
        .args(["-c", "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ntry:\n s.connect(sys.argv[1]); s.sendall(b'{\"op\":\"ps\"}\\n'); print('got', s.recv(100))\nexcept OSError as e:\n print('refused', e)"])
        .arg(&sock)
        .uid(65534)
        .gid(65534);
    let o = run_bounded(other, Duration::from_secs(20));
    let said = text(&o.stdout);
    assert!(
        said.starts_with("refused") || said.contains("got b''"),
        "another uid reached the bottle: {said}"
    );
    assert!(!said.contains("info"), "{said}");
    for d in [
        b.dir.path().to_path_buf(),
        b.state(),
        b.state().join("names"),
    ] {
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    }

    // SIGKILL s1's bottle-host: its VM dies with it, its socket stays
    // behind, and the next ps cleans it.
    let pid = s1["pid"].as_u64().unwrap() as u32;
    let kids = children_of(pid);
    // SAFETY: kill(2) with integer arguments.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(gone_within(pid, Duration::from_secs(10)));
    for (k, comm) in kids {
        assert!(
            gone_within(k, Duration::from_secs(10)),
            "{comm} ({k}) outlived a SIGKILLed bottle-host"
        );
    }
    assert!(sock.exists(), "expected the stale socket");
    let names: Vec<_> = b
        .ps()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["s2"]);
    assert!(!sock.exists(), "ps did not clean the stale socket");
    // The name is free again.
    assert!(b.detach("s1", &m).status.success());

    // kill: at once, whatever the agent does.
    let t0 = Instant::now();
    let k = b.host(&["kill", "s1", "s2"]);
    assert!(k.status.success(), "{}", text(&k.stderr));
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert!(b.ps().is_empty());
}

#[test]
fn exec_it_gets_a_terminal_and_the_escape_hangs_it_up() {
    if let Some(why) = vm_unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    if !bottle_e2e::bins::on_path("tmux") {
        eprintln!("skipped: tmux is not installed");
        return;
    }
    let mut b = Bottles::new();
    let m = b.manifest("sleeper.toml", "sleep 600");
    assert!(b.detach("x1", &m).status.success());
    b.wait_ps("x1", "running", |i| i["agent_state"] == "running");
    let d = b.dir.path();
    let cmd = format!(
        "{} exec -it --state-dir {} x1 -- sh",
        bottle_e2e::bins::host().display(),
        b.state().display()
    );
    let t = bottle_e2e::tmux::Tmux::start("exec", 90, 25, &bottle_e2e::tmux::wrapped(d, &cmd));
    let step = Duration::from_secs(60);
    t.wait_for("/ # ", step);
    t.line("stty size; tty");
    t.wait_for("25 90", step);
    t.interrupt_a_sleep(step);
    t.escape_from_a_sleep();
    let rc = bottle_e2e::tmux::wait_for_file(&d.join("rc"), step);
    assert_eq!(rc.trim(), "129", "a hung-up shell dies of SIGHUP");
    bottle_e2e::tmux::assert_restored(d);
    // The bottle runs on.
    b.wait_ps("x1", "still running", |i| i["agent_state"] == "running");
    assert!(b.host(&["kill", "x1"]).status.success());
}

#[test]
fn a_bottle_that_never_answers_gives_a_clear_error_not_a_hang() {
    // A control socket that accepts and then says nothing, as a wedged
    // bottle-host would.
    let b = Bottles::new();
    let names = b.state().join("names");
    std::fs::create_dir_all(&names).unwrap();
    std::fs::set_permissions(
        b.state(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let listener = std::os::unix::net::UnixListener::bind(names.join("hung.sock")).unwrap();
    let _server = std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming() {
            held.push(c);
        }
    });
    for args in [
        &["stop", "hung"][..],
        &["exec", "hung", "--", "true"],
        &["ps"],
    ] {
        let t0 = Instant::now();
        let out = b.host(args);
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(30), "{args:?} took {took:?}");
        if args[0] != "ps" {
            assert!(!out.status.success(), "{args:?}");
            assert!(
                text(&out.stderr).contains("did not answer"),
                "{args:?}: {}",
                text(&out.stderr)
            );
        } else {
            // ps lists what answers; a wedged bottle is left out.
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
    }
}
