//! Where the binaries under test are: `$BOTTLE_BIN_DIR` if set (e.g.
//! `target/release` for `bench/load.sh`), else `$CARGO_TARGET_DIR/debug` or
//! `<workspace>/target/debug`. The test command (`tests/run-all.sh`) builds
//! the whole workspace first.

use std::path::{Path, PathBuf};

/// The `target/debug` directory of this workspace.
pub fn target_debug() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("debug"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug"),
    }
}

/// The path of a workspace binary; panics with what to do if it is not
/// built.
pub fn binary(name: &str) -> PathBuf {
    let dir = std::env::var_os("BOTTLE_BIN_DIR").map_or_else(target_debug, PathBuf::from);
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} is missing: build the workspace first (`cargo build --workspace`)",
        p.display()
    );
    p
}

/// `bottle-guest`.
pub fn guest() -> PathBuf {
    binary("bottle-guest")
}

/// `bottle-host`.
pub fn host() -> PathBuf {
    binary("bottle-host")
}

/// True if `tool` is an executable file in `PATH`.
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(tool)).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
    })
}
