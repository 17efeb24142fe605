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

/// `note_event` counts the guest's `Restarting` events: a guest that
/// sends enough of them must not panic `launch` (debug builds) or wrap
/// the count (release). Here from the top.
#[test]
fn restart_count_from_the_guest_does_not_overflow() {
    let mut info = Info {
        restarts: u32::MAX,
        ..Default::default()
    };
    let ev = bottle_shared::message::ProcessEvent::Restarting {
        attempt: 0,
        delay_ms: 0,
    };
    note_event(&mut info, &ev);
    assert_eq!(info.restarts, u32::MAX);
    assert_eq!(info.agent_state, "restarting");
}

/// A stale socket, as a SIGKILLed launch leaves: bound, not listening.
fn stale_socket(path: &std::path::Path) {
    drop(std::os::unix::net::UnixListener::bind(path).unwrap());
    assert!(path.exists());
}

/// A launch holding the name's lock (say, between binding its socket and
/// listening on it, when connections are refused): another launch of
/// that name neither wins nor removes the socket.
#[tokio::test]
async fn a_held_name_lock_is_a_clash_even_over_a_stale_socket() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let _held = NameLock::try_take(state, "x").unwrap().unwrap();
    let path = socket_path(state, "x");
    stale_socket(&path);
    let e = claim(state, "x").await.unwrap_err().to_string();
    assert!(e.contains("already running"), "{e}");
    assert!(path.exists(), "the lock holder's socket was removed");
}

/// `ps` (and `dial`) remove a socket that refuses connections only when
/// its name's lock is free: never the freshly bound socket of a launch
/// about to listen on it.
#[tokio::test]
async fn ps_never_removes_the_socket_of_a_held_name() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let held = NameLock::try_take(state, "x").unwrap().unwrap();
    let path = socket_path(state, "x");
    stale_socket(&path);
    assert!(list(state).await.is_empty());
    assert!(dial(state, "x").await.is_err());
    assert!(path.exists(), "ps removed the lock holder's socket");
    // Once the lock is free, the socket is stale: removed.
    drop(held);
    assert!(list(state).await.is_empty());
    assert!(!path.exists(), "stale socket left behind");
}

/// The name lock is a `0600` file beside the socket, kept after the
/// launch, and the listener goes before the lock: the next launch of that
/// name finds no socket.
#[tokio::test]
async fn a_claim_holds_the_lock_until_dropped() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let c = claim(state, "x").await.unwrap();
    let lock = lock_path(state, "x");
    let mode = std::fs::metadata(&lock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(NameLock::try_take(state, "x").unwrap().is_none());
    drop(c);
    assert!(!socket_path(state, "x").exists());
    // Let go, the lock file goes too (generated names leave nothing).
    assert!(!lock.exists());
    assert!(NameLock::try_take(state, "x").unwrap().is_some());
    drop(claim(state, "x").await.unwrap());
    assert!(!lock.exists());
}

/// A waiter that opened the lock file before its holder removed it on the
/// way out takes a lock on a file that is no longer the name's: it must
/// not count. Here: the holder's file removed and another made while a
/// second handle to the old one exists.
#[test]
fn a_lock_on_a_removed_file_is_not_the_names() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let first = NameLock::try_take(state, "x").unwrap().unwrap();
    let lock = lock_path(state, "x");
    // Stale handle: the same inode, opened before the removal.
    let old = std::fs::File::open(&lock).unwrap();
    drop(first); // removes the file
    assert!(!lock.exists());
    let now = NameLock::try_take(state, "x").unwrap().unwrap();
    // Whoever locks the old inode now does not hold the name: the path
    // is another file.
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this test owns.
    let r = unsafe { libc::flock(old.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(r, 0, "the old inode is free to lock");
    assert!(!super::same_file(&old, &lock));
    assert!(
        NameLock::try_take(state, "x").unwrap().is_none(),
        "the name's lock is held"
    );
    drop(now);
}

/// Two launches with the same name, racing over a stale socket left by a
/// killed launch: at most one wins (the other finds the lock held).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_launches_racing_for_a_stale_name_do_not_both_win() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    names_dir(&state).unwrap();
    let path = socket_path(&state, "x");
    for round in 0..500 {
        stale_socket(&path);
        let (a, b) = tokio::join!(
            tokio::spawn({
                let s = state.clone();
                async move { claim(&s, "x").await }
            }),
            tokio::spawn({
                let s = state.clone();
                async move { claim(&s, "x").await }
            }),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let both = a.is_ok() && b.is_ok();
        // Dropping a claim removes its socket; leave none behind.
        drop(a);
        drop(b);
        let _ = std::fs::remove_file(&path);
        assert!(!both, "round {round}: both launches claimed the name \"x\"");
    }
}

/// `ps` asks every bottle at once: bottles that never answer cost one
/// deadline between them, not one each, and the ones that answer are
/// listed in name order. (Paused clock: the deadlines pass at once, and
/// the time they took is read off the clock.)
#[tokio::test(start_paused = true)]
async fn ps_asks_every_bottle_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    names_dir(state).unwrap();
    // Three that take the connection and never answer.
    let hung: Vec<_> = ["a-hung", "c-hung", "d-hung"]
        .iter()
        .map(|n| std::os::unix::net::UnixListener::bind(socket_path(state, n)).unwrap())
        .collect();
    let mut loops = Vec::new();
    let mut servers = Vec::new();
    for name in ["b-ok", "e-ok"] {
        let l = claim(state, name).await.unwrap();
        let info = Arc::new(Mutex::new(Info {
            name: name.into(),
            agent_state: "running".into(),
            ..Default::default()
        }));
        let (tx, mut rx) = mpsc::channel(4);
        servers.push(serve(l, info, tx));
        loops.push(tokio::spawn(async move {
            while let Some(c) = rx.recv().await {
                if let Command::Status(tx) = c {
                    let _ = tx.send("{}".into());
                }
            }
        }));
    }
    let start = tokio::time::Instant::now();
    let infos = ps_all(state).await;
    let took = start.elapsed();
    let names: Vec<_> = infos.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["b-ok", "e-ok"]);
    let one = REQUEST_TIMEOUT + STATUS_TIMEOUT;
    assert!(
        took >= one,
        "{took:?}: the hung bottles were not waited for"
    );
    assert!(
        took < one * 2,
        "{took:?}: the bottles were asked one at a time"
    );
    drop(hung);
    for l in loops {
        l.abort();
    }
}
