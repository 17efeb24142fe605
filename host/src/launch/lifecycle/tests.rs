//! Names, requests, stale sockets, a clash, and `ps` through the loop.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::*;

#[test]
fn names_follow_the_rule() {
    for ok in ["a", "my-bottle", "b.2_x", &"x".repeat(64)] {
        check_name(ok).unwrap();
    }
    for bad in ["", "-a", ".a", "a/b", "a b", "../x", &"x".repeat(65), "é"] {
        assert!(check_name(bad).is_err(), "{bad:?}");
    }
    check_name(&generate_name()).unwrap();
}

#[test]
fn requests_are_json_lines() {
    assert_eq!(
        serde_json::to_string(&Request::Ps).unwrap(),
        r#"{"op":"ps"}"#
    );
    assert_eq!(
        serde_json::from_str::<Request>(r#"{"op":"stop","grace_ms":5}"#).unwrap(),
        Request::Stop { grace_ms: 5 }
    );
    assert!(serde_json::from_str::<Request>(r#"{"op":"exec"}"#).is_err());
}

#[tokio::test]
async fn a_stale_socket_is_cleaned_and_a_live_name_clashes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    // A socket file nobody listens on, as a SIGKILLed launch leaves.
    names_dir(state).unwrap();
    let stale = socket_path(state, "old");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    assert!(list(state).await.is_empty());
    assert!(!stale.exists(), "stale socket left behind");

    let l = claim(state, "b1").await.unwrap();
    let info = Arc::new(Mutex::new(Info {
        name: "b1".into(),
        agent_state: "running".into(),
        ..Default::default()
    }));
    let (tx, mut rx) = mpsc::channel(4);
    let _srv = serve(l, info, tx);
    let e = claim(state, "b1").await.unwrap_err().to_string();
    assert!(e.contains("already running"), "{e}");
    assert_eq!(list(state).await, vec!["b1".to_string()]);
    // ps asks the loop for the guest's counters.
    let loop_ = tokio::spawn(async move {
        while let Some(c) = rx.recv().await {
            if let Command::Status(tx) = c {
                let _ = tx.send(r#"{"dns":{"queries_udp":3}}"#.into());
            }
        }
    });
    let i = request(state, "b1", &Request::Ps).await.unwrap();
    assert_eq!(i.agent_state, "running");
    assert_eq!(i.guest.unwrap()["dns"]["queries_udp"], 3);
    let e = request(state, "nope", &Request::Ps)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no running bottle"), "{e}");
    loop_.abort();
}
