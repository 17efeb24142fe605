#!/usr/bin/env python3
"""Write an OCI image layout (tag `latest`) holding one root directory.

Usage: oci-layout.py ROOT OUT

One gzip layer made from ROOT with numeric owners (no user or group
names), modes, hard links and symlinks kept, device nodes left out,
entries in a sorted order and mtimes as on disk. The image config is the
agent image's (user `agent`, home as the working directory, bash as the
command). The blobs are named by their sha256; the manifest records
sizes and digests, the config the layer's uncompressed digest (diff_id).
Standard library only.
"""

import gzip
import hashlib
import json
import os
import sys
import tarfile

CONFIG = {
    "User": "agent",
    "WorkingDir": "/home/agent",
    "Env": [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/home/agent",
    ],
    "Cmd": ["/bin/bash"],
}


class HashingWriter:
    """A file-like sink that hashes and counts what goes through it."""

    def __init__(self, inner):
        self.inner = inner
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.sha.update(data)
        self.size += len(data)
        return self.inner.write(data) if self.inner is not None else len(data)

    def flush(self):
        if self.inner is not None:
            self.inner.flush()


def numeric(info):
    info.uname = ""
    info.gname = ""
    return info


def add_tree(tar, root):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        for name in [None] + sorted(filenames) + [
            d for d in dirnames if os.path.islink(os.path.join(dirpath, d))
        ]:
            path = dirpath if name is None else os.path.join(dirpath, name)
            arc = rel if name is None else os.path.normpath(os.path.join(rel, name))
            if arc == ".":
                arc = "./"
            info = tar.gettarinfo(path, arcname=arc)
            # Sockets have nothing to carry; device nodes neither (the
            # guest mounts its own /dev, and unprivileged unpackers cannot
            # create them).
            if info is None or info.ischr() or info.isblk():
                continue
            numeric(info)
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def write_blob(blobs, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return digest, len(data)


def main(root, out):
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs)
    tmp_layer = os.path.join(blobs, "layer.tmp")
    with open(tmp_layer, "wb") as raw:
        compressed = HashingWriter(raw)
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=6, mtime=0) as gz:
            plain = HashingWriter(gz)
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                add_tree(tar, root)
    layer_digest = compressed.sha.hexdigest()
    os.rename(tmp_layer, os.path.join(blobs, layer_digest))

    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": CONFIG,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + plain.sha.hexdigest()]},
        "history": [{"created_by": "images/agent-image.sh (mmdebstrap)"}],
    }
    cfg_digest, cfg_size = write_blob(blobs, json.dumps(config, indent=1).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + cfg_digest,
            "size": cfg_size,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + layer_digest,
                "size": compressed.size,
            }
        ],
    }
    man_digest, man_size = write_blob(blobs, json.dumps(manifest, indent=1).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:" + man_digest,
                "size": man_size,
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }
        ],
    }
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    print(
        f"layer sha256:{layer_digest} {compressed.size} bytes "
        f"({plain.size} uncompressed)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: oci-layout.py ROOT OUT")
    main(sys.argv[1], sys.argv[2])
