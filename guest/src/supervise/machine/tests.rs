use std::path::PathBuf;

use bottle_shared::message::RestartMode;

use super::*;
use crate::supervise::exit::{exited, signaled};
use crate::sys::fake::{Call, FakeSys};

const GRACE: Duration = Duration::from_millis(500);

fn plan() -> SpawnPlan {
    SpawnPlan {
        program: PathBuf::from("/bin/agent"),
        argv: vec!["agent".into()],
        env: vec![],
        workdir: PathBuf::from("/"),
        creds: None,
        stdio: Default::default(),
    }
}

fn supervisor(mode: RestartMode, max: u32) -> (Arc<FakeSys>, Supervisor) {
    let sys = Arc::new(FakeSys::new());
    let policy = RestartPolicy {
        mode,
        max_restarts: max,
        backoff_initial_ms: 100,
        backoff_max_ms: 1000,
    };
    (sys.clone(), Supervisor::new(sys, plan(), policy))
}

fn started(pid: u32, attempt: u32) -> ProcessEvent {
    ProcessEvent::Started { pid, attempt }
}

fn exited_ev(pid: u32, code: i32, signal: Option<i32>) -> ProcessEvent {
    ProcessEvent::Exited { pid, code, signal }
}

#[test]
fn one_run_without_restart_reports_start_exit_and_code() {
    let (sys, mut s) = supervisor(RestartMode::No, 5);
    assert_eq!(s.start(), Next::Wait);
    assert_eq!(s.state(), State::Running);
    assert_eq!(s.child_exited(100, exited(7)), Next::Done(7));
    assert_eq!(
        s.drain_events(),
        vec![started(100, 0), exited_ev(100, 7, None)]
    );
    assert_eq!(
        sys.calls(),
        vec![
            Call::Spawn("/bin/agent".into(), 100),
            Call::Kill(-100, libc::SIGKILL)
        ]
    );
    assert_eq!(s.state(), State::Done);
}

#[test]
fn orphans_are_counted_and_do_not_end_the_agent() {
    let (_sys, mut s) = supervisor(RestartMode::No, 5);
    s.start();
    assert_eq!(s.child_exited(555, exited(0)), Next::Wait);
    assert_eq!(s.child_exited(556, signaled(libc::SIGKILL)), Next::Wait);
    assert_eq!(s.orphans_reaped(), 2);
    assert_eq!(s.pid(), Some(100));
    assert_eq!(s.drain_events(), vec![started(100, 0)]);
}

#[test]
fn crashes_restart_with_backoff_then_give_up() {
    let (sys, mut s) = supervisor(RestartMode::OnFailure, 2);
    s.start();
    assert_eq!(
        s.child_exited(100, signaled(libc::SIGSEGV)),
        Next::Restart(Duration::from_millis(100))
    );
    assert_eq!(s.state(), State::Backoff);
    assert_eq!(s.start(), Next::Wait);
    assert_eq!(
        s.child_exited(101, exited(3)),
        Next::Restart(Duration::from_millis(200))
    );
    s.start();
    assert_eq!(s.child_exited(102, exited(3)), Next::Done(3));
    assert_eq!(s.restarts(), 2);
    assert_eq!(
        s.drain_events(),
        vec![
            started(100, 0),
            exited_ev(100, 139, Some(libc::SIGSEGV)),
            ProcessEvent::Restarting {
                attempt: 1,
                delay_ms: 100
            },
            started(101, 1),
            exited_ev(101, 3, None),
            ProcessEvent::Restarting {
                attempt: 2,
                delay_ms: 200
            },
            started(102, 2),
            exited_ev(102, 3, None),
        ]
    );
    let spawns = sys
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Spawn(..)))
        .count();
    assert_eq!(spawns, 3);
}

#[test]
fn sigterm_stops_with_grace_then_sigkill_and_never_restarts() {
    let (sys, mut s) = supervisor(RestartMode::Always, 5);
    s.start();
    assert_eq!(s.signal(libc::SIGTERM, GRACE), Next::Grace(GRACE));
    assert_eq!(s.state(), State::Stopping);
    assert_eq!(s.grace_expired(), Next::Wait);
    assert_eq!(
        s.child_exited(100, signaled(libc::SIGKILL)),
        Next::Done(137)
    );
    let kills: Vec<_> = sys
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Kill(..)))
        .collect();
    assert_eq!(
        kills,
        vec![
            Call::Kill(-100, libc::SIGTERM),
            Call::Kill(-100, libc::SIGKILL),
            Call::Kill(-100, libc::SIGKILL),
        ]
    );
}

#[test]
fn host_shutdown_of_a_cooperative_agent_needs_no_sigkill() {
    let (sys, mut s) = supervisor(RestartMode::Always, 5);
    s.start();
    assert_eq!(s.shutdown(GRACE), Next::Grace(GRACE));
    assert_eq!(s.child_exited(100, exited(0)), Next::Done(0));
    // A late grace timer does nothing once done.
    assert_eq!(s.grace_expired(), Next::Done(0));
    assert_eq!(
        sys.calls()[1..],
        [
            Call::Kill(-100, libc::SIGTERM),
            Call::Kill(-100, libc::SIGKILL)
        ],
        "only the post-exit group cleanup is a SIGKILL"
    );
}

#[test]
fn signals_are_forwarded_or_stop_per_the_table() {
    let (sys, mut s) = supervisor(RestartMode::Always, 5);
    s.start();
    assert_eq!(s.signal(libc::SIGHUP, GRACE), Next::Wait);
    assert_eq!(s.signal(libc::SIGINT, GRACE), Next::Wait);
    assert_eq!(s.signal(libc::SIGUSR1, GRACE), Next::Wait);
    assert_eq!(
        sys.calls()[1..],
        [
            Call::Kill(-100, libc::SIGHUP),
            Call::Kill(-100, libc::SIGINT)
        ]
    );
    // In backoff, SIGTERM ends supervision with the last code.
    assert!(matches!(s.child_exited(100, exited(4)), Next::Restart(_)));
    assert_eq!(s.signal(libc::SIGHUP, GRACE), Next::Wait);
    assert_eq!(s.signal(libc::SIGTERM, GRACE), Next::Done(4));
    assert_eq!(s.start(), Next::Done(4), "no start after done");
}

#[test]
fn a_missing_program_is_reported_once_with_127() {
    let (sys, mut s) = supervisor(RestartMode::Always, 5);
    sys.fail_spawn(true);
    assert_eq!(s.start(), Next::Done(EXIT_START_FAILED));
    let events = s.drain_events();
    assert!(
        matches!(events.as_slice(), [ProcessEvent::StartFailed { .. }]),
        "{events:?}"
    );
}
