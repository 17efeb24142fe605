//! A recording [`Sys`] for tests: every call is appended to a log, spawns
//! get increasing fake pids, and reaps are scripted by the test.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::Mutex;

use super::{MountSpec, SpawnPlan, Sys, SysError};

/// One recorded call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// `mount(source, target, fstype)`.
    Mount(String),
    /// `mkdir -p`.
    Mkdir(String),
    /// `mount_at(source, target, fstype, data)`.
    MountAt(String),
    /// `touch`.
    Touch(String),
    /// `switch_root`.
    SwitchRoot(String),
    /// Console check.
    Console,
    /// `sethostname`.
    Hostname(String),
    /// Loopback up.
    LoopbackUp,
    /// `finit_module` of a path.
    LoadModule(String),
    /// `PR_SET_CHILD_SUBREAPER`.
    Subreaper,
    /// A spawn, by program path; the pid it got.
    Spawn(String, i32),
    /// `kill(pid, signal)`.
    Kill(i32, i32),
    /// `sync()`.
    Sync,
    /// Power off.
    PowerOff,
}

/// The recording fake.
#[derive(Debug, Default)]
pub struct FakeSys {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<Call>,
    next_pid: i32,
    reaps: VecDeque<(i32, i32)>,
    fail_mounts: HashSet<String>,
    fail_spawn: bool,
    plans: Vec<SpawnPlan>,
}

impl FakeSys {
    /// A fake whose first spawned pid is 100.
    pub fn new() -> Self {
        let f = FakeSys::default();
        f.lock().next_pid = 100;
        f
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Every spawn plan so far.
    pub fn plans(&self) -> Vec<SpawnPlan> {
        self.lock().plans.clone()
    }

    /// Make mounts on `target` fail with EBUSY.
    pub fn fail_mount(&self, target: &str) {
        self.lock().fail_mounts.insert(target.to_string());
    }

    /// Make spawns fail with ENOENT.
    pub fn fail_spawn(&self, fail: bool) {
        self.lock().fail_spawn = fail;
    }

    /// Queue a child exit for [`Sys::reap`].
    pub fn push_reap(&self, pid: i32, raw_status: i32) {
        self.lock().reaps.push_back((pid, raw_status));
    }

    fn record(&self, c: Call) {
        self.lock().calls.push(c);
    }
}

impl Sys for FakeSys {
    fn mount(&self, m: &MountSpec) -> Result<(), SysError> {
        self.record(Call::Mount(format!(
            "{} {} {}",
            m.source, m.target, m.fstype
        )));
        if self.lock().fail_mounts.contains(m.target) {
            return Err(SysError::new(
                format!("mount {}", m.target),
                std::io::Error::from_raw_os_error(libc::EBUSY),
            ));
        }
        Ok(())
    }
    fn mkdir_all(&self, path: &Path) -> Result<(), SysError> {
        self.record(Call::Mkdir(path.display().to_string()));
        Ok(())
    }
    fn mount_at(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: libc::c_ulong,
        data: &str,
    ) -> Result<(), SysError> {
        let t = target.display().to_string();
        self.record(Call::MountAt(format!(
            "{source} {t} {fstype} {flags:#x} {data}"
        )));
        if self.lock().fail_mounts.contains(&t) {
            return Err(SysError::new(
                format!("mount {t}"),
                std::io::Error::from_raw_os_error(libc::ENODEV),
            ));
        }
        Ok(())
    }
    fn touch(&self, path: &Path) -> Result<(), SysError> {
        self.record(Call::Touch(path.display().to_string()));
        Ok(())
    }
    fn switch_root(&self, new_root: &Path) -> Result<(), SysError> {
        self.record(Call::SwitchRoot(new_root.display().to_string()));
        Ok(())
    }
    fn attach_console(&self) -> Result<bool, SysError> {
        self.record(Call::Console);
        Ok(false)
    }
    fn sethostname(&self, name: &str) -> Result<(), SysError> {
        self.record(Call::Hostname(name.to_string()));
        Ok(())
    }
    fn loopback_up(&self) -> Result<(), SysError> {
        self.record(Call::LoopbackUp);
        Ok(())
    }
    fn load_module(&self, path: &Path) -> Result<(), SysError> {
        self.record(Call::LoadModule(path.display().to_string()));
        Ok(())
    }
    fn set_subreaper(&self) -> Result<(), SysError> {
        self.record(Call::Subreaper);
        Ok(())
    }
    fn spawn(&self, plan: &SpawnPlan) -> Result<i32, SysError> {
        let mut s = self.lock();
        if s.fail_spawn {
            return Err(SysError::new(
                "spawn",
                std::io::Error::from_raw_os_error(libc::ENOENT),
            ));
        }
        let pid = s.next_pid;
        s.next_pid += 1;
        s.calls
            .push(Call::Spawn(plan.program.display().to_string(), pid));
        s.plans.push(plan.clone());
        Ok(pid)
    }
    fn kill(&self, pid: i32, signal: i32) -> Result<(), SysError> {
        self.record(Call::Kill(pid, signal));
        Ok(())
    }
    fn reap(&self) -> Option<(i32, i32)> {
        self.lock().reaps.pop_front()
    }
    fn sync(&self) {
        self.record(Call::Sync);
    }
    fn power_off(&self) -> SysError {
        self.record(Call::PowerOff);
        SysError::new("power off", std::io::Error::from_raw_os_error(libc::EPERM))
    }
}
