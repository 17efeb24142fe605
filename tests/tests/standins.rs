//! The agent image's stand-ins (`bottle_e2e::standins`) with real clients
//! on the host, no VM: git clones, fetches and pushes over smart HTTP;
//! curl reads the simple index, the npm registry and the model API.

use std::process::Command;

use bottle_e2e::standins::{self, Content, StandIns};

/// `curl` to `https://HOST.bottle.test:PORT/PATH`, trusting `ca`; the body.
fn curl(ca: &std::path::Path, port: u16, host: &str, path: &str, data: Option<&str>) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail", "--max-time", "20", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}{path}"));
    if let Some(d) = data {
        cmd.args(["-H", "content-type: application/json", "-d", d]);
    }
    let out = cmd.output().expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_use_the_standins() {
    for tool in ["git", "curl"] {
        if !bottle_e2e::bins::on_path(tool) {
            eprintln!("skipped: {tool} is not installed");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("git");
    std::fs::create_dir_all(&root).unwrap();
    let (main, other) = standins::git::make_repo(&root, "repo").unwrap();
    let si = StandIns::start(Content {
        git_root: root.clone(),
        wheel: standins::pypi::wheel(),
        npm: standins::npm::package().unwrap(),
        answer: "stand-in says hi".into(),
    })
    .await
    .unwrap();
    let port = si.addr.port();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &si.ca_pem).unwrap();

    // git: clone one branch, fetch the other, push a new branch.
    let git = |args: &[&str]| {
        let mut a = vec![
            "-c".to_string(),
            format!("http.sslCAInfo={}", ca.display()),
            "-c".to_string(),
            format!("http.curloptResolve=git.bottle.test:{port}:127.0.0.1"),
            // A stalled server fails the transfer instead of hanging the test.
            "-c".to_string(),
            "http.lowSpeedLimit=1".to_string(),
            "-c".to_string(),
            "http.lowSpeedTime=30".to_string(),
        ];
        a.extend(args.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        tokio::task::block_in_place(|| standins::git::git(dir.path(), &a))
    };
    let url = format!("https://git.bottle.test:{port}/repo.git");
    git(&[
        "clone",
        "--quiet",
        "--single-branch",
        "--branch",
        "main",
        &url,
        "clone",
    ])
    .unwrap();
    assert_eq!(git(&["-C", "clone", "rev-parse", "HEAD"]).unwrap(), main);
    git(&["-C", "clone", "fetch", "--quiet", "origin", "other"]).unwrap();
    assert_eq!(
        git(&["-C", "clone", "rev-parse", "FETCH_HEAD"]).unwrap(),
        other
    );
    git(&[
        "-C",
        "clone",
        "push",
        "--quiet",
        "origin",
        "HEAD:refs/heads/pushed",
    ])
    .unwrap();
    let refs = standins::git::git(&root.join("repo.git"), &["for-each-ref"]).unwrap();
    assert!(refs.contains("refs/heads/pushed"), "{refs}");

    // The index, the registry, the model.
    let c = |host: &str, path: &str, data: Option<&str>| {
        let ca = ca.clone();
        let (host, path, data) = (host.to_string(), path.to_string(), data.map(String::from));
        tokio::task::block_in_place(move || curl(&ca, port, &host, &path, data.as_deref()))
    };
    let page = c("pypi.bottle.test", "/simple/bottlehello/", None);
    assert!(
        page.contains("bottlehello-1.0.0-py3-none-any.whl#sha256="),
        "{page}"
    );
    let doc = c("npm.bottle.test", "/bottle-hello", None);
    assert!(
        doc.contains(&format!("https://npm.bottle.test:{port}/bottle-hello/-/")),
        "{doc}"
    );
    let msg = c(
        "anthropic.bottle.test",
        "/v1/messages",
        Some(r#"{"model":"m"}"#),
    );
    assert!(msg.contains("stand-in says hi"), "{msg}");
    assert_eq!(si.seen("anthropic.bottle.test").len(), 1);
}
