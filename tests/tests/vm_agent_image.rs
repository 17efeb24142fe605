//! The Debian agent image (`images/agent-image.sh`) in a real VM, through
//! every guard at once: one bottle, user `agent`, a workspace at `/work`,
//! and one script that uses the image's real tools against the stand-ins
//! (`bottle_e2e::standins`): git clones and fetches over smart HTTP but
//! cannot push (the route allows only the fetch paths), pip installs a
//! wheel from a simple index, npm installs a package, Node reaches an
//! HTTPS site through the proxy with the bottle's CA, and the real
//! Claude Code CLI gets its answer from the model stand-in, which sees the
//! host's key while the guest holds a placeholder.
//!
//! Skips unless the image is built (`bash images/agent-image.sh`, or
//! `BOTTLE_BUILD_AGENT_IMAGE=1` to build it here).

use std::time::{Duration, Instant};

use bottle_e2e::agent_image::{self, Ports, ANTHROPIC_KEY, PLACEHOLDER_KEY};
use bottle_e2e::standins::{self, Content, StandIns};
use bottle_e2e::vm::{vm_unavailable, Launching, Testbed, CHECK_SH};

/// Boot, npm and the CLI under TCG on a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(900);

/// What the model stand-in answers.
const ANSWER: &str = "Hi from the stand-in model";

/// The agent's script: `P` is the stand-ins' port, `W` the echo site's,
/// `MAIN`/`OTHER` the repository's branch heads.
const SCRIPT: &str = r#"
t0=$(date +%s)
lap() { now=$(date +%s); echo "TIMING $1 $((now - t0)) s"; t0=$now; }
cd /work
check whoami sh -c '[ "$(id -u):$(id -g)" = 1000:1000 ] && [ "$HOME" = /home/agent ] && [ "$PWD" = /work ]'
check key_placeholder sh -c '[ "$ANTHROPIC_API_KEY" = PLACEHOLDER ]'
check status_as_agent sh -c 'bottle-guest status --json | grep -q "\"software\""'
echo "ENVDUMP $(env | base64 -w0)"
git config --global user.email agent@bottle.test
git config --global user.name agent

check git_clone git clone --quiet --single-branch --branch main https://git.bottle.test:P/repo.git /work/repo
check git_head sh -c '[ "$(git -C /work/repo rev-parse HEAD)" = MAIN ]'
check git_fetch sh -c 'git -C /work/repo fetch --quiet origin other && [ "$(git -C /work/repo rev-parse FETCH_HEAD)" = OTHER ]'
check git_push_refused sh -c 'out=$(git -C /work/repo push origin HEAD:refs/heads/pushed 2>&1) && { echo "pushed: $out"; exit 1; }; echo "$out" | grep 403 || { echo "$out"; exit 1; }'
lap git

check pip_install pip install --quiet --user --break-system-packages --no-cache-dir --index-url https://pypi.bottle.test:P/simple/ bottlehello
check pip_import python3 -c 'import bottlehello; print(bottlehello.GREETING); assert bottlehello.GREETING == "PYGREETING"'
lap pip

mkdir -p /work/npmproj
check npm_install sh -c 'cd /work/npmproj && npm install --registry https://npm.bottle.test:P/ --no-audit --no-fund --loglevel=error bottle-hello'
check npm_require sh -c 'cd /work/npmproj && node -e "console.log(require(\"bottle-hello\").greeting)" | grep -x "NPMGREETING"'
lap npm

# Node 18's clients ignore HTTPS_PROXY: fetch() dials the site directly,
# which a bottle without a network refuses. A CONNECT through the proxy
# works, trusting the bottle's CA from NODE_EXTRA_CA_CERTS.
check node_fetch_direct_fails node -e '
fetch("https://api.bottle.test:W/direct").then(() => { console.log("reached!"); process.exit(1) },
  e => { console.log("refused:", e.cause ? e.cause.code : e.message); process.exit(0) });
setTimeout(() => process.exit(2), 60000);'
check node_https_connect node -e '
const http = require("http"), https = require("https"), tls = require("tls");
const proxy = new URL(process.env.HTTPS_PROXY);
setTimeout(() => { console.log("timeout"); process.exit(2) }, 60000);
http.request({ host: proxy.hostname, port: proxy.port, method: "CONNECT", path: "api.bottle.test:W" })
  .on("connect", (res, socket) => {
    if (res.statusCode !== 200) { console.log("CONNECT", res.statusCode); process.exit(1) }
    https.get({ host: "api.bottle.test", port: W, path: "/node",
                createConnection: () => tls.connect({ socket, servername: "api.bottle.test" }) }, r => {
      let body = ""; r.on("data", d => body += d);
      r.on("end", () => { console.log(r.statusCode, r.headers["x-auth"], body.trim());
                          process.exit(body === "hello from upstream\n" && r.headers["x-auth"] === "ok" ? 0 : 1) });
    }).on("error", e => { console.log(e.message); process.exit(1) });
  }).on("error", e => { console.log(e.message); process.exit(1) }).end();'
lap node

if command -v claude >/dev/null; then
  check claude_print sh -c 'out=$(timeout 400 claude -p "say hi" --output-format text </dev/null 2>&1); echo "$out" | grep -F "ANSWER" || { echo "$out"; exit 1; }'
  lap claude_print
else
  echo "CHECK claude_print FAIL no claude CLI in the image (BOTTLE_AGENT_CLI=none?)"
fi
check curl_messages sh -c 'curl -sS --max-time 60 https://anthropic.bottle.test:P/v1/messages -H "x-api-key: $ANTHROPIC_API_KEY" -H "content-type: application/json" -d "{\"model\":\"m\",\"max_tokens\":8,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" | grep -F "ANSWER"'
echo AGENT DONE
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_image_clones_installs_and_calls_the_model_through_the_guards() {
    if let Some(why) = vm_unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    // Finding (or building) the image blocks: off the runtime's threads.
    let found = tokio::task::spawn_blocking(agent_image::agent_image_dir).await;
    let image = match found.unwrap_or_else(|e| Err(e.to_string())) {
        Ok(d) => d,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let _serial = bottle_e2e::serial().await;
    let started = Instant::now();
    let bed = Testbed::start().await;
    let git_root = bed.dir.path().join("git");
    std::fs::create_dir_all(&git_root).unwrap();
    let (main, other) = standins::git::make_repo(&git_root, "repo").expect("bare repository");
    let si = StandIns::start(Content {
        git_root: git_root.clone(),
        wheel: standins::pypi::wheel(),
        npm: standins::npm::package().expect("npm package"),
        answer: ANSWER.into(),
    })
    .await
    .expect("stand-ins");
    // The proxy trusts both test CAs.
    std::fs::write(
        bed.dir.path().join("upstream-ca.pem"),
        format!("{}{}", bed.web.ca_pem, si.ca_pem),
    )
    .unwrap();
    let ws = bed.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();

    let script = format!(
        "{CHECK_SH}{}",
        SCRIPT
            .replace("PLACEHOLDER", PLACEHOLDER_KEY)
            .replace("PYGREETING", standins::pypi::GREETING)
            .replace("NPMGREETING", standins::npm::GREETING)
            .replace("ANSWER", ANSWER)
            .replace("MAIN", &main)
            .replace("OTHER", &other)
            .replace(":P/", &format!(":{}/", si.addr.port()))
            .replace(":W", &format!(":{}", bed.web.addr.port()))
            .replace("port: W", &format!("port: {}", bed.web.addr.port()))
    );
    let ports = Ports {
        web: bed.web.addr.port(),
        standins: si.addr.port(),
        dns: bed.dns.addr.to_string(),
    };
    let text = agent_image::manifest(&agent_image::image_ref(&image), &ws, &script, &ports);
    let manifest = bed.dir.path().join("bottle.toml");
    std::fs::write(&manifest, text).unwrap();
    let mut cmd = tokio::process::Command::new(bottle_e2e::bins::host());
    cmd.arg("launch");
    let mut cmd = bed.launch_args(cmd, &manifest);
    cmd.env("BOTTLE_VMTEST_ANTHROPIC_KEY", ANTHROPIC_KEY);
    let run = Launching::spawn(cmd).finish(LIMIT).await;
    eprintln!(
        "agent image test: launch {:?}, whole test {:?}",
        run.elapsed,
        started.elapsed()
    );

    // What the CLI asked for besides its answer, and what the guards
    // refused (telemetry, update checks): for the record in the log.
    for s in si.seen("anthropic.bottle.test") {
        eprintln!("model stand-in saw: {} {}", s.method, s.path);
    }
    for l in bed.proxy_audit().lines().filter(|l| l.contains("deny")) {
        eprintln!("proxy denied: {l}");
    }
    for l in bed
        .dns_audit()
        .lines()
        .filter(|l| !l.contains("bottle.test"))
    {
        eprintln!("dns: {l}");
    }

    for check in [
        "whoami",
        "key_placeholder",
        "status_as_agent",
        "git_clone",
        "git_head",
        "git_fetch",
        "git_push_refused",
        "pip_install",
        "pip_import",
        "npm_install",
        "npm_require",
        "node_fetch_direct_fails",
        "node_https_connect",
        "claude_print",
        "curl_messages",
    ] {
        run.assert_ok(check);
    }
    assert_eq!(run.code, Some(0), "{}", run.output);

    // The clone is in the host's workspace, owned by whoever ran the host.
    let meta = std::fs::metadata(ws.join("repo/.git/HEAD")).expect("clone on the host");
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    assert_eq!(meta.uid(), unsafe { libc::geteuid() });
    assert!(ws
        .join("npmproj/node_modules/bottle-hello/index.js")
        .is_file());
    // The push was refused by the route, before the git host.
    let refs = standins::git::git(&git_root.join("repo.git"), &["for-each-ref"]).unwrap();
    assert!(!refs.contains("refs/heads/pushed"), "{refs}");
    assert!(
        !si.seen("git.bottle.test")
            .iter()
            .any(|s| s.path.contains("git-receive-pack") && s.method == "POST"),
        "a push reached the git host"
    );
    let audit = bed.proxy_audit();
    assert!(audit.contains("git-receive-pack"), "{audit}");

    // The model stand-in saw the host's key, never the placeholder; the
    // guest never held the key.
    let calls = si.seen("anthropic.bottle.test");
    let messages: Vec<_> = calls
        .iter()
        .filter(|s| s.path.starts_with("/v1/messages"))
        .collect();
    assert!(!messages.is_empty(), "no /v1/messages call: {calls:?}");
    for m in &messages {
        assert_eq!(m.header("x-api-key"), Some(ANTHROPIC_KEY), "{m:?}");
    }
    let env_dump = run
        .output
        .lines()
        .find_map(|l| l.split_once("ENVDUMP ").map(|x| x.1.trim().to_string()))
        .expect("ENVDUMP line");
    use base64::Engine;
    let env = base64::engine::general_purpose::STANDARD
        .decode(env_dump)
        .expect("base64 env");
    let env = String::from_utf8_lossy(&env);
    assert!(env.contains(PLACEHOLDER_KEY), "{env}");
    assert!(!env.contains(ANTHROPIC_KEY), "the guest held the key");
    assert!(
        !run.output.contains(ANTHROPIC_KEY),
        "the key reached the guest's output"
    );
}
