//! The agent's streams over the session channel (port 6004): pipes with
//! input and EOF, stdout and stderr apart, restarts sharing one session,
//! and a pseudo-terminal with its initial size and a resize.

use bottle_shared::message::{SessionInput, SessionOutput, SessionSpec};

use super::*;

/// Accept the guest's session: hello, then `Attach { session: 0 }`.
async fn attach(listener: &Listener) -> BoxStream {
    let mut s = accept(listener).await;
    within(
        STEP,
        "no session hello",
        accept_hello(&mut s, Role::Host, Channel::Session, "test-host"),
    )
    .await
    .unwrap();
    let first: SessionOutput = next(&mut s).await;
    assert_eq!(first, SessionOutput::Attach { session: 0 });
    s
}

/// Everything the guest sends until `Done`: (stdout, stderr).
async fn collect(s: &mut BoxStream) -> (String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        match next::<SessionOutput>(s).await {
            SessionOutput::Stdout(b) => out.extend(b),
            SessionOutput::Stderr(b) => err.extend(b),
            SessionOutput::Done => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// Start the init with `command` under `policy`, its streams as `spec`:
/// the control channel (config pushed), the attached session, the init.
async fn start(
    sb: &Sandbox,
    command: &str,
    policy: RestartPolicy,
    spec: SessionSpec,
) -> (BoxStream, BoxStream, Child) {
    let listener = sb.listen().await;
    let base = Address::parse(&sb.base()).unwrap();
    let sessions = Listener::bind(&base.for_port(6004).unwrap()).await.unwrap();
    let child = sb.start_init();
    let mut cfg = config(command, policy, 1000);
    cfg.session = Some(spec);
    let ctl = handshake(&listener, cfg).await;
    let s = attach(&sessions).await;
    (ctl, s, child)
}

#[tokio::test]
async fn pipes_carry_input_eof_and_separate_outputs_across_restarts() {
    skip_unless_able!();
    let sb = Sandbox::new();
    // Two runs of the agent (one restart) share the session: the first
    // reads a line, the second reads the rest to EOF.
    let (mut ctl, mut s, _child) = start(
        &sb,
        "if [ -e /tmp/ran ]; then cat; echo second-err >&2; exit 3; fi; \
         touch /tmp/ran; read line; echo \"first:$line\"; echo first-err >&2; exit 1",
        RestartPolicy {
            mode: RestartMode::OnFailure,
            max_restarts: 1,
            backoff_initial_ms: 10,
            backoff_max_ms: 10,
        },
        SessionSpec {
            tty: false,
            stdin: true,
            rows: 0,
            cols: 0,
        },
    )
    .await;
    send(&mut s, &SessionInput::Stdin(b"one\ntwo\n".to_vec())).await;
    send(&mut s, &SessionInput::Stdin(b"three\n".to_vec())).await;
    send(&mut s, &SessionInput::StdinEof).await;
    let (out, err) = collect(&mut s).await;
    // `read` took one line; what the shell had buffered beyond it is gone
    // with it (a pipe, not a terminal), so only the tail is certain.
    assert!(out.starts_with("first:one\n"), "{out:?}");
    assert!(out.ends_with("three\n"), "{out:?}");
    assert_eq!(err, "first-err\nsecond-err\n");
    let msgs = events(&until_exit(&mut ctl, STEP).await);
    assert_eq!(msgs.last(), Some(&GuestMessage::Exit { code: 3 }));
}

#[tokio::test]
async fn a_terminal_has_its_size_and_follows_a_resize() {
    skip_unless_able!();
    let sb = Sandbox::new();
    let (mut ctl, mut s, _child) = start(
        &sb,
        "stty size; tty; read go; stty size; echo \"got:$go\"",
        RestartPolicy::default(),
        SessionSpec {
            tty: true,
            stdin: true,
            rows: 33,
            cols: 77,
        },
    )
    .await;
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("/dev/pts/") {
        match next::<SessionOutput>(&mut s).await {
            SessionOutput::Stdout(b) => seen.extend(b),
            other => panic!("unexpected before the resize: {other:?}"),
        }
    }
    send(
        &mut s,
        &SessionInput::Resize {
            rows: 50,
            cols: 132,
        },
    )
    .await;
    send(&mut s, &SessionInput::Stdin(b"yes\r".to_vec())).await;
    let (out, err) = collect(&mut s).await;
    let all = format!("{}{out}", String::from_utf8_lossy(&seen));
    // A terminal: one stream, CR LF line ends, and the typed line echoed.
    assert!(err.is_empty(), "{err:?}");
    assert!(all.contains("33 77\r\n"), "{all:?}");
    assert!(all.contains("50 132\r\n"), "{all:?}");
    assert!(all.contains("got:yes\r\n"), "{all:?}");
    let msgs = events(&until_exit(&mut ctl, STEP).await);
    assert_eq!(msgs.last(), Some(&GuestMessage::Exit { code: 0 }));
}
