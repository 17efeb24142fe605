//! Registry pulls against a real registry (Debian's `docker-registry`) on
//! loopback, the image pushed with `skopeo`; skipped, saying so, when
//! either is missing. Credentials from a Docker config.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oci_client::secrets::RegistryAuth;

use super::registry::{bearer_realm, credentials, docker_config_auth, is_loopback, realm_allowed};
use super::testimg::{blob, config, Comp, Layer, Layout};
use super::{prepare, ImageSource, NoProgress, Progress};

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

struct Registry {
    child: Child,
    port: u16,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(bin: &Path, dir: &Path) -> Registry {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.join("registry.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("registry.log")).unwrap();
    let child = Command::new(bin)
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let r = Registry { child, port };
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the registry did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    r
}

/// Records the steps begun.
#[derive(Default)]
struct Steps(Mutex<Vec<String>>);

impl Progress for Steps {
    fn begin(&self, step: &str, _total: Option<u64>) {
        self.0.lock().unwrap().push(step.to_string());
    }
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
}

#[test]
fn pull_from_a_local_registry() {
    let (Some(reg), Some(skopeo)) = (which("docker-registry"), which("skopeo")) else {
        eprintln!("skipped: needs docker-registry and skopeo (apt install docker-registry skopeo)");
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let registry = start_registry(&reg, t.path());
    let mut l = Layout::new(&t.path().join("layout"));
    let layers = vec![
        blob(
            Layer::new().file("etc/os-release", "pulled", 0o644).tar(),
            Comp::Gzip,
        ),
        blob(
            Layer::new()
                .file("etc/.wh.os-release", "", 0o644)
                .file("bin/x", "x", 0o755)
                .tar(),
            Comp::Gzip,
        ),
    ];
    let m = l.manifest(
        &config("amd64", serde_json::json!({"Cmd": ["/bin/x"]}), &[]),
        &layers,
    );
    let digest = l.add(m, Some("t"), None);
    let dest = format!("docker://127.0.0.1:{}/test/img:t", registry.port);
    let out = Command::new(skopeo)
        .args([
            "copy",
            "--quiet",
            "--insecure-policy",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:t", l.dir.display()))
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = t.path().join("state");
    let src = ImageSource::parse(&dest, t.path()).unwrap();
    let steps = Steps::default();
    let p = prepare(&src, &state, &steps).unwrap();
    assert_eq!(p.digest, digest);
    assert_eq!(p.config.cmd, ["/bin/x"]);
    assert!(p.root.join("bin/x").is_file());
    assert!(!p.root.join("etc/os-release").exists());
    let downloads = steps
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.starts_with("download"))
        .count();
    assert_eq!(downloads, 3, "{:?}", steps.0.lock().unwrap());
    // Again, and by digest: cached, nothing downloaded.
    let again = Steps::default();
    let by_digest = format!("docker://127.0.0.1:{}/test/img@{digest}", registry.port);
    for s in [dest.as_str(), by_digest.as_str()] {
        let q = prepare(&ImageSource::parse(s, t.path()).unwrap(), &state, &again).unwrap();
        assert_eq!(q, p);
    }
    assert!(
        again.0.lock().unwrap().is_empty(),
        "{:?}",
        again.0.lock().unwrap()
    );
    assert_eq!(
        std::fs::read_dir(state.join("images/tmp")).unwrap().count(),
        0
    );
    // A tag that is not there.
    let missing = format!("docker://127.0.0.1:{}/test/img:nope", registry.port);
    let err = prepare(
        &ImageSource::parse(&missing, t.path()).unwrap(),
        &state,
        &again,
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "pulling 127.0.0.1:{}/test/img:nope",
            registry.port
        )),
        "{err}"
    );
}

#[test]
fn loopback_registries_only_get_plain_http() {
    for (r, want) in [
        ("127.0.0.1:5000", true),
        ("localhost:5000", true),
        ("localhost", true),
        ("[::1]:5000", true),
        ("127.1.2.3", true),
        ("ghcr.io", false),
        ("10.0.0.1:5000", false),
        ("localhost.example.com", false),
    ] {
        assert_eq!(is_loopback(r), want, "{r}");
    }
}

#[test]
fn docker_config_credentials() {
    let cfg = br#"{"auths": {"ghcr.io": {"auth": "dXNlcjpwYTpzcw=="},
                             "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="}}}"#;
    assert_eq!(
        docker_config_auth(cfg, "ghcr.io"),
        Some(("user".into(), "pa:ss".into()))
    );
    assert_eq!(
        docker_config_auth(cfg, "docker.io"),
        Some(("hub".into(), "secret".into()))
    );
    assert_eq!(docker_config_auth(cfg, "quay.io"), None);
    assert_eq!(docker_config_auth(b"not json", "ghcr.io"), None);
}

/// A registry that accepts the connection and then says nothing: the pull
/// ends with an error naming the registry after the read timeout, nothing
/// is cached and no temporary directory stays.
#[test]
fn a_silent_registry_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept and hold connections open without a byte.
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Ok((c, _)) = listener.accept() {
                conns.push(c);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let state = tempfile::tempdir().unwrap();
    let src = ImageSource::parse(&format!("docker://{addr}/hangs:1"), Path::new("/")).unwrap();
    let ImageSource::Registry(r) = &src else {
        panic!("{src:?}")
    };
    let images = super::cache::Images::open(state.path()).unwrap();
    let t = Instant::now();
    let e =
        super::registry::pull_with(&src, r, &images, &super::NoProgress, Duration::from_secs(2))
            .unwrap_err()
            .to_string();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(e.contains(&addr.to_string()), "{e}");
    assert!(super::list(state.path()).is_empty());
    let tmp: Vec<_> = std::fs::read_dir(state.path().join("images/tmp"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "{tmp:?}");
    drop(held);
}

// ---------------------------------------------------------------------------
// Hostile registries, served by a tiny HTTP/1.1 server on loopback:
// `handle(head, stream)` per connection, until the guard is dropped.

struct Server(Arc<AtomicBool>);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn serve(
    addr: &str,
    handle: impl Fn(String, TcpStream) + Send + Sync + 'static,
) -> (SocketAddr, Server) {
    let l = TcpListener::bind(addr).unwrap();
    let a = l.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let handle = Arc::new(handle);
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut c, _)) => {
                    c.set_nonblocking(false).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let h = handle.clone();
                    std::thread::spawn(move || {
                        let mut head = Vec::new();
                        let mut b = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") {
                            if c.read(&mut b).unwrap_or(0) == 0 {
                                return;
                            }
                            head.push(b[0]);
                        }
                        h(String::from_utf8_lossy(&head).into_owned(), c);
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (a, Server(stop))
}

/// Pull `addr/x/img:t` with a Docker config holding `alice:hunter2` for
/// `addr` (no process environment changed); the `auth` value.
fn pull_with_docker_config(
    addr: SocketAddr,
    t: &Path,
) -> (Result<super::PreparedImage, super::ImageError>, String) {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:hunter2");
    std::fs::write(
        t.join("config.json"),
        serde_json::json!({"auths": {addr.to_string(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let src = ImageSource::parse(&format!("docker://{addr}/x/img:t"), Path::new("/")).unwrap();
    let ImageSource::Registry(r) = &src else {
        panic!()
    };
    let images = super::cache::Images::open(&t.join("state")).unwrap();
    let dir = t.to_string_lossy().into_owned();
    let env = move |n: &str| (n == "DOCKER_CONFIG").then(|| dir.clone());
    let got =
        super::registry::pull_env(&src, r, &images, &NoProgress, Duration::from_secs(5), &env);
    (got, auth)
}

/// The registry 127.0.0.1:A (the only one the Docker config has
/// credentials for) names a token realm on 127.0.0.2:B over plain HTTP:
/// the pull is refused and B never sees `Authorization`.
#[test]
fn credentials_do_not_follow_a_plain_http_realm_to_another_host() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let (thief, _thief) = serve("127.0.0.2:0", move |head, mut c| {
        s2.lock().unwrap().push(head);
        let _ = c.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    });
    let realm = format!("http://{thief}/token");
    let (addr, _reg) = serve("127.0.0.1:0", move |_head, mut c| {
        let _ = write!(
            c,
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{realm}\",service=\"reg\"\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
    });
    let t = tempfile::tempdir().unwrap();
    let (got, _) = pull_with_docker_config(addr, t.path());
    let err = got.unwrap_err().to_string();
    assert!(err.contains("are not sent there"), "{err}");
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter()
            .all(|h| !h.to_ascii_lowercase().contains("authorization")),
        "{thief} got credentials: {seen:?}"
    );
}

/// A redirect to another host does not carry the credentials (reqwest
/// drops `Authorization` across hosts).
#[test]
fn a_redirect_to_another_host_drops_credentials() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let (other, _other) = serve("127.0.0.2:0", move |head, mut c| {
        s2.lock().unwrap().push(head);
        let _ = c
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    });
    let (addr, _reg) = serve("127.0.0.1:0", move |head, mut c| {
        if !head.to_ascii_lowercase().contains("authorization: basic") {
            let _ = c.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        } else {
            let _ = write!(c, "HTTP/1.1 302 Found\r\nLocation: http://{other}/elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let t = tempfile::tempdir().unwrap();
    let (got, _) = pull_with_docker_config(addr, t.path());
    assert!(got.is_err());
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty(), "no redirect followed");
    assert!(
        seen.iter()
            .all(|h| !h.to_ascii_lowercase().contains("authorization")),
        "{seen:?}"
    );
}

#[test]
fn realms_credentials_may_go_to() {
    assert_eq!(
        bearer_realm(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#)
            .as_deref(),
        Some("https://auth.docker.io/token")
    );
    assert_eq!(bearer_realm(r#"Basic realm="r""#), None);
    assert!(realm_allowed(
        "registry-1.docker.io",
        "https://auth.docker.io/token"
    ));
    assert!(realm_allowed(
        "127.0.0.1:5000",
        "http://127.0.0.1:5001/token"
    ));
    assert!(realm_allowed("[::1]:5000", "http://[::1]:5001/token"));
    assert!(!realm_allowed(
        "127.0.0.1:5000",
        "http://127.0.0.2:5001/token"
    ));
    assert!(!realm_allowed("ghcr.io", "http://ghcr.io/token"));
    assert!(!realm_allowed("ghcr.io", "ftp://ghcr.io/token"));
    assert!(!realm_allowed("ghcr.io", "not a url"));
}

/// `BOTTLE_REGISTRY_USER`/`_PASSWORD` go only to `BOTTLE_REGISTRY_HOST`,
/// and are an error without it.
#[test]
fn environment_credentials_are_for_one_registry() {
    let env = |host: Option<&'static str>| {
        move |n: &str| match n {
            "BOTTLE_REGISTRY_USER" => Some("u".to_string()),
            "BOTTLE_REGISTRY_PASSWORD" => Some("p".to_string()),
            "BOTTLE_REGISTRY_HOST" => host.map(String::from),
            _ => None,
        }
    };
    let basic = |a: Result<RegistryAuth, String>| matches!(a, Ok(RegistryAuth::Basic(u, p)) if u == "u" && p == "p");
    assert!(basic(credentials("ghcr.io", &env(Some("ghcr.io")))));
    assert!(basic(credentials(
        "docker.io",
        &env(Some("registry-1.docker.io"))
    )));
    assert!(matches!(
        credentials("evil.example", &env(Some("ghcr.io"))),
        Ok(RegistryAuth::Anonymous)
    ));
    let err = credentials("ghcr.io", &env(None)).unwrap_err();
    assert!(err.contains("BOTTLE_REGISTRY_HOST"), "{err}");
}

/// A registry whose manifest is endless (256 MiB, with or without a
/// `Content-Length`): refused after about MAX_JSON (16 MiB), not read
/// whole into memory.
#[test]
fn a_huge_manifest_is_not_read_whole() {
    for declared in [true, false] {
        const BIG: u64 = 256 << 20;
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let s2 = sent.clone();
        let (addr, _reg) = serve("127.0.0.1:0", move |head, mut c| {
            if head.starts_with("GET /v2/ ") {
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return;
            }
            let length = if declared {
                format!("Content-Length: {BIG}\r\n")
            } else {
                String::new()
            };
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n\
                 {length}Connection: close\r\n\r\n"
            );
            let chunk = vec![b' '; 1 << 20];
            for _ in 0..(BIG >> 20) {
                if c.write_all(&chunk).is_err() {
                    return;
                }
                s2.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        });
        let t = tempfile::tempdir().unwrap();
        let (got, _) = pull_with_docker_config(addr, t.path());
        let err = got.unwrap_err().to_string();
        assert!(err.contains("over 16777216 bytes"), "{err}");
        let got = sent.load(Ordering::Relaxed);
        assert!(
            got <= (16 << 20) + (8 << 20),
            "declared {declared}: the client took {} MiB of a manifest",
            got >> 20
        );
    }
}
