//! The egress proxy: a hudsucker MITM that allowlists, scans and audits.
pub mod dlp;
pub mod policy;
