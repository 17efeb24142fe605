//! The deployment files (issue 15, "In a container" and "On Kubernetes"),
//! checked without a container engine or a cluster:
//!
//! - `deploy/container/Containerfile`: every path it copies exists, every
//!   script it runs is among them (and so is every repository file those
//!   scripts read), the image is the root filesystem `rootfs.sh` makes
//!   (which `container_rootfs.rs` boots), and its user is not root.
//! - `deploy/kubernetes/render.py`: the committed examples are exactly what
//!   it renders, the manifests it puts in ConfigMaps pass `bottle-host
//!   check`, the pod size follows `[vm]`, and bad input is refused.
//! - Every Kubernetes file validates against the pinned Kubernetes
//!   version's schemas (`validate.sh`, kubernetes-validate from PyPI), and
//!   files with deliberate errors are rejected.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The Containerfile's instructions, continuation lines joined, comments
/// dropped: (instruction, arguments).
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let (i, a) = cur.split_once(' ').unwrap_or((&cur, ""));
        out.push((i.to_uppercase(), a.trim().to_string()));
        cur.clear();
    }
    out
}

#[test]
fn containerfile_copies_what_exists_and_runs_as_a_user() {
    let text = read("deploy/container/Containerfile");
    let ins = instructions(&text);
    let stages: Vec<usize> = (0..ins.len()).filter(|&i| ins[i].0 == "FROM").collect();
    assert_eq!(stages.len(), 2, "a build stage and the image: {ins:?}");
    let (build, image) = (&ins[stages[0]..stages[1]], &ins[stages[1]..]);

    // The build stage: a pinned Rust on Debian 12, no newer than this.
    let from = &build[0].1;
    assert!(from.ends_with(" AS build"), "{from}");
    let tag = from
        .split(':')
        .nth(1)
        .expect("a tag")
        .split(' ')
        .next()
        .unwrap();
    let (rust, distro) = tag.split_once('-').expect("rust:VERSION-DISTRO");
    assert_eq!(distro, "bookworm", "Debian 12, as images/build.sh's kernel");
    let minor = |v: &str| -> u32 { v.split('.').nth(1).and_then(|m| m.parse().ok()).unwrap() };
    let msrv = read("Cargo.toml")
        .lines()
        .find_map(|l| {
            l.strip_prefix("rust-version = ")
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap();
    assert!(minor(rust) >= minor(&msrv), "rust {rust} older than {msrv}");

    // Every COPY source exists.
    let copied: Vec<String> = build
        .iter()
        .filter(|(i, _)| i == "COPY")
        .flat_map(|(_, a)| {
            let words: Vec<&str> = a.split_whitespace().collect();
            words[..words.len() - 1]
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    for src in &copied {
        assert!(repo().join(src).exists(), "COPY {src}: no such path");
    }
    let is_copied = |p: &str| {
        copied
            .iter()
            .any(|c| p == c || p.starts_with(&format!("{}/", c.trim_end_matches('/'))))
    };
    // Every script the build runs, and every repository path those
    // scripts name, is copied in.
    let run: String = build
        .iter()
        .filter(|(i, _)| i == "RUN")
        .map(|(_, a)| a.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let scripts: Vec<&str> = run
        .split_whitespace()
        .filter(|w| w.ends_with(".sh"))
        .collect();
    for s in [
        "images/vsock-daemon.sh",
        "images/build.sh",
        "deploy/container/rootfs.sh",
    ] {
        assert!(scripts.contains(&s), "the build does not run {s}: {run}");
    }
    for s in &scripts {
        assert!(is_copied(s), "{s} is run but not copied in");
        for word in read(s).split(|c: char| c.is_whitespace() || "\"'$(){};|<>".contains(c)) {
            let top = ["images/", "guest/", "deploy/", "host/", "shared/"];
            if top.iter().any(|t| word.starts_with(t)) && repo().join(word).exists() {
                assert!(is_copied(word), "{s} reads {word}, which is not copied in");
            }
        }
    }
    assert!(run.contains("deploy/container/rootfs.sh /rootfs"), "{run}");

    // The image: rootfs.sh's tree on an empty base, its non-root user.
    assert_eq!(image[0].1, "scratch");
    let copies: Vec<&str> = image
        .iter()
        .filter(|(i, _)| i == "COPY")
        .map(|(_, a)| a.as_str())
        .collect();
    assert_eq!(copies, ["--from=build /rootfs/ /"]);
    let user = image
        .iter()
        .rev()
        .find(|(i, _)| i == "USER")
        .map(|(_, a)| a.clone())
        .expect("a USER");
    let (uid, gid) = user.split_once(':').expect("USER uid:gid");
    let uid: u32 = uid.parse().expect("a numeric uid (runAsNonRoot checks it)");
    assert_ne!(uid, 0);
    assert_ne!(gid.parse::<u32>().unwrap(), 0);
    let rootfs = read("deploy/container/rootfs.sh");
    assert!(
        rootfs.contains(&format!("BOTTLE_UID={uid}")),
        "rootfs.sh's user is not {uid}"
    );
    assert!(read("deploy/kubernetes/render.py").contains(&format!("UID = {uid}")));
    let entry = image
        .iter()
        .find(|(i, _)| i == "ENTRYPOINT")
        .map(|(_, a)| a.clone())
        .expect("an ENTRYPOINT");
    assert_eq!(entry, r#"["/usr/local/bin/bottle-entrypoint"]"#);
    assert!(rootfs.contains("\"$out/usr/local/bin/bottle-entrypoint\""));
}

fn python() -> Option<PathBuf> {
    let p = ["/usr/bin/python3"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())?;
    let ok = Command::new(&p)
        .args(["-c", "import tomllib, venv"])
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(p)
}

fn render(args: &[&str]) -> Output {
    Command::new(python().unwrap())
        .arg(repo().join("deploy/kubernetes/render.py"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run render.py")
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// The committed examples and the commands that make them.
const EXAMPLES: &[(&str, &[&str])] = &[
    (
        "deploy/kubernetes/claude-code-job.yaml",
        &[
            "job",
            "deploy/kubernetes/claude-code.toml",
            "--name",
            "claude-code",
        ],
    ),
    (
        "deploy/kubernetes/sweep-job.yaml",
        &[
            "sweep",
            "deploy/kubernetes/sweep.toml",
            "deploy/kubernetes/sweep-tasks.txt",
            "--name",
            "sweep",
        ],
    ),
];

#[test]
fn render_reproduces_the_examples_and_sizes_pods_from_the_manifest() {
    if python().is_none() {
        eprintln!(
            "skipped: /usr/bin/python3 with tomllib and venv (Python 3.11+) is not installed"
        );
        return;
    }
    for (file, args) in EXAMPLES {
        assert_eq!(
            stdout(&render(args)),
            read(file),
            "{file} is stale: python3 deploy/kubernetes/render.py {}",
            args.join(" ")
        );
    }
    let job = read(EXAMPLES[0].0);
    // deploy/kubernetes/claude-code.toml: 2 vCPUs, 2048 MiB, default grace 10 s.
    for want in [
        "cpu: \"2250m\"",
        "cpu: \"3000m\"",
        "memory: \"2240Mi\"",
        "devices.kubevirt.io/kvm: \"1\"",
        "terminationGracePeriodSeconds: 30",
        "key: ANTHROPIC_API_KEY",
        "key: GITHUB_TOKEN",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "- ALL",
        "action: FailJob",
    ] {
        assert!(job.contains(want), "no {want:?} in the Job");
    }
    let sweep = read(EXAMPLES[1].0);
    for want in [
        "completionMode: Indexed",
        "completions: 3",
        "task-2.toml: |",
        "- /etc/bottle/task-$(JOB_COMPLETION_INDEX).toml",
        "action: FailIndex",
        "terminationGracePeriodSeconds: 50",
    ] {
        assert!(sweep.contains(want), "no {want:?} in the sweep");
    }
    assert!(!sweep.contains("{task}"));

    // --kvm-resource none: TCG, no device request.
    let tcg = stdout(&render(&[
        "job",
        "examples/minimal.toml",
        "--name",
        "minimal",
        "--kvm-resource",
        "none",
    ]));
    assert!(!tcg.contains("kvm"), "{tcg}");
    assert!(tcg.contains("memory: \"704Mi\""), "512 MiB + 192: {tcg}");
    assert!(!tcg.contains("env:"), "no secrets, no env: {tcg}");
}

#[test]
fn render_refuses_what_a_pod_cannot_run() {
    if python().is_none() {
        eprintln!(
            "skipped: /usr/bin/python3 with tomllib and venv (Python 3.11+) is not installed"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let agent = "[agent]\ncommand = [\"true\"]\n";
    let cases = [
        (
            vec![
                "job".into(),
                file(
                    "f.toml",
                    &format!("{agent}[secrets]\nk = {{ file = \"k\" }}\n"),
                ),
            ],
            "secrets.k: only env = \"VAR\" secrets",
        ),
        (
            vec![
                "job".into(),
                file("k.toml", &format!("[vm]\nbackend = \"libkrun\"\n{agent}")),
            ],
            "the image has QEMU only",
        ),
        (
            vec!["job".into(), file("bad.toml", "[agent\n")],
            "bad.toml:",
        ),
        (
            vec![
                "sweep".into(),
                file("t.toml", agent),
                file("t.txt", "one\n"),
            ],
            "no {task} placeholder",
        ),
        (
            vec![
                "sweep".into(),
                file("u.toml", "[agent]\ncommand = [\"echo\", \"{task}\"]\n"),
                file("empty.txt", "# nothing\n\n"),
            ],
            "no tasks",
        ),
    ];
    for (args, want) in cases {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.extend(["--name", "x"]);
        let o = render(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{a:?} was accepted");
        assert!(err.contains(want), "{a:?}: {err}");
    }
    let o = render(&["job", "examples/minimal.toml", "--name", "Not_A_Name"]);
    assert!(!o.status.success());
}

#[test]
fn rendered_manifests_pass_bottle_host_check() {
    if python().is_none() {
        eprintln!(
            "skipped: /usr/bin/python3 with tomllib and venv (Python 3.11+) is not installed"
        );
        return;
    }
    // The sweep's per-task manifests, as its ConfigMap holds them.
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = EXAMPLES[1].1.iter().map(|s| s.to_string()).collect();
    args.extend(["--write-manifests".into(), dir.path().display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(stdout(&render(&args)), read(EXAMPLES[1].0));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    files.push(repo().join("deploy/kubernetes/claude-code.toml"));
    let o = Command::new(bottle_e2e::bins::host())
        .arg("check")
        .args(&files)
        .output()
        .expect("bottle-host check");
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn validate(files: &[PathBuf]) -> Output {
    Command::new("bash")
        .arg(repo().join("deploy/kubernetes/validate.sh"))
        .args(files)
        .output()
        .expect("run validate.sh")
}

#[test]
fn kubernetes_files_validate_and_broken_ones_do_not() {
    if python().is_none() {
        eprintln!(
            "skipped: /usr/bin/python3 with tomllib and venv (Python 3.11+) is not installed"
        );
        return;
    }
    let mut good: Vec<PathBuf> = EXAMPLES.iter().map(|(f, _)| repo().join(f)).collect();
    let dir = tempfile::tempdir().unwrap();
    let tcg = dir.path().join("tcg.yaml");
    let text = stdout(&render(&[
        "job",
        "examples/demo.toml",
        "--name",
        "demo",
        "--kvm-resource",
        "none",
    ]));
    std::fs::write(&tcg, text).unwrap();
    good.push(tcg);
    let o = validate(&good);
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}");
    assert_eq!(out.matches(" passed for resource ").count(), 6, "{out}");

    // Deliberate errors, each in a copy of the Job: the validator must fail.
    let job = read(EXAMPLES[0].0);
    let broken = [
        // A field Kubernetes does not know (strict).
        (
            "unknown-field",
            job.replace("backoffLimit: 2", "backoffLimits: 2"),
        ),
        // A wrong type.
        (
            "wrong-type",
            job.replace("runAsNonRoot: true", "runAsNonRoot: \"yes\""),
        ),
        // A required field missing: a container without a name (an image
        // is optional in a pod template, so that would pass).
        (
            "no-name",
            job.replace("      - name: bottle\n        image:", "      - image:"),
        ),
        // A string where the schema wants an integer.
        (
            "string-for-int",
            job.replace(
                "activeDeadlineSeconds: 3600",
                "activeDeadlineSeconds: \"1h\"",
            ),
        ),
        // (An unknown enum value, such as restartPolicy: Sometimes, passes:
        // the schemas carry no enums; the API server refuses it.)
    ];
    for (name, text) in broken {
        assert_ne!(text, job, "{name}: the replacement did not apply");
        let p = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&p, text).unwrap();
        let o = validate(&[p]);
        let out =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name} passed validation:\n{out}");
        assert!(out.contains("did not validate"), "{name}:\n{out}");
    }
}
