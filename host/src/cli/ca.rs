//! `bottle-host ca`: make or load the egress CA and export its certificate.

use std::path::Path;

use anyhow::Result;

use super::state_dir;
use crate::ca::Ca;

/// `bottle-host ca [--export PATH]`: make or load the CA, print where it
/// is, and optionally write its certificate.
pub fn ca(export: Option<&Path>, state: Option<&Path>) -> Result<i32> {
    let dir = state_dir(state)?;
    let ca = Ca::load_or_create(&dir)?;
    if let Some(path) = export {
        ca.export(path)?;
        tracing::info!("ca: certificate written to {}", path.display());
    } else {
        print!("{}", ca.cert_pem);
    }
    Ok(0)
}
