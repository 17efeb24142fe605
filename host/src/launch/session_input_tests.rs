//! The escape sequence is seen even when the guest does not read its
//! input, and what was typed before it still goes first.

use std::sync::Arc;
use std::time::Duration;

use bottle_shared::channel::Channel;
use bottle_shared::io::read_message;
use bottle_shared::message::SessionInput;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, Notify};

use super::{run, ESCAPE_FLUSH};
use crate::launch::session::Wiring;

fn raw(hangup: bool) -> Wiring {
    Wiring {
        tty: false,
        stdin: true,
        raw: true,
        hangup_on_escape: hangup,
    }
}

/// A guest that never reads: pasted input fills the socket, then Ctrl-] q.
/// `stop` is notified at once, and the input side ends within its flush
/// deadline (launch stops the bottle; exec leaves).
#[tokio::test]
async fn the_escape_is_seen_while_the_guest_reads_nothing() {
    for hangup in [false, true] {
        let (ours, _guest) = UnixStream::pair().unwrap();
        let (tx, rx) = mpsc::channel(4);
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(run(ours, raw(hangup), stop.clone(), Some(rx)));
        // A paste far larger than the socket holds, then the escape.
        let typed = async {
            for _ in 0..64 {
                tx.send(vec![b'x'; 64 * 1024]).await.unwrap();
            }
            tx.send(vec![0x1d]).await.unwrap();
            tx.send(b"q".to_vec()).await.unwrap();
            stop.notified().await;
        };
        tokio::time::timeout(Duration::from_secs(10), typed)
            .await
            .expect("the escape sequence was not seen");
        tokio::time::timeout(ESCAPE_FLUSH * 3, task)
            .await
            .expect("the input side did not end")
            .unwrap();
    }
}

/// A guest that reads: the keys typed before the escape arrive, in order,
/// then (exec) the hang-up; nothing typed after it.
#[tokio::test]
async fn keys_before_the_escape_go_first() {
    let (ours, mut guest) = UnixStream::pair().unwrap();
    let (tx, rx) = mpsc::channel(4);
    let stop = Arc::new(Notify::new());
    let task = tokio::spawn(run(ours, raw(true), stop.clone(), Some(rx)));
    tx.send(b"ls\r".to_vec()).await.unwrap();
    tx.send(b"pwd\r\x1dq after".to_vec()).await.unwrap();
    let max = Channel::Session.max_frame();
    let mut got = Vec::new();
    loop {
        let m = tokio::time::timeout(
            Duration::from_secs(5),
            read_message::<_, SessionInput>(&mut guest, max),
        )
        .await
        .unwrap()
        .unwrap();
        match m {
            Some(m) => got.push(m),
            None => break,
        }
    }
    assert_eq!(
        got,
        vec![
            SessionInput::Stdin(b"ls\r".to_vec()),
            SessionInput::Stdin(b"pwd\r".to_vec()),
            SessionInput::Hangup,
        ]
    );
    tokio::time::timeout(Duration::from_secs(1), stop.notified())
        .await
        .unwrap();
    task.await.unwrap();
}

/// Piped input (not raw): no escape sequence, and the end of input is
/// passed on (the task then waits for the session to end; `spawn`
/// aborts it).
#[tokio::test]
async fn piped_input_has_no_escape_and_ends() {
    let (ours, mut guest) = UnixStream::pair().unwrap();
    let (tx, rx) = mpsc::channel(4);
    let wiring = Wiring {
        stdin: true,
        ..Wiring::default()
    };
    let task = tokio::spawn(run(ours, wiring, Arc::new(Notify::new()), Some(rx)));
    tx.send(b"a\x1dqb".to_vec()).await.unwrap();
    drop(tx);
    let max = Channel::Session.max_frame();
    let first: Option<SessionInput> = read_message(&mut guest, max).await.unwrap();
    assert_eq!(first, Some(SessionInput::Stdin(b"a\x1dqb".to_vec())));
    let second: Option<SessionInput> = read_message(&mut guest, max).await.unwrap();
    assert_eq!(second, Some(SessionInput::StdinEof));
    task.abort();
}

/// What is read ahead for a guest that reads nothing stays under
/// `MAX_AHEAD` (the guest can make the terminal type: its answers to
/// `ESC [ 6 n`), the first of it is kept in order, and the escape
/// sequence is still seen after the overflow.
#[test]
fn what_is_read_ahead_is_capped_and_the_escape_still_seen() {
    let mut t = super::Typing::default();
    let chunk = 64 * 1024;
    for i in 0..(3 * super::MAX_AHEAD / chunk) {
        t.take(Some(vec![i as u8; chunk]), true);
    }
    assert!(t.queued <= super::MAX_AHEAD, "{} bytes queued", t.queued);
    assert_eq!(t.queued, t.queue.len() * chunk);
    assert!(t.dropped);
    t.take(Some(b"\x1dq".to_vec()), true);
    assert!(t.escaped);
    let mut n = 0;
    while let Some(m) = t.pop() {
        assert_eq!(m, SessionInput::Stdin(vec![n as u8; chunk]));
        n += 1;
    }
    assert_eq!(t.queued, 0);
    assert_eq!(n, super::MAX_AHEAD / chunk);
}
