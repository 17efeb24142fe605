#!/usr/bin/env python3
"""Render Kubernetes objects that run bottles (docs/scale.md).

  render.py job MANIFEST [options]            one bottle: ConfigMap + Job
  render.py sweep TEMPLATE TASKS [options]    N bottles: ConfigMap + Indexed Job

`job` puts MANIFEST (a bottle.toml) in a ConfigMap mounted on /etc/bottle
and runs the bottle-host image's entrypoint on it. `sweep` reads TASKS (one
task a line; blank lines and lines starting with # are skipped) and makes
one manifest per task from TEMPLATE, whose `{task}` placeholders (inside
TOML strings) become the task's text; pod i of the Indexed Job runs
/etc/bottle/task-i.toml (--write-manifests DIR writes them out too, to
run `bottle-host check DIR/*.toml` before applying).

The manifest decides the pod's size: memory request and limit are
[vm] memory_mib plus OVERHEAD_MIB (the host side measured for one bottle,
docs/performance.md), CPU request [vm] cpus plus a quarter, limit one more
core; the grace period covers [agent] grace_period_ms plus the guest's
power-off. Every [secrets] entry must be `env = "VAR"`: VAR comes from the
Secret (--secret, key VAR). Writes YAML on standard output; Python 3.11+,
standard library only.
"""

import argparse
import json
import re
import sys
import tomllib

# Host-side memory of one bottle beyond the guest's RAM: QEMU's own
# (its 32 MiB TCG translation cache, heap, the mapped initramfs) +
# bottle-host + vhost-device-vsock. Alone in a pod nothing is shared:
# about 150 MiB PSS measured under TCG (docs/performance.md, "Density"),
# rounded up with margin.
OVERHEAD_MIB = 192
# bottle-host's wait for the guest's power-off after the agent's grace.
POWEROFF_S = 15
CONFIGMAP_MAX = 1_000_000  # bytes; the API server refuses 1 MiB and more
IMAGE = "bottle-host:0.1.0"
KVM_RESOURCE = "devices.kubevirt.io/kvm"
UID = 10001  # the image's user (deploy/container/rootfs.sh)
# The bottle-host image's exit code for "the VM died or never started"
# (docs/launch.md): worth a retry; every other non-zero code is the
# agent's own (or a bad manifest, 2) and would fail again.
VM_FAILED = 125


class RenderError(Exception):
    pass


def sizing(manifest, where):
    """The pod's resources, grace period and secret variables for a bottle."""
    vm = manifest.get("vm", {})
    if vm.get("backend", "auto") == "libkrun":
        raise RenderError(f"{where}: [vm] backend = \"libkrun\": the image has QEMU only")
    memory = int(vm.get("memory_mib", 512))
    cpus = int(vm.get("cpus", 1))
    grace_ms = int(manifest.get("agent", {}).get("grace_period_ms", 10000))
    env = []
    for name, source in manifest.get("secrets", {}).items():
        if "env" not in source:
            raise RenderError(
                f"{where}: secrets.{name}: only env = \"VAR\" secrets come from a Kubernetes Secret"
            )
        env.append(source["env"])
    return {
        "memory": f"{memory + OVERHEAD_MIB}Mi",
        "cpu_request": f"{cpus * 1000 + 250}m",
        "cpu_limit": f"{(cpus + 1) * 1000}m",
        "grace": -(-grace_ms // 1000) + POWEROFF_S + 5,
        "env": env,
    }


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode(), tomllib.loads(raw.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise RenderError(f"{path}: {e}") from e


def merge(sizes):
    """The largest of several bottles' sizes (one pod template for all)."""
    def mib(s):
        return int(s[:-2])

    def milli(s):
        return int(s[:-1])

    return {
        "memory": max((s["memory"] for s in sizes), key=mib),
        "cpu_request": max((s["cpu_request"] for s in sizes), key=milli),
        "cpu_limit": max((s["cpu_limit"] for s in sizes), key=milli),
        "grace": max(s["grace"] for s in sizes),
        "env": sorted({v for s in sizes for v in s["env"]}),
    }


def labels(name):
    return {
        "app.kubernetes.io/name": "bot-bottle",
        "app.kubernetes.io/component": "bottle",
        "app.kubernetes.io/instance": name,
    }


def pod_template(name, size, args, opts):
    limits = {"cpu": size["cpu_limit"], "memory": size["memory"]}
    if opts.kvm_resource != "none":
        limits[opts.kvm_resource] = "1"
    container = {
        "name": "bottle",
        "image": opts.image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": [
            {"name": var, "valueFrom": {"secretKeyRef": {"name": opts.secret, "key": var}}}
            for var in size["env"]
        ],
        "resources": {
            "requests": {"cpu": size["cpu_request"], "memory": size["memory"]},
            "limits": limits,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "manifest", "mountPath": "/etc/bottle", "readOnly": True},
            {"name": "state", "mountPath": "/var/lib/bot-bottle"},
            {"name": "run", "mountPath": "/run/bot-bottle"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if not container["env"]:
        del container["env"]
    return {
        "metadata": {"labels": labels(name)},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": size["grace"],
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": UID,
                "runAsGroup": UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [
                {"name": "manifest", "configMap": {"name": name}},
                {"name": "state", "emptyDir": {"sizeLimit": opts.state_size}},
                {"name": "run", "emptyDir": {"sizeLimit": "64Mi"}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            ],
        },
    }


def config_map(name, data):
    size = sum(len(k) + len(v.encode()) for k, v in data.items())
    if size >= CONFIGMAP_MAX:
        raise RenderError(
            f"the manifests come to {size} bytes; a ConfigMap holds less than 1 MiB: "
            "split the sweep"
        )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels(name)},
        "data": data,
    }


def job(name, size, args, opts, indexed=None):
    failure = [
        # Evicted, preempted, node drained: not the agent's doing.
        {"action": "Ignore",
         "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "Count",
         "onExitCodes": {"containerName": "bottle", "operator": "In", "values": [VM_FAILED]}},
        {"action": "FailIndex" if indexed else "FailJob",
         "onExitCodes": {"containerName": "bottle", "operator": "NotIn",
                         "values": [0, VM_FAILED]}},
    ]
    spec = {}
    if indexed:
        spec |= {
            "completionMode": "Indexed",
            "completions": indexed,
            "parallelism": min(indexed, opts.parallelism),
            "backoffLimitPerIndex": 1,
        }
    else:
        spec["backoffLimit"] = 2
    spec |= {
        "activeDeadlineSeconds": opts.deadline,
        "ttlSecondsAfterFinished": 86400,
        "podFailurePolicy": {"rules": failure},
        "template": pod_template(name, size, args, opts),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels(name)},
        "spec": spec,
    }


def render_job(opts):
    text, manifest = load(opts.manifest)
    size = sizing(manifest, opts.manifest)
    return [
        config_map(opts.name, {"bottle.toml": text}),
        job(opts.name, size, ["/etc/bottle/bottle.toml"], opts),
    ]


def toml_escape(s):
    """`s` as the inside of a TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(s, ensure_ascii=False)[1:-1]


def render_sweep(opts):
    template, _ = load(opts.template)
    if "{task}" not in template:
        raise RenderError(f"{opts.template}: no {{task}} placeholder")
    with open(opts.tasks, encoding="utf-8") as f:
        tasks = [l.strip() for l in f if l.strip() and not l.lstrip().startswith("#")]
    if not tasks:
        raise RenderError(f"{opts.tasks}: no tasks")
    data, sizes = {}, []
    for i, task in enumerate(tasks):
        text = template.replace("{task}", toml_escape(task))
        try:
            manifest = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise RenderError(f"{opts.template} with task {i}: {e}") from e
        sizes.append(sizing(manifest, f"{opts.template} (task {i})"))
        data[f"task-{i}.toml"] = text
    if opts.write_manifests:
        for name, text in data.items():
            with open(f"{opts.write_manifests}/{name}", "w", encoding="utf-8") as f:
                f.write(text)
    # The Job controller sets JOB_COMPLETION_INDEX in each pod; the
    # kubelet expands $(VAR) in args.
    args = ["/etc/bottle/task-$(JOB_COMPLETION_INDEX).toml"]
    return [
        config_map(opts.name, data),
        job(opts.name, merge(sizes), args, opts, indexed=len(tasks)),
    ]


# A small YAML writer: block style, JSON-quoted strings where a plain
# scalar could be misread, literal blocks for multi-line text.
PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./:$()+-]*$")
RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if PLAIN.match(v) and v.lower() not in RESERVED:
        return v
    return json.dumps(v, ensure_ascii=False)


def literal_ok(s):
    return (s.endswith("\n") and not s.endswith("\n\n") and not s[:1].isspace()
            and all(c == "\n" or c == "\t" or c.isprintable() for c in s))


def emit(v, indent=0):
    pad = " " * indent
    out = []
    if isinstance(v, dict):
        for k, x in v.items():
            key = scalar(k)
            if isinstance(x, dict) and x:
                out.append(f"{pad}{key}:\n" + emit(x, indent + 2))
            elif isinstance(x, list) and x:
                out.append(f"{pad}{key}:\n" + emit(x, indent))
            elif isinstance(x, str) and "\n" in x and literal_ok(x):
                body = "".join(f"{pad}  {l}\n" if l else "\n" for l in x[:-1].split("\n"))
                out.append(f"{pad}{key}: |\n{body}")
            else:
                out.append(f"{pad}{key}: {flow(x)}\n")
    else:
        for x in v:
            if isinstance(x, (dict, list)) and x:
                inner = emit(x, indent + 2)
                out.append(f"{pad}- {inner[indent + 2:]}")
            else:
                out.append(f"{pad}- {flow(x)}\n")
    return "".join(out)


def flow(x):
    if isinstance(x, dict):
        return "{}"
    if isinstance(x, list):
        return "[]"
    return scalar(x)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pj = sub.add_parser("job", help="one bottle")
    pj.add_argument("manifest")
    ps = sub.add_parser("sweep", help="one bottle per task (Indexed Job)")
    ps.add_argument("template")
    ps.add_argument("tasks")
    ps.add_argument("--parallelism", type=int, default=4)
    ps.add_argument("--write-manifests", metavar="DIR",
                    help="also write each task's manifest to DIR (for bottle-host check)")
    for q in (pj, ps):
        q.add_argument("--name", required=True, help="Job and ConfigMap name")
        q.add_argument("--image", default=IMAGE)
        q.add_argument("--secret", default="bottle-secrets",
                       help="the Secret holding the manifest's env secrets")
        q.add_argument("--kvm-resource", default=KVM_RESOURCE,
                       help="device-plugin resource for /dev/kvm, or none (TCG)")
        q.add_argument("--deadline", type=int, default=3600, help="activeDeadlineSeconds")
        q.add_argument("--state-size", default="1Gi", help="emptyDir limit for audit logs")
    opts = p.parse_args(argv)
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?", opts.name):
        p.error("--name: lowercase letters, digits and '-', at most 52 characters")
    try:
        objects = render_job(opts) if opts.cmd == "job" else render_sweep(opts)
    except (RenderError, OSError) as e:
        print(f"render.py: {e}", file=sys.stderr)
        return 1
    source = opts.manifest if opts.cmd == "job" else f"{opts.template} {opts.tasks}"
    print(f"# Rendered by deploy/kubernetes/render.py {opts.cmd} from {source}.")
    print("# The Secret is yours to create:")
    env = sorted({e["name"] for e in objects[1]["spec"]["template"]["spec"]["containers"][0]
                  .get("env", [])})
    literal = " ".join(f"--from-literal={v}=..." for v in env)
    print(f"#   kubectl create secret generic {opts.secret} {literal}".rstrip())
    print("\n---\n".join(emit(o).rstrip("\n") for o in objects))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
