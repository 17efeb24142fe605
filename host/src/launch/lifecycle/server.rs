//! The control socket's server side: one request per connection, and
//! the `exec` relay.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bottle_shared::message::{ExecSpec, SessionSpec};
use bottle_shared::transport::BoxStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::{Claim, Command, Info, Reply, Request, MAX_REQUEST, REQUEST_TIMEOUT, STATUS_TIMEOUT};

/// Serve the control socket until the task is dropped; the name (socket
/// and lock) is released then.
pub fn serve(
    claim: Claim,
    info: Arc<Mutex<Info>>,
    cmds: mpsc::Sender<Command>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let s = match crate::accept::next(&claim.listener, "control").await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("control: the socket stopped accepting: {e}");
                    return;
                }
            };
            tokio::spawn(answer(s, info.clone(), cmds.clone()));
        }
    })
}

/// Read one line without reading past it (what follows may be frames).
pub async fn read_line(s: &mut BoxStream, max: usize) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < max {
        if s.read(&mut b).await? == 0 {
            break;
        }
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    String::from_utf8(line).map_err(std::io::Error::other)
}

async fn answer(mut s: BoxStream, info: Arc<Mutex<Info>>, cmds: mpsc::Sender<Command>) {
    let read = tokio::time::timeout(REQUEST_TIMEOUT, read_line(&mut s, MAX_REQUEST)).await;
    if let Ok(Ok(line)) = &read {
        if let Ok(Request::Exec {
            command,
            tty,
            stdin,
            rows,
            cols,
        }) = serde_json::from_str(line.trim())
        {
            return exec(
                s,
                info,
                cmds,
                command,
                SessionSpec {
                    tty,
                    stdin,
                    rows,
                    cols,
                },
            )
            .await;
        }
    }
    let (_, mut wr) = tokio::io::split(s);
    let snapshot = || info.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let reply = match read {
        Ok(Ok(line)) => match serde_json::from_str::<Request>(line.trim()) {
            Ok(Request::Ps) => {
                // The guest answers once it is up (its config pushed).
                let booting = snapshot().agent_state == "booting";
                let (tx, rx) = oneshot::channel();
                let guest = match booting {
                    true => None,
                    false => match cmds.send(Command::Status(tx)).await {
                        Ok(()) => tokio::time::timeout(STATUS_TIMEOUT, rx)
                            .await
                            .ok()
                            .and_then(|r| r.ok()),
                        Err(_) => None,
                    },
                };
                let mut i = snapshot();
                i.guest = guest.and_then(|j| serde_json::from_str(&j).ok());
                Reply {
                    info: Some(i),
                    error: None,
                }
            }
            Ok(Request::Stop { grace_ms }) => {
                let _ = cmds
                    .send(Command::Stop(Duration::from_millis(grace_ms)))
                    .await;
                Reply {
                    info: Some(snapshot()),
                    error: None,
                }
            }
            Ok(Request::Kill) => {
                let _ = cmds.send(Command::Kill).await;
                Reply {
                    info: Some(snapshot()),
                    error: None,
                }
            }
            // Taken above.
            Ok(Request::Exec { .. }) => return,
            Err(e) => Reply {
                info: None,
                error: Some(format!("bad request: {e}")),
            },
        },
        Ok(Err(e)) => Reply {
            info: None,
            error: Some(format!("bad request: {e}")),
        },
        Err(_) => Reply {
            info: None,
            error: Some("no request in time".into()),
        },
    };
    let mut out = serde_json::to_string(&reply).unwrap_or_default();
    out.push('\n');
    let _ = wr.write_all(out.as_bytes()).await;
    let _ = wr.shutdown().await;
}

async fn say(s: &mut BoxStream, reply: &Reply) -> std::io::Result<()> {
    let mut out = serde_json::to_string(reply).unwrap_or_default();
    out.push('\n');
    s.write_all(out.as_bytes()).await
}

/// An `exec`: ask the loop, wait for the guest's session, answer, then
/// relay the session's bytes both ways until both ends close.
async fn exec(
    mut s: BoxStream,
    info: Arc<Mutex<Info>>,
    cmds: mpsc::Sender<Command>,
    command: Vec<String>,
    streams: SessionSpec,
) {
    let state = info.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let fail = |e: String| Reply {
        info: Some(state.clone()),
        error: Some(e),
    };
    if command.is_empty() {
        let _ = say(&mut s, &fail("exec: no command".into())).await;
        return;
    }
    if !matches!(
        state.agent_state.as_str(),
        "running" | "restarting" | "exited"
    ) {
        let _ = say(
            &mut s,
            &fail(format!("exec: the bottle is {}", state.agent_state)),
        )
        .await;
        return;
    }
    let (tx, rx) = oneshot::channel();
    let spec = ExecSpec {
        session: 0,
        command,
        streams,
    };
    if cmds.send(Command::Exec(spec, tx)).await.is_err() {
        let _ = say(&mut s, &fail("exec: the bottle is ending".into())).await;
        return;
    }
    let guest = match tokio::time::timeout(crate::launch::session::EXEC_ATTACH_TIMEOUT, rx).await {
        Ok(Ok(g)) => g,
        _ => {
            let _ = say(
                &mut s,
                &fail("exec: the guest did not start the process's session in time".into()),
            )
            .await;
            return;
        }
    };
    if say(
        &mut s,
        &Reply {
            info: Some(state),
            error: None,
        },
    )
    .await
    .is_err()
    {
        return;
    }
    // Each direction on its own: the user's side ending (a hang-up) must
    // not cut the command's last output and exit code on their way back.
    let _ = bottle_shared::io::relay(s, guest).await;
}
