//! Turning an [`AgentSpec`] into a [`SpawnPlan`]: the user from the rootfs
//! `/etc/passwd` and `/etc/group` (or `uid[:gid]`), the environment over
//! sane defaults, and the program looked up in `PATH`.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bottle_shared::message::AgentSpec;

use crate::sys::{Credentials, SpawnPlan};

/// `PATH` given to the agent unless its spec sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The agent cannot be started as specified.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanError {
    /// The spec has an empty command.
    #[error("the agent command is empty")]
    EmptyCommand,
    /// The program is not in `PATH` or not executable.
    #[error("{0}: command not found in PATH")]
    NotFound(String),
    /// The user is neither in `/etc/passwd` nor numeric.
    #[error("unknown user {0:?}: not in /etc/passwd and not uid[:gid]")]
    UnknownUser(String),
}

/// A resolved user: credentials (`None` = stay root as the init) and home.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// What to switch to.
    pub creds: Option<Credentials>,
    /// Home directory.
    pub home: String,
    /// Login name, when known.
    pub name: Option<String>,
}

/// Resolve `user` (empty, a name, `uid` or `uid:gid`) against the text of
/// `/etc/passwd` and `/etc/group`.
pub fn resolve_user(user: &str, passwd: &str, group: &str) -> Result<User, PlanError> {
    if user.is_empty() {
        return Ok(User {
            creds: None,
            home: "/root".into(),
            name: Some("root".into()),
        });
    }
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let numeric = user
        .split_once(':')
        .map(|(u, g)| (u.parse::<u32>().ok(), g.parse::<u32>().ok().map(Some)))
        .unwrap_or((user.parse::<u32>().ok(), Some(None)));
    let entry = match numeric {
        (Some(uid), _) => entries.iter().find(|f| f[2].parse() == Ok(uid)),
        (None, _) => entries.iter().find(|f| f[0] == user),
    };
    let (uid, gid, home, name) = match (numeric, entry) {
        ((Some(uid), Some(gid)), e) => (
            uid,
            gid.or_else(|| e.and_then(|f| f[3].parse().ok()))
                .unwrap_or(uid),
            e.map_or("/", |f| f[5]).to_string(),
            e.map(|f| f[0].to_string()),
        ),
        ((None, _), Some(f)) => (
            f[2].parse()
                .map_err(|_| PlanError::UnknownUser(user.into()))?,
            f[3].parse()
                .map_err(|_| PlanError::UnknownUser(user.into()))?,
            f[5].to_string(),
            Some(f[0].to_string()),
        ),
        _ => return Err(PlanError::UnknownUser(user.into())),
    };
    let mut groups = vec![gid];
    if let Some(name) = &name {
        for f in group.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
            if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if !groups.contains(&g) {
                        groups.push(g);
                    }
                }
            }
        }
    }
    Ok(User {
        creds: Some(Credentials { uid, gid, groups }),
        home,
        name,
    })
}

/// Find `cmd` in the colon-separated `path` (or take it as is when it
/// contains a slash). Only executable regular files count.
pub fn find_program(cmd: &str, path: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if cmd.contains('/') {
        let p = PathBuf::from(cmd);
        return executable(&p).then_some(p);
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(cmd))
        .find(|p| executable(p))
}

/// Build the agent's environment: defaults, then `extra` (CA and proxy
/// variables, services), then the spec's own, later entries winning.
pub fn build_env(
    user: &User,
    extra: &[(String, String)],
    spec_env: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOME".into(), user.home.clone()),
        (
            "TERM".into(),
            std::env::var("TERM").unwrap_or_else(|_| "linux".into()),
        ),
    ];
    if let Some(name) = &user.name {
        env.push(("USER".into(), name.clone()));
        env.push(("LOGNAME".into(), name.clone()));
    }
    for (k, v) in extra.iter().chain(spec_env) {
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    env
}

/// Resolve everything needed to spawn the agent. `rootfs` is where
/// `/etc/passwd` and `/etc/group` are read (`/` in production).
pub fn plan(
    spec: &AgentSpec,
    rootfs: &Path,
    extra_env: &[(String, String)],
) -> Result<SpawnPlan, PlanError> {
    let first = spec.command.first().ok_or(PlanError::EmptyCommand)?;
    let read = |p: &str| std::fs::read_to_string(rootfs.join(p)).unwrap_or_default();
    let user = resolve_user(&spec.user, &read("etc/passwd"), &read("etc/group"))?;
    let env = build_env(&user, extra_env, &spec.env);
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    let program = find_program(first, path).ok_or_else(|| PlanError::NotFound(first.clone()))?;
    let workdir = if spec.workdir.is_empty() {
        PathBuf::from(&user.home)
    } else {
        PathBuf::from(&spec.workdir)
    };
    let workdir = if workdir.is_dir() {
        workdir
    } else {
        PathBuf::from("/")
    };
    Ok(SpawnPlan {
        program,
        argv: spec.command.iter().map(OsString::from).collect(),
        env: env.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        workdir,
        creds: user.creds,
        stdio: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        agent:x:1000:1000:Agent:/home/agent:/bin/bash\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\ndocker:x:999:agent,other\nusers:x:100:agent\nagent:x:1000:\n";

    fn creds(uid: u32, gid: u32, groups: &[u32]) -> Option<Credentials> {
        Some(Credentials {
            uid,
            gid,
            groups: groups.to_vec(),
        })
    }

    #[test]
    fn users_resolve_from_passwd_or_numbers() {
        let table = [
            ("", None, "/root"),
            ("agent", creds(1000, 1000, &[1000, 999, 100]), "/home/agent"),
            ("1000", creds(1000, 1000, &[1000, 999, 100]), "/home/agent"),
            ("1000:5", creds(1000, 5, &[5, 999, 100]), "/home/agent"),
            ("4242", creds(4242, 4242, &[4242]), "/"),
            ("4242:7", creds(4242, 7, &[7]), "/"),
            ("nobody", creds(65534, 65534, &[65534]), "/nonexistent"),
            ("root", creds(0, 0, &[0]), "/root"),
        ];
        for (user, want, home) in table {
            let got = resolve_user(user, PASSWD, GROUP).unwrap();
            assert_eq!(
                (got.creds, got.home.as_str()),
                (want, home),
                "user {user:?}"
            );
        }
        for bad in ["ghost", "agent:x", "x:1"] {
            assert!(
                resolve_user(bad, PASSWD, GROUP).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn env_layers_override_in_order() {
        let user = resolve_user("agent", PASSWD, GROUP).unwrap();
        let env = build_env(
            &user,
            &[
                ("SSL_CERT_FILE".into(), "/ca".into()),
                ("HOME".into(), "/x".into()),
            ],
            &[
                ("PATH".into(), "/opt/bin".into()),
                ("FOO".into(), "1".into()),
            ],
        );
        let get = |k: &str| env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PATH"), Some("/opt/bin"));
        assert_eq!(get("HOME"), Some("/x"));
        assert_eq!(get("USER"), Some("agent"));
        assert_eq!(get("SSL_CERT_FILE"), Some("/ca"));
        assert_eq!(get("FOO"), Some("1"));
        assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);
    }

    #[test]
    fn programs_are_found_in_path_only_when_executable() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("data"), "").unwrap();
        let path = format!("/nonexistent:{}", dir.path().display());
        assert_eq!(find_program("tool", &path), Some(exe.clone()));
        assert_eq!(find_program("data", &path), None);
        assert_eq!(find_program("missing", &path), None);
        assert_eq!(find_program(exe.to_str().unwrap(), ""), Some(exe));
    }
}
