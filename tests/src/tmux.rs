//! A real terminal for tests: a detached `tmux` session on a private
//! server socket, driven with `send-keys` and read with `capture-pane`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux session running one shell command; the server is killed on drop.
#[derive(Debug)]
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Start `command` (a `sh -c` string) in a `cols`×`rows` window.
    pub fn start(name: &str, cols: u16, rows: u16, command: &str) -> Tmux {
        let socket = format!("bottle-test-{name}-{}", std::process::id());
        let t = Tmux { socket };
        let st = t
            .cmd()
            .args(["new-session", "-d", "-s", "t", "-x"])
            .arg(cols.to_string())
            .arg("-y")
            .arg(rows.to_string())
            .arg(command)
            .status()
            .expect("run tmux");
        assert!(st.success(), "tmux new-session failed");
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]).env_remove("TMUX");
        c
    }

    /// Type `keys` (tmux key names such as `Enter`, `C-c`, or literal text).
    pub fn keys(&self, keys: &[&str]) {
        let st = self
            .cmd()
            .args(["send-keys", "-t", "t"])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(st.success());
    }

    /// Type `text` literally (no key-name lookup).
    pub fn type_text(&self, text: &str) {
        let st = self
            .cmd()
            .args(["send-keys", "-t", "t", "-l", text])
            .status()
            .expect("tmux send-keys");
        assert!(st.success());
    }

    /// Resize the window.
    pub fn resize(&self, cols: u16, rows: u16) {
        let st = self
            .cmd()
            .args(["resize-window", "-t", "t", "-x"])
            .arg(cols.to_string())
            .arg("-y")
            .arg(rows.to_string())
            .status()
            .expect("tmux resize-window");
        assert!(st.success());
    }

    /// What the pane shows now (with its scrollback).
    pub fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-J", "-S", "-200", "-t", "t"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait until the pane shows `what` (as counted by `times` occurrences);
    /// panics with the screen after `limit`.
    pub fn wait_for_n(&self, what: &str, times: usize, limit: Duration) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.screen();
            if s.matches(what).count() >= times {
                return s;
            }
            assert!(
                t0.elapsed() < limit,
                "the terminal never showed {what:?} ({times}×) within {limit:?}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Wait until the pane shows `what`.
    pub fn wait_for(&self, what: &str, limit: Duration) -> String {
        self.wait_for_n(what, 1, limit)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// Wait until `path` exists (a file a command in the pane writes last).
pub fn wait_for_file(path: &Path, limit: Duration) -> String {
    let t0 = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if !s.is_empty() {
                return s;
            }
        }
        assert!(
            t0.elapsed() < limit,
            "{} never appeared within {limit:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Tmux {
    /// Type `text` and Enter.
    pub fn line(&self, text: &str) {
        self.type_text(text);
        self.keys(&["Enter"]);
    }

    /// Start a long `sleep` in the guest shell, Ctrl-C it, and wait for
    /// the shell to answer again: the interrupt reached the guest's job.
    pub fn interrupt_a_sleep(&self, limit: Duration) {
        self.line("sleep 300");
        std::thread::sleep(Duration::from_secs(1));
        self.keys(&["C-c"]);
        self.line("echo alive-$((6*7))");
        self.wait_for("alive-42", limit);
    }

    /// Start a long `sleep`, then type the escape sequence (Ctrl-] q).
    pub fn escape_from_a_sleep(&self) {
        self.line("sleep 300");
        std::thread::sleep(Duration::from_secs(1));
        self.keys(&["C-]"]);
        self.keys(&["q"]);
    }
}

/// A script for [`Tmux::start`] that runs `command` between two `stty -g`
/// (into `dir/before` and `dir/after`) and then writes its exit code to
/// `dir/rc` (see [`wait_for_file`]).
pub fn wrapped(dir: &Path, command: &str) -> String {
    let d = dir.display();
    let script = dir.join("wrapped.sh");
    std::fs::write(
        &script,
        format!(
            "stty -g > {d}/before\n{command}\necho $? > {d}/rc.tmp\nstty -g > {d}/after\nmv {d}/rc.tmp {d}/rc\nsleep 600\n"
        ),
    )
    .expect("write the wrapper");
    format!("sh {}", script.display())
}

/// The terminal modes before and after a [`wrapped`] command are the same.
pub fn assert_restored(dir: &Path) {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("stty output");
    assert_eq!(
        read("before"),
        read("after"),
        "the host terminal's modes were not restored"
    );
}
