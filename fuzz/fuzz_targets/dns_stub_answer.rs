//! Fuzz the guest stub's handling of the host's answers
//! (`bottle_guest::dns::listener::finish`): arbitrary answer bytes for a
//! client's query must never panic; the reply carries the client's id, is
//! never larger than the client's UDP limit (TC set when cut), passes a
//! fitting answer through unchanged, and is SERVFAIL when the host's
//! answer is a runt or missing.
//!
//! See [`bottle_fuzz::stub::check_stub_answer`] for the input layout.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bottle_fuzz::stub::check_stub_answer(data);
});
