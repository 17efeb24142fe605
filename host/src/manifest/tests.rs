//! Table of valid and invalid manifests, with the exact error each yields.

use std::path::Path;

use super::*;

const MINIMAL: &str = "[agent]\ncommand = [\"true\"]\n";

fn err(src: &str) -> String {
    parse(src, Path::new("b.toml")).unwrap_err().to_string()
}

#[test]
fn minimal_manifest_gets_defaults() {
    let m = parse(MINIMAL, Path::new("/x/b.toml")).unwrap();
    assert_eq!(m.vm.backend, Backend::Auto);
    assert_eq!(m.vm.cpus, 1);
    assert_eq!(m.vm.memory_mib, 512);
    assert_eq!(m.agent.user, None);
    assert_eq!(m.agent.workdir, None);
    assert!(m.mounts.is_empty());
    assert_eq!(m.egress.proxy_port, 3128);
    assert_eq!(m.egress.max_connections, 1024);
    assert!(m.egress.routes.is_empty());
    assert_eq!(m.dns.record_types, DEFAULT_RECORD_TYPES.to_vec());
    assert!(m.dns.upstreams.is_empty());
    assert!(m.dns_allowlist().is_empty());
}

#[test]
fn full_manifest_parses() {
    let src = r#"
[vm]
backend = "qemu"
accel = "tcg"
cpus = 2
memory_mib = 1024
kernel = "vmlinuz"

[agent]
command = ["claude", "--yes"]
user = "1000:1000"
workdir = "/work"
env = { LANG = "C.UTF-8" }
restart = "on-failure"
max_restarts = 3
restart_backoff_ms = 100

[secrets]
anthropic = { env = "ANTHROPIC_API_KEY" }
gh = { file = "gh-token" }

[[egress.routes]]
host = "api.anthropic.com"
methods = ["post", "GET"]
paths = ["/v1/"]
inject = { header = "X-Api-Key", secret = "anthropic" }

[[egress.routes]]
host = "*.GitHub.com."
ports = [443]
inject = { header = "authorization", secret = "gh", format = "Bearer {secret}" }

[dns]
upstreams = ["127.0.0.1:5353", "::1"]
record_types = ["a", "AAAA"]
extra_names = ["pypi.org"]
[dns.limits]
max_label_len = 30
max_entropy = 0.9
"#;
    let m = parse(src, Path::new("/etc/bottle/b.toml")).unwrap();
    assert_eq!(
        m.vm.kernel.as_deref(),
        Some(Path::new("/etc/bottle/vmlinuz"))
    );
    assert_eq!(m.vm.accel, Accel::Tcg);
    assert_eq!(
        m.agent.restart.mode,
        bottle_shared::message::RestartMode::OnFailure
    );
    assert_eq!(m.agent.restart.backoff_initial_ms, 100);
    let r0 = &m.egress.routes[0];
    assert_eq!(
        r0.methods.as_deref(),
        Some(&["POST".to_string(), "GET".to_string()][..])
    );
    assert_eq!(r0.ports, vec![443, 80]);
    assert_eq!(r0.inject.as_ref().unwrap().header, "x-api-key");
    let r1 = &m.egress.routes[1];
    assert_eq!(r1.host, HostPattern::Suffix("github.com".into()));
    assert_eq!(r1.inject.as_ref().unwrap().render("t0k"), "Bearer t0k");
    assert_eq!(
        m.secrets["gh"],
        SecretSource::File("/etc/bottle/gh-token".into())
    );
    assert_eq!(m.dns.upstreams[1].to_string(), "[::1]:53");
    assert_eq!(m.dns.limits.max_label_len, 30);
    let allow: Vec<String> = m.dns_allowlist().iter().map(ToString::to_string).collect();
    assert_eq!(allow, ["api.anthropic.com", "pypi.org", "*.github.com"]);
    let text = m.describe();
    assert!(text.contains("*.github.com ports=443"), "{text}");
    assert!(
        text.contains("inject=x-api-key<-secret:anthropic"),
        "{text}"
    );
}

#[test]
fn table_of_invalid_manifests() {
    let cases: &[(&str, &str)] = &[
        ("", "b.toml:1: missing field `agent`"),
        ("[agent]\ncommand = []\n", "b.toml:2: agent.command: must name a program: command = [\"program\", \"arg\", ...] (or leave it out to run the image's Entrypoint and Cmd)"),
        ("[agent]\n[[mounts]]\nhost = \"/\"\nguest = \"/w\"\n", "b.toml:3: mounts[0].host: sharing the host's / would give the agent the whole machine"),
        ("[agent]\n[[mounts]]\nhost = \"/tmp\"\nguest = \"/proc/x\"\n", "b.toml:4: mounts[0].guest: /proc/x is inside /proc, which the guest's init mounts itself"),
        ("[agent]\n[[mounts]]\nhost = \"/tmp\"\nguest = \"/w\"\n[[mounts]]\nhost = \"/tmp\"\nguest = \"/w/\"\n", "b.toml:7: mounts[1].guest: /w is mounted twice"),
        ("[agent]\n[[mounts]]\nhost = \"/tmp\"\nguest = \"/w\"\nrw = true\n", "b.toml:5: unknown field `rw`, expected one of `host`, `guest`, `readonly`"),
        ("[vm]\nimage = \" \"\n[agent]\n", "b.toml:2: vm.image: is empty; leave it out for the default image"),
        (
            "[agent]\ncommand = [\"x\"]\ncolour = 1\n",
            "b.toml:3: unknown field `colour`, expected one of `command`, `user`, `workdir`, `env`, `restart`, `max_restarts`, `restart_backoff_ms`, `grace_period_ms`",
        ),
        ("[agent]\ncommand = \"x\"\n", "b.toml:2: invalid type: string \"x\", expected a sequence"),
        ("[agent\ncommand = 1", "b.toml:1: unclosed table, expected `]`"),
        ("[vm]\nbackend = \"docker\"\n[agent]\ncommand = [\"x\"]\n", "b.toml:2: vm.backend: unknown backend \"docker\"; use \"auto\", \"qemu\" or \"libkrun\""),
        ("[vm]\ncpus = 0\n[agent]\ncommand = [\"x\"]\n", "b.toml:2: vm.cpus: 0 is out of range 1..=64"),
        ("[vm]\nmemory_mib = 1\n[agent]\ncommand = [\"x\"]\n", "b.toml:2: vm.memory_mib: 1 is out of range 64..=65536"),
        ("[agent]\ncommand = [\"x\"]\nworkdir = \"rel\"\n", "b.toml:3: agent.workdir: \"rel\" must be an absolute path"),
        ("[agent]\ncommand = [\"x\"]\nrestart = \"sometimes\"\n", "b.toml:3: agent.restart: unknown policy \"sometimes\"; use \"no\", \"on-failure\" or \"always\""),
        ("[agent]\ncommand = [\"x\"]\nuser = \"a b\"\n", "b.toml:3: agent.user: \"a b\" is not a user name or uid[:gid]"),
        (
            "[agent]\ncommand = [\"x\"]\n[[egress.routes]]\nhost = \"1.2.3.4\"\n",
            "b.toml:4: egress.routes[0].host: \"1.2.3.4\" is an IP address; routes name hosts (IP literals are always refused)",
        ),
        (
            "[agent]\ncommand = [\"x\"]\n[[egress.routes]]\nhost = \"a.*.com\"\n",
            "b.toml:4: egress.routes[0].host: \"a.*.com\": a wildcard is only allowed as a leading \"*.\"",
        ),
        (
            "[agent]\ncommand = [\"x\"]\n[[egress.routes]]\nhost = \"a.com\"\nports = [0]\n",
            "b.toml:5: egress.routes[0].ports: 0 is not a port (1..=65535)",
        ),
        (
            "[agent]\ncommand = [\"x\"]\n[[egress.routes]]\nhost = \"a.com\"\npaths = [\"v1\"]\n",
            "b.toml:5: egress.routes[0].paths: \"v1\" must start with '/'",
        ),
        (
            "[agent]\ncommand = [\"x\"]\n[[egress.routes]]\nhost = \"a.com\"\nmethods = [\"G-T\"]\n",
            "b.toml:5: egress.routes[0].methods: \"G-T\" is not an HTTP method",
        ),
        (
            "[agent]\ncommand = [\"x\"]\n[[egress.routes]]\nhost = \"a.com\"\ninject = { header = \"x\", secret = \"nope\" }\n",
            "b.toml:5: egress.routes[0].inject.secret: no secret named \"nope\" in [secrets]",
        ),
        (
            "[agent]\ncommand = [\"x\"]\n[secrets]\nk = { env = \"K\" }\n[[egress.routes]]\nhost = \"a.com\"\ninject = { header = \"Host\", secret = \"k\" }\n",
            "b.toml:7: egress.routes[0].inject.header: \"host\" cannot carry a credential",
        ),
        (
            "[agent]\ncommand = [\"x\"]\n[secrets]\nk = { env = \"K\" }\n[[egress.routes]]\nhost = \"a.com\"\ninject = { header = \"a\", secret = \"k\", format = \"Bearer\" }\n",
            "b.toml:7: egress.routes[0].inject.format: must contain {secret} and no line breaks",
        ),
        ("[agent]\ncommand = [\"x\"]\n[secrets]\nk = { env = \"K\", file = \"f\" }\n", "b.toml:4: secrets.k: give exactly one of env = \"VAR\" or file = \"path\""),
        ("[agent]\ncommand = [\"x\"]\n[secrets]\nk = {}\n", "b.toml:4: secrets.k: give exactly one of env = \"VAR\" or file = \"path\""),
        ("[agent]\ncommand = [\"x\"]\n[dns]\nupstreams = [\"dns.google\"]\n", "b.toml:4: dns.upstreams: \"dns.google\" is not IP or IP:PORT"),
        ("[agent]\ncommand = [\"x\"]\n[dns]\nrecord_types = [\"A\", \"BOGUS\"]\n", "b.toml:4: dns.record_types: unknown record type \"BOGUS\""),
        ("[agent]\ncommand = [\"x\"]\n[dns]\nrecord_types = [\"ANY\"]\n", "b.toml:4: dns.record_types: ANY can never be allowed"),
        ("[agent]\ncommand = [\"x\"]\n[dns]\ncache_min_ttl = 60\ncache_max_ttl = 10\n", "b.toml:5: dns.cache_max_ttl: 10 is below cache_min_ttl (60)"),
        ("[agent]\ncommand = [\"x\"]\n[dns.limits]\nmax_entropy = 1.5\n", "b.toml:4: dns.limits.max_entropy: is normalised: between 0.0 and 1.0"),
        ("[agent]\ncommand = [\"x\"]\n[egress]\nproxy_port = 70000\n", "b.toml:4: egress.proxy_port: 70000 is not a port (1..=65535)"),
        ("[agent]\ncommand = [\"x\"]\n[egress]\nmax_connections = 0\n", "b.toml:4: egress.max_connections: 0 is not in 1..=16384"),
        ("[agent]\ncommand = [\"x\"]\n[egress]\nmax_connections = 16385\n", "b.toml:4: egress.max_connections: 16385 is not in 1..=16384"),
    ];
    for (src, want) in cases {
        assert_eq!(&err(src), want, "manifest:\n{src}");
    }
}

/// Regression: a `cache_min_ttl` above the default ceiling left the cache
/// with a floor above its ceiling.
#[test]
fn default_cache_ceiling_never_undercuts_the_floor() {
    let cases: &[(&str, u32, u32)] = &[
        ("", 5, 3600),
        ("cache_min_ttl = 60\n", 60, 3600),
        ("cache_min_ttl = 7200\n", 7200, 7200),
        ("cache_min_ttl = 7200\ncache_max_ttl = 9000\n", 7200, 9000),
    ];
    for (dns, min, max) in cases {
        let src = format!("{MINIMAL}[dns]\n{dns}");
        let m = parse(&src, Path::new("b.toml")).unwrap();
        assert_eq!(
            (m.dns.cache_min_ttl, m.dns.cache_max_ttl),
            (*min, *max),
            "{dns}"
        );
    }
}

#[test]
fn secrets_load_from_env_and_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tok"), "file-secret\n").unwrap();
    let src = "[agent]\ncommand = [\"x\"]\n[secrets]\na = { env = \"BOTTLE_TEST_SECRET_A\" }\nb = { file = \"tok\" }\n";
    let path = dir.path().join("b.toml");
    let m = parse(src, &path).unwrap();
    // SAFETY-free: set_var is only unsafe in the 2024 edition; this test is
    // the only one touching this variable.
    std::env::set_var("BOTTLE_TEST_SECRET_A", "env-secret");
    let s = m.load_secrets().unwrap();
    assert_eq!(s[0].value, "env-secret");
    assert_eq!(s[1].value, "file-secret");
    assert!(
        !format!("{s:?}").contains("secret\""),
        "Debug must not print values"
    );
    std::env::remove_var("BOTTLE_TEST_SECRET_A");
    let e = m.load_secrets().unwrap_err().to_string();
    assert!(
        e.ends_with("secrets.a: environment variable BOTTLE_TEST_SECRET_A is not set"),
        "{e}"
    );
}

#[test]
fn load_refuses_missing_and_huge_files() {
    let e = load(Path::new("/nonexistent/b.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("/nonexistent/b.toml: cannot read:"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    std::fs::write(&big, vec![b'#'; (MAX_MANIFEST_BYTES + 1) as usize]).unwrap();
    assert!(load(&big).unwrap_err().to_string().contains("larger than"));
}

/// Run `f` on a thread; fail if it takes more than 5 s (a hang).
fn within_5s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(5))
        .expect("blocked for 5 s")
}

fn fifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

#[test]
fn a_manifest_or_secret_file_that_never_ends_or_is_a_silent_pipe_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // The manifest: a named pipe nobody writes to, and a device that
    // never ends.
    let pipe = dir.path().join("m.toml");
    fifo(&pipe);
    let e = within_5s(move || load(&pipe).unwrap_err().to_string());
    assert!(e.contains("agent"), "{e}");
    let e = within_5s(|| load(Path::new("/dev/zero")).unwrap_err().to_string());
    assert!(e.contains("larger than"), "{e}");

    // Secret files: the same, and one too large.
    fifo(&dir.path().join("silent"));
    std::fs::write(dir.path().join("big"), vec![b'x'; 1 << 20]).unwrap();
    std::fs::write(dir.path().join("short"), "abc\n").unwrap();
    for (file, want) in [
        ("silent", "is empty"),
        ("/dev/zero", "larger than 65536 bytes"),
        ("big", "larger than 65536 bytes"),
        ("short", "shorter than 8 bytes"),
    ] {
        let src = format!("[agent]\ncommand = [\"x\"]\n[secrets]\ns = {{ file = \"{file}\" }}\n");
        let m = parse(&src, &dir.path().join("b.toml")).unwrap();
        let e = within_5s(move || m.load_secrets().unwrap_err().to_string());
        assert!(e.contains(want), "{file}: {e}");
    }
}
