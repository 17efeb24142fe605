//! The supervision loop against a fake VM and a fake guest: a control
//! frame split around another event, connections beyond the guest's own
//! refused without holding descriptors, and a guest that stops reading
//! its control channel not stalling the loop.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bottle_shared::channel::Channel;
use bottle_shared::frame::encode_message;
use bottle_shared::io::{dial_hello, read_message, write_message};
use bottle_shared::message::{
    BootInfo, GuestConfig, GuestMessage, HostMessage, ProcessEvent, Role,
};
use bottle_shared::transport::{connect, BoxStream, Listener};
use bottle_shared::Address;
use tokio::io::AsyncWriteExt;

use super::{supervise, ConsoleOut, Io};
use crate::launch::lifecycle;
use crate::vmm::{BoxFuture, Console, RunningVm, VmExit, VmSpec, Vmm, VmmError};

/// Longest any of these tests waits for the loop.
const LIMIT: Duration = Duration::from_secs(60);

struct FakeVmm {
    off: tokio::sync::watch::Receiver<bool>,
    /// When set, `kill` powers the fake VM off.
    kill: Option<Arc<tokio::sync::watch::Sender<bool>>>,
}
struct FakeVm {
    off: tokio::sync::watch::Receiver<bool>,
    kill: Option<Arc<tokio::sync::watch::Sender<bool>>>,
}

impl Vmm for FakeVmm {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn accelerator(&self) -> String {
        "none".into()
    }
    fn start(&self, _: &VmSpec) -> BoxFuture<'_, Result<Box<dyn RunningVm>, VmmError>> {
        let off = self.off.clone();
        let kill = self.kill.clone();
        Box::pin(async move { Ok(Box::new(FakeVm { off, kill }) as Box<dyn RunningVm>) })
    }
}

impl RunningVm for FakeVm {
    fn wait(&mut self) -> BoxFuture<'_, std::io::Result<VmExit>> {
        let mut off = self.off.clone();
        Box::pin(async move {
            let _ = off.wait_for(|v| *v).await;
            Ok(VmExit::Killed)
        })
    }
    fn kill(&mut self) {
        if let Some(k) = &self.kill {
            let _ = k.send(true);
        }
    }
    fn pids(&self) -> Vec<u32> {
        Vec::new()
    }
    fn console(&mut self) -> Option<Console> {
        None
    }
}

/// The control channel is read with `events.next()` inside the
/// `select!` of `supervise` (launch/supervise.rs), re-created on every
/// turn of the loop. It read with `read_message`, which is not
/// cancel-safe (now a `FrameBuf` keeps partial frames): when any other
/// branch fired (here: the agent dialling the session port, 6004) while a
/// frame was half read, the bytes already read were lost and the stream
/// out of step: an honest guest's exit code was lost and the launch
/// failed (125) instead of returning the agent's code (7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_split_across_another_event_is_not_lost() {
    assert_eq!(
        split_frame_run(true).await,
        7,
        "the guest's exit code was lost"
    );
}

/// Control: the same split frame with no other event meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_a_split_frame_alone_is_fine() {
    assert_eq!(split_frame_run(false).await, 7);
}

async fn split_frame_run(agent_dials: bool) -> i32 {
    let dir = tempfile::tempdir().unwrap();
    let ctl_addr = Address::Unix(dir.path().join("vsock_6001"));
    let ses_addr = Address::Unix(dir.path().join("vsock_6004"));
    let control = Listener::bind_owner_only(&ctl_addr).await.unwrap();
    let session = Listener::bind_owner_only(&ses_addr).await.unwrap();
    let (off_tx, off) = tokio::sync::watch::channel(false);
    let vmm = FakeVmm { off, kill: None };

    // The guest's init: hello, Boot, Config; then a Process event whose
    // frame arrives in two pieces, then Exit { code: 7 }.
    let guest = tokio::spawn(async move {
        let max = Channel::Control.max_frame();
        let mut s = guest_connects(&ctl_addr).await;
        let ev = GuestMessage::Process(ProcessEvent::Started {
            pid: 42,
            attempt: 0,
        });
        let frame = encode_message(&ev, max).unwrap();
        s.write_all(&frame[..2]).await.unwrap();
        s.flush().await.unwrap();
        // Meanwhile the agent dials the session port (any branch will do).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _agent = if agent_dials {
            Some(connect(&ses_addr).await.unwrap())
        } else {
            None
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.write_all(&frame[2..]).await.unwrap();
        write_message(&mut s, &GuestMessage::Exit { code: 7 }, max)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = off_tx.send(true);
        s
    });

    supervise_with(&vmm, &control, &session, guest).await
}

/// Connections accepted from the Unix socket `path` and still open: in
/// `/proc/net/unix`, those with its path (a client's end has none) in
/// state `03`, connected (the listener is `01`, a connection waiting in
/// its backlog `02`). Other tests of this process do not count.
fn sockets_on(path: &std::path::Path) -> i64 {
    let path = format!(" {}", path.display());
    std::fs::read_to_string("/proc/net/unix")
        .unwrap()
        .lines()
        .filter(|l| l.ends_with(&path) && l.split_whitespace().nth(5) == Some("03"))
        .count() as i64
}

/// Which port the agent floods.
#[derive(Clone, Copy)]
enum Port {
    Control,
    Session,
}

/// The agent dialling `port` `N` times and staying silent, while the
/// guest's own control session runs; the most descriptors the host held
/// for them meanwhile.
async fn flood_run(port: Port) -> i64 {
    const N: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let ctl_addr = Address::Unix(dir.path().join("vsock_6001"));
    let ses_addr = Address::Unix(dir.path().join("vsock_6004"));
    let control = Listener::bind_owner_only(&ctl_addr).await.unwrap();
    let session = Listener::bind_owner_only(&ses_addr).await.unwrap();
    let (off_tx, off) = tokio::sync::watch::channel(false);
    let vmm = FakeVmm { off, kill: None };
    let host_fds = Arc::new(Mutex::new(0i64));
    let seen = host_fds.clone();
    let target_path = match port {
        Port::Control => dir.path().join("vsock_6001"),
        Port::Session => dir.path().join("vsock_6004"),
    };
    let target = Address::Unix(target_path.clone());
    let guest = tokio::spawn(async move {
        let max = Channel::Control.max_frame();
        let mut s = guest_connects(&ctl_addr).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = sockets_on(&target_path);
        let mut agent: Vec<BoxStream> = Vec::new();
        for _ in 0..N {
            agent.push(connect(&target).await.unwrap());
        }
        // The most held over the next half second (refusals linger).
        let mut most = 0;
        for _ in 0..25 {
            most = most.max(sockets_on(&target_path) - before);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        *seen.lock().unwrap() = most;
        drop(agent);
        write_message(&mut s, &GuestMessage::Exit { code: 0 }, max)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = off_tx.send(true);
        s
    });
    let code = supervise_with(&vmm, &control, &session, guest).await;
    assert_eq!(code, 0);
    let held = *host_fds.lock().unwrap();
    drop(dir);
    held
}

/// The agent dialling the control port (6001) again and again: each
/// extra connection is refused, a few at a time ([`super::MAX_REFUSING`]);
/// beyond them it is closed at once, so the host's descriptors do not
/// grow with the number of connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_the_control_port_are_capped() {
    let held = flood_run(Port::Control).await;
    assert!(
        held <= 64,
        "bottle-host held {held} descriptors for 3000 connections to the control port"
    );
}

/// The same on the session port (6004), beyond the
/// [`super::session::MAX_ATTACHING`] being attached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_the_session_port_are_capped() {
    let held = flood_run(Port::Session).await;
    assert!(
        held <= 64,
        "bottle-host held {held} descriptors for 3000 connections to the session port"
    );
}

/// The fake guest's init on the control channel: hello, `Boot`, and the
/// host's `Config` back.
async fn guest_connects(addr: &Address) -> BoxStream {
    let max = Channel::Control.max_frame();
    let mut s = connect(addr).await.unwrap();
    dial_hello(&mut s, Role::Guest, Channel::Control, "fake-guest")
        .await
        .unwrap();
    let boot = GuestMessage::Boot(BootInfo {
        software: "fake".into(),
        init_ms: 1,
        kernel: "6.1".into(),
    });
    write_message(&mut s, &boot, max).await.unwrap();
    let cfg: Option<HostMessage> = read_message(&mut s, max).await.unwrap();
    assert!(matches!(cfg, Some(HostMessage::Config(_))));
    s
}

/// Run `supervise` with the fake VM until it ends, then wait for the fake
/// guest; the exit code.
async fn supervise_with<T>(
    vmm: &FakeVmm,
    control: &Listener,
    session: &Listener,
    guest: tokio::task::JoinHandle<T>,
) -> i32 {
    let (_cmd_tx, cmds) = tokio::sync::mpsc::channel(8);
    let io = Io {
        wiring: Default::default(),
        console: ConsoleOut {
            log: None,
            show: false,
        },
        session,
        agent_log: None,
        cmds,
        info: Arc::new(Mutex::new(lifecycle::Info::default())),
    };
    let code = tokio::time::timeout(
        LIMIT,
        supervise(
            vmm,
            &VmSpec::default(),
            control,
            &GuestConfig::default(),
            io,
            Instant::now(),
        ),
    )
    .await
    .expect("supervise hung")
    .unwrap();
    let guest = tokio::time::timeout(LIMIT, guest)
        .await
        .expect("guest hung");
    drop(guest.unwrap());
    code
}

/// A guest that stops reading its control channel (root can stop PID 1)
/// while the owner keeps asking (`ps`, `exec`, `stop`): the host's writes
/// to it fill the socket. The loop must never wait on them, so `kill`
/// (and the stop deadline, signals, the VM's exit) are still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_stops_reading_does_not_stall_the_loop() {
    let dir = tempfile::tempdir().unwrap();
    let ctl_addr = Address::Unix(dir.path().join("vsock_6001"));
    let ses_addr = Address::Unix(dir.path().join("vsock_6004"));
    let control = Listener::bind_owner_only(&ctl_addr).await.unwrap();
    let session = Listener::bind_owner_only(&ses_addr).await.unwrap();
    let (off_tx, off) = tokio::sync::watch::channel(false);
    let vmm = FakeVmm {
        off,
        kill: Some(Arc::new(off_tx)),
    };
    let (held_tx, held_rx) = tokio::sync::oneshot::channel();
    let guest = tokio::spawn(async move {
        // Boots, then never reads again (but keeps the channel open).
        let s = guest_connects(&ctl_addr).await;
        let _ = held_rx.await;
        drop(s);
    });
    let (cmd_tx, cmds) = tokio::sync::mpsc::channel(8);
    let asker = tokio::spawn(async move {
        for _ in 0..5000 {
            let (tx, _rx) = tokio::sync::oneshot::channel();
            if cmd_tx.send(lifecycle::Command::Status(tx)).await.is_err() {
                return;
            }
        }
        let _ = cmd_tx
            .send(lifecycle::Command::Stop(Duration::from_secs(1)))
            .await;
        let _ = cmd_tx.send(lifecycle::Command::Kill).await;
    });
    let io = Io {
        wiring: Default::default(),
        console: ConsoleOut {
            log: None,
            show: false,
        },
        session: &session,
        agent_log: None,
        cmds,
        info: Arc::new(Mutex::new(lifecycle::Info::default())),
    };
    let ended = tokio::time::timeout(
        Duration::from_secs(20),
        supervise(
            &vmm,
            &VmSpec::default(),
            &control,
            &GuestConfig::default(),
            io,
            Instant::now(),
        ),
    )
    .await;
    let _ = held_tx.send(());
    assert!(
        ended.is_ok(),
        "the loop stalled on a guest that stopped reading"
    );
    tokio::time::timeout(LIMIT, asker).await.unwrap().unwrap();
    tokio::time::timeout(LIMIT, guest).await.unwrap().unwrap();
}
