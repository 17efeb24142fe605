//! `images/oci-layout.py` on a small tree: the layout it writes is
//! self-consistent (every blob named by its sha256, sizes as recorded, the
//! config's `diff_id` the uncompressed layer's digest), the layer keeps
//! numeric owners, modes, symlinks and hard links and leaves device nodes
//! out, and the config is the agent image's. `skopeo` reads it when
//! installed.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The blob `digest` (`sha256:…`) of the layout at `oci`, checked against
/// its name and `size`.
fn blob(oci: &Path, desc: &Value) -> Vec<u8> {
    let digest = desc["digest"].as_str().expect("digest");
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let data = std::fs::read(oci.join("blobs/sha256").join(hex)).expect("blob");
    assert_eq!(
        sha256_hex(&data),
        hex,
        "blob {digest} does not match its name"
    );
    assert_eq!(desc["size"].as_u64(), Some(data.len() as u64), "{digest}");
    data
}

#[test]
fn the_layout_is_consistent_and_the_layer_keeps_owners_and_links() {
    if !bottle_e2e::bins::on_path("python3") {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("home/agent")).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(
        root.join("bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::hard_link(root.join("bin/tool"), root.join("bin/tool2")).unwrap();
    std::os::unix::fs::symlink("tool", root.join("bin/link")).unwrap();
    std::fs::write(root.join("home/agent/.profile"), "# hi\n").unwrap();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root_user = unsafe { libc::geteuid() } == 0;
    if root_user {
        std::os::unix::fs::chown(root.join("home/agent"), Some(1000), Some(1000)).unwrap();
        std::os::unix::fs::chown(root.join("home/agent/.profile"), Some(1000), Some(1000)).unwrap();
    }
    let oci = dir.path().join("oci");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/oci-layout.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&root)
        .arg(&oci)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let layout: Value =
        serde_json::from_slice(&std::fs::read(oci.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    let desc = &index["manifests"][0];
    assert_eq!(
        desc["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    let manifest: Value = serde_json::from_slice(&blob(&oci, desc)).unwrap();
    let config: Value = serde_json::from_slice(&blob(&oci, &manifest["config"])).unwrap();
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["config"]["User"], "agent");
    assert_eq!(config["config"]["WorkingDir"], "/home/agent");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["/bin/bash"]));
    let layer_desc = &manifest["layers"][0];
    assert_eq!(
        layer_desc["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let layer = blob(&oci, layer_desc);
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(layer.as_slice())
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0].as_str(),
        Some(format!("sha256:{}", sha256_hex(&tar)).as_str())
    );

    // The entries, as GNU tar lists them with numeric owners.
    std::fs::write(dir.path().join("layer.tar"), &tar).unwrap();
    let list = Command::new("tar")
        .args(["-tvf"])
        .arg(dir.path().join("layer.tar"))
        .arg("--numeric-owner")
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("-rwxr-xr-x 0/0"), "{list}");
    assert!(list.contains("bin/link -> tool"), "{list}");
    assert!(list.contains("link to bin/tool"), "{list}");
    if root_user {
        assert!(
            list.contains("1000/1000") && list.contains("home/agent/.profile"),
            "{list}"
        );
    }
    if bottle_e2e::bins::on_path("skopeo") {
        let out = Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:latest", oci.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
