//! The agent's standard streams and terminal through a real VM: pipes
//! (a large stdin arrives intact, stdout and stderr stay separate and
//! complete, no console line on stdout, EOF, the exit code), and `-it` in
//! a real terminal (tmux): size and resize, a full-screen editor, Ctrl-C
//! to the guest's job, the escape sequence, the host terminal restored.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bottle_e2e::tmux::{wait_for_file, Tmux};
use bottle_e2e::vm::{image_dir, vm_unavailable};
use tokio::process::Command;

/// Boot plus agent, generously: TCG on a loaded 2-core CI machine.
const LIMIT: Duration = Duration::from_secs(240);
/// One step at the guest's prompt.
const STEP: Duration = Duration::from_secs(60);

fn manifest(dir: &Path, command: &str) -> std::path::PathBuf {
    let p = dir.join("bottle.toml");
    let toml = format!(
        "[vm]\nbackend = \"qemu\"\nmemory_mib = 256\n\n[agent]\ncommand = {command}\ngrace_period_ms = 1000\n"
    );
    std::fs::write(&p, toml).unwrap();
    p
}

fn launch(dir: &Path, manifest: &Path) -> Command {
    let mut c = Command::new(bottle_e2e::bins::host());
    c.arg("launch")
        .arg(manifest)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("BOTTLE_IMAGE_DIR", image_dir())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipes_carry_a_large_stdin_and_keep_stdout_and_stderr_apart() {
    if let Some(why) = vm_unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let _serial = bottle_e2e::serial().await;
    let dir = tempfile::tempdir().unwrap();
    // 50 MB that is not all one byte (a dropped or repeated chunk shows).
    let input = dir.path().join("input");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..(50_000_000 / 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f.write_all(&x.to_le_bytes()).unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();
    let want = std::process::Command::new("sha256sum")
        .arg(&input)
        .output()
        .unwrap();
    let want = String::from_utf8_lossy(&want.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();

    let agent = r#"["/bin/sh", "-c", "h=$(sha256sum | cut -d ' ' -f 1); echo \"stdin-sha256=$h\" >&2; yes stdout-line | head -n 200000; echo end-of-stdout; echo end-of-stderr >&2; exit 5"]"#;
    let m = manifest(dir.path(), agent);
    let mut cmd = launch(dir.path(), &m);
    cmd.stdin(Stdio::from(std::fs::File::open(&input).unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::time::timeout(LIMIT, cmd.output())
        .await
        .expect("launch did not finish in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "stderr:\n{stderr}");
    // Standard output is the agent's alone, complete and in order: no
    // console line, no log line, no stderr byte.
    let expect = format!("{}end-of-stdout\n", "stdout-line\n".repeat(200_000));
    assert!(
        stdout == expect,
        "stdout is not exactly the agent's ({} bytes, want {}); it starts {:?} and ends {:?}",
        stdout.len(),
        expect.len(),
        &stdout[..stdout.len().min(200)],
        &stdout[stdout.len().saturating_sub(200)..]
    );
    assert!(
        stderr.contains(&format!("stdin-sha256={want}")),
        "the agent did not read the same 50 MB (want {want}):\n{stderr}"
    );
    assert!(stderr.contains("end-of-stderr"), "{stderr}");
    assert!(!stderr.contains("stdout-line"), "stdout leaked into stderr");
    // The console went to the bottle's console.log instead.
    let state = dir.path().join("state");
    let logs = bottle_e2e::vm::bottle_dirs(&state);
    let console = std::fs::read_to_string(logs[0].join("console.log")).unwrap();
    assert!(
        !console.contains("stdout-line"),
        "agent output in the console log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_eof_reaches_the_agent_and_no_stdin_is_dev_null() {
    if let Some(why) = vm_unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let _serial = bottle_e2e::serial().await;
    let dir = tempfile::tempdir().unwrap();
    // `cat` ends only when its input does: EOF must arrive.
    let m = manifest(dir.path(), r#"["/bin/sh", "-c", "cat; echo after-eof"]"#);
    let mut cmd = launch(dir.path(), &m);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, b"a prompt\n")
        .await
        .unwrap();
    drop(stdin);
    let out = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .expect("the agent never saw EOF")
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "a prompt\nafter-eof\n"
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn tty_without_a_terminal_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), r#"["/bin/true"]"#);
    let out = std::process::Command::new(bottle_e2e::bins::host())
        .args(["launch", "-t"])
        .arg(&m)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("-t needs a terminal"), "{err}");
    assert!(!dir.path().join("state").exists(), "state was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_session_draws_resizes_interrupts_and_restores_the_terminal() {
    if let Some(why) = vm_unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    if !bottle_e2e::bins::on_path("tmux") {
        eprintln!("skipped: tmux is not installed (apt-get install tmux)");
        return;
    }
    let _serial = bottle_e2e::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = manifest(d, r#"["/bin/sh"]"#);
    let cmd = format!(
        "BOTTLE_IMAGE_DIR={img} NO_COLOR=1 RUST_LOG=warn {host} launch -it {m} --state-dir {d}/state",
        d = d.display(),
        img = image_dir().display(),
        host = bottle_e2e::bins::host().display(),
        m = m.display(),
    );
    let t = Tmux::start("tty", 100, 30, &bottle_e2e::tmux::wrapped(d, &cmd));
    t.wait_for("launch to agent", LIMIT);
    t.wait_for("/ # ", STEP);

    // The initial size was set before the agent started; a resize follows.
    t.type_text("stty size; tty; echo term=$TERM");
    t.keys(&["Enter"]);
    t.wait_for("30 100", STEP);
    t.wait_for("/dev/pts/", STEP);
    t.resize(120, 40);
    std::thread::sleep(Duration::from_millis(500));
    t.type_text("stty size");
    t.keys(&["Enter"]);
    t.wait_for("40 120", STEP);

    // A full-screen editor draws and takes keys.
    t.type_text("vi /tmp/v.txt");
    t.keys(&["Enter"]);
    t.wait_for("~", STEP);
    t.type_text("ihello from vi");
    t.wait_for("hello from vi", STEP);
    // A lone Escape: vi reads ESC followed at once by more bytes as a key
    // sequence, as any terminal program does.
    t.keys(&["Escape"]);
    std::thread::sleep(Duration::from_secs(1));
    t.type_text(":wq");
    t.keys(&["Enter"]);
    t.type_text("tr a-z A-Z < /tmp/v.txt");
    t.keys(&["Enter"]);
    t.wait_for("HELLO FROM VI", STEP);

    // Ctrl-C interrupts the guest's foreground job, not bottle-host.
    t.interrupt_a_sleep(STEP);
    assert!(!d.join("rc").exists(), "bottle-host ended on Ctrl-C");

    // Ctrl-] then q stops the bottle; the terminal is as it was.
    t.escape_from_a_sleep();
    let rc = wait_for_file(&d.join("rc"), STEP);
    let screen = t.screen();
    assert!(screen.contains("escape sequence"), "{screen}");
    assert!(rc.trim().parse::<i32>().is_ok(), "{rc}");
    bottle_e2e::tmux::assert_restored(d);
}
