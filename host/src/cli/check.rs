//! `bottle-host check`: validate manifests and print their policy.

use std::path::PathBuf;

use anyhow::Result;

use crate::manifest;

/// Check each manifest; exit code 0 only if all are valid.
pub fn run(paths: &[PathBuf]) -> Result<i32> {
    let mut failed = 0;
    for path in paths {
        match manifest::load(path) {
            Ok(m) => {
                print!("{}", m.describe());
                println!("ok: {}", path.display());
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    Ok(if failed == 0 { 0 } else { 1 })
}
