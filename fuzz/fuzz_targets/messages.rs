//! Fuzz `bottle_shared::message::decode` for every message type, with the
//! re-encode round trip checked wherever a decode succeeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    bottle_fuzz::every_message(payload);
});
