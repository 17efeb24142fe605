//! Checks shared by the fuzz targets in `fuzz_targets/`.
//!
//! [`every_message`] decodes one frame payload as every message type of the
//! protocol and, where a decode succeeds, checks the re-encode round trip.
//! [`dns`], [`stub`] and [`scan`] hold the checks of `dns_host_query`,
//! `dns_stub_answer` and `http_scan`.

pub mod dns;
pub mod scan;
pub mod stub;

use std::fmt::Debug;

use bottle_shared::message::{
    decode, encode, AgentSpec, BootInfo, DnsRequest, DnsResponse, DnsTransport, GuestConfig,
    GuestMessage, Hello, HelloReply, HostMessage, ProcessEvent, ResolverSettings, RestartMode,
    RestartPolicy, Role,
};
use bottle_shared::Channel;
use serde::{de::DeserializeOwned, Serialize};

/// Decode `payload` as `T`; if that works, the message must re-encode, the
/// re-encoding must decode to an equal message, encode again to the same
/// bytes, and be no longer than the input (postcard's canonical form is the
/// shortest).
pub fn round_trip<T>(payload: &[u8]) -> bool
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Ok(msg) = decode::<T>(payload) else {
        return false;
    };
    let bytes = encode(&msg).expect("a decoded message must encode");
    let back: T = decode(&bytes).expect("a re-encoded message must decode");
    assert_eq!(back, msg, "round trip changed the message");
    assert_eq!(
        encode(&back).expect("encode"),
        bytes,
        "encoding is unstable"
    );
    assert!(
        bytes.len() <= payload.len(),
        "canonical encoding ({} bytes) longer than the input ({} bytes)",
        bytes.len(),
        payload.len()
    );
    true
}

/// Try `payload` as every message type; returns how many types accepted it.
pub fn every_message(payload: &[u8]) -> usize {
    [
        round_trip::<Hello>(payload),
        round_trip::<HelloReply>(payload),
        round_trip::<Role>(payload),
        round_trip::<Channel>(payload),
        round_trip::<GuestMessage>(payload),
        round_trip::<BootInfo>(payload),
        round_trip::<ProcessEvent>(payload),
        round_trip::<HostMessage>(payload),
        round_trip::<GuestConfig>(payload),
        round_trip::<AgentSpec>(payload),
        round_trip::<RestartPolicy>(payload),
        round_trip::<RestartMode>(payload),
        round_trip::<ResolverSettings>(payload),
        round_trip::<DnsRequest>(payload),
        round_trip::<DnsResponse>(payload),
        round_trip::<DnsTransport>(payload),
    ]
    .into_iter()
    .filter(|ok| *ok)
    .count()
}
