//! Fuzz DLP scanning of request bytes (`bottle_host::proxy::dlp`): the
//! bytes split at an arbitrary point into two chunks fed to a
//! `StreamScanner` must find everything one scan of the whole finds (a
//! split may refuse more at a word boundary; docs/security.md), and
//! nothing may panic (the URL scan included).
//!
//! Input layout: bytes 0–1 (big-endian) pick the split point modulo the
//! length, the rest is the request bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bottle_fuzz::scan::check_split_scan(data);
});
