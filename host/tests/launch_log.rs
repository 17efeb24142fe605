//! The background launch's log (`--capped-log`, set by `launch --detach`
//! for the launch it starts): standard error goes through the capped
//! copier, and what the launch writes last (its error) still reaches the
//! file before it exits. The cap itself: `launch::caplog::tests`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_last_words_of_a_capped_launch_reach_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("x.launch.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bottle-host"))
        .args([
            "launch",
            "/nonexistent/bottle.toml",
            "--capped-log",
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "launch hung");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(2));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("bottle-host: "), "{text:?}");
    assert!(text.contains("/nonexistent/bottle.toml"), "{text:?}");
}
